import type { Task } from "graphile-worker";
import { z } from "zod";
import { isMissing, parsePayload, syncStripeObject, writeObject } from "../src/billing/sync.ts";

// Legacy plans made with the Plans API keep their own ids ("pro-monthly") as price ids.
const Payload = z.object({ id: z.string().min(1).max(255) });

/**
 * stripe__sync_price { id }: re-fetches a price with its product and writes its plan. Only
 * recurring prices of products marked as plans (metadata plan = "true") become plans; a price
 * Stripe no longer has stops being offered.
 */
const syncPrice: Task = async (rawPayload, helpers) => {
  const payload = parsePayload(Payload, rawPayload, helpers);
  if (!payload) return;
  const { id } = payload;
  await syncStripeObject(helpers, id, async (stripe, fetchedAt) => {
    let price: unknown;
    try {
      price = await stripe.prices.retrieve(id, { expand: ["product"] });
    } catch (error) {
      if (!isMissing(error)) throw error;
      price = { id, deleted: true };
    }
    const { rows } = await helpers.query<{ active: boolean | null }>("select (app_private.sync_stripe_price($1::jsonb, $2)).active", [
      JSON.stringify(price),
      fetchedAt,
    ]);
    const active = rows[0]?.active;
    if (active == null) return 'not a plan (only recurring prices of products with metadata plan = "true" are)';
    return `plan ${active ? "offered" : "no longer offered"}`;
  });
};

export default syncPrice;
