import type { Task } from "graphile-worker";
import { z } from "zod";
import { parsePayload, syncStripeObject, syncSubscription } from "../src/billing/sync.ts";

const Payload = z.object({ id: z.string().regex(/^sub_\w{1,255}$/) });

/**
 * stripe__sync_subscription { id }: re-fetches a subscription (with its price, product, card,
 * latest invoice and customer) and writes it to app_public.subscriptions unless a newer sync
 * already did. Queued by the webhook, keyed by the subscription, so a burst of events collapses.
 */
const syncSubscriptionTask: Task = async (rawPayload, helpers) => {
  const payload = parsePayload(Payload, rawPayload, helpers);
  if (!payload) return;
  const { id } = payload;
  await syncStripeObject(helpers, id, (stripe, fetchedAt) => syncSubscription(helpers, stripe, id, fetchedAt));
};

export default syncSubscriptionTask;
