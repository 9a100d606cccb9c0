import type { Task } from "graphile-worker";
import { z } from "zod";
import { isMissing, parsePayload, syncStripeObject, syncSubscription, writeObject } from "../src/billing/sync.ts";

const Payload = z.object({ id: z.string().regex(/^in_\w{1,255}$/) });

/**
 * stripe__sync_invoice { id }: re-fetches an invoice and records it as its subscription's latest
 * (never an older one over a newer), emailing owners once per failed collection attempt. The
 * payment may have changed the subscription's status, so the subscription is synced too: at once
 * when it is not held yet (its invoice can arrive first), else by a queued job.
 */
const syncInvoice: Task = async (rawPayload, helpers) => {
  const payload = parsePayload(Payload, rawPayload, helpers);
  if (!payload) return;
  const { id } = payload;
  await syncStripeObject(helpers, id, async (stripe, fetchedAt) => {
    let invoice: Awaited<ReturnType<typeof stripe.invoices.retrieve>>;
    try {
      invoice = await stripe.invoices.retrieve(id);
    } catch (error) {
      if (isMissing(error)) return "missing in Stripe, nothing to sync";
      throw error;
    }
    const parent = invoice.parent?.subscription_details?.subscription;
    const subscriptionId = typeof parent === "string" ? parent : parent?.id;
    if (!subscriptionId) return "not a subscription's invoice, nothing to sync";
    let outcome = await writeObject(helpers, "sync_stripe_invoice", invoice, fetchedAt);
    if (outcome === "unattributed") {
      const subscriptionOutcome = await syncSubscription(helpers, stripe, subscriptionId, fetchedAt);
      outcome = `subscription ${subscriptionOutcome}, invoice ${await writeObject(helpers, "sync_stripe_invoice", invoice, fetchedAt)}`;
    } else {
      await helpers.addJob("stripe__sync_subscription", { id: subscriptionId }, { jobKey: `stripe:${subscriptionId}`, maxAttempts: 12 });
    }
    return outcome;
  });
};

export default syncInvoice;
