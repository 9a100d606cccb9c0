import express, { Router } from "express";
import type pg from "pg";
import Stripe from "stripe";
import type { Config } from "../config.ts";
import { AppError } from "../http/errors.ts";
import type { Logger } from "../logger.ts";
import { WEBHOOK_TOLERANCE_SECONDS } from "./stripe.ts";

/**
 * POST /webhooks/stripe: verifies the Stripe-Signature of the raw body against every configured
 * endpoint secret (tolerance 300 s), records the event in the ledger once, and answers 200 at
 * once, for event types we do not act on too (otherwise Stripe retries them and may disable the
 * endpoint). The work is a job keyed by the Stripe object: see app_private.record_stripe_event.
 * A refused delivery stores nothing.
 */
export function stripeWebhook(deps: { config: Config; ownerPool: pg.Pool; logger: Logger }): Router {
  const { config, ownerPool, logger } = deps;
  const secrets = config.stripe.webhookSecrets;
  // Verification needs no API key; the SDK's webhook helpers hang off a client instance.
  const webhooks = new Stripe(config.stripe.secretKey ?? "sk_test_unused_for_webhooks").webhooks;
  const router = Router();

  router.post("/", express.raw({ type: () => true, limit: config.bodyLimitBytes }), async (req, res) => {
    if (secrets.length === 0) {
      throw new AppError(503, "billing_unavailable", "Stripe is not configured on this server (STRIPE_WEBHOOK_SECRET).");
    }
    const signature = req.get("stripe-signature");
    if (!signature) throw new AppError(400, "invalid_signature", "The Stripe-Signature header is missing.");
    const payload = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
    let event: Stripe.Event | undefined;
    for (const secret of secrets) {
      try {
        event = webhooks.constructEvent(payload, signature, secret, WEBHOOK_TOLERANCE_SECONDS);
        break;
      } catch (error) {
        if (error instanceof Stripe.errors.StripeSignatureVerificationError) continue;
        throw new AppError(400, "invalid_payload", "The body is signed but is not a Stripe event (not valid JSON).");
      }
    }
    if (!event) {
      throw new AppError(
        400,
        "invalid_signature",
        "The Stripe-Signature header does not match this body: a wrong endpoint secret, an altered body, or a timestamp more than 5 minutes old.",
      );
    }
    if (typeof event.id !== "string" || typeof event.type !== "string" || typeof event.created !== "number") {
      throw new AppError(400, "invalid_payload", "The body is signed but is not a Stripe event (id, type or created missing).");
    }
    const { rows } = await ownerPool.query<{ recorded: boolean }>("select app_private.record_stripe_event($1::jsonb) as recorded", [
      payload.toString("utf8"),
    ]);
    const recorded = rows[0]?.recorded === true;
    (req.log ?? logger).info({ stripeEvent: event.id, type: event.type, duplicate: !recorded }, "stripe event received");
    res.json({ received: true, duplicate: !recorded });
  });
  return router;
}
