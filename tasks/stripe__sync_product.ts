import type { Task } from "graphile-worker";
import { z } from "zod";
import { isMissing, parsePayload, syncStripeObject, writeObject } from "../src/billing/sync.ts";

// Products may have ids chosen by their creator, not only prod_….
const Payload = z.object({ id: z.string().min(1).max(255) });

/**
 * stripe__sync_product { id }: re-fetches a product and writes its name, limits and availability
 * to the plans of its prices; a deleted product, or one no longer marked as a plan, makes them
 * inactive. A product marked as a plan (metadata plan = "true") brings in its recurring prices
 * too, so marking it in the dashboard is enough to offer it.
 */
const syncProduct: Task = async (rawPayload, helpers) => {
  const payload = parsePayload(Payload, rawPayload, helpers);
  if (!payload) return;
  const { id } = payload;
  await syncStripeObject(helpers, id, async (stripe, fetchedAt) => {
    let product: { id: string; active: boolean; deleted?: unknown; metadata?: Record<string, string> };
    try {
      product = await stripe.products.retrieve(id);
    } catch (error) {
      if (!isMissing(error)) throw error;
      product = { id, deleted: true, active: false };
    }
    if (product.active && !product.deleted && product.metadata?.plan === "true") {
      let prices = 0;
      for await (const price of stripe.prices.list({ product: id, active: true, type: "recurring", expand: ["data.product"], limit: 100 })) {
        await writeObject(helpers, "sync_stripe_price", price, fetchedAt);
        prices += 1;
      }
      // Its plans whose price is no longer offered still show the product's name.
      await writeObject(helpers, "sync_stripe_product", product, fetchedAt);
      return `offered with ${prices} recurring price${prices === 1 ? "" : "s"}`;
    }
    return `${await writeObject(helpers, "sync_stripe_product", product, fetchedAt)} plan(s) no longer offered`;
  });
};

export default syncProduct;
