import type { JobHelpers } from "graphile-worker";
import Stripe from "stripe";
import type { z } from "zod";
import { stripeForTasks } from "./stripe.ts";

/**
 * A sync that cannot succeed by retrying: a person has to act in Stripe (a second live
 * subscription for one organization, a subscription nobody here owns). The job records it on
 * the ledger's events, which stay unprocessed, logs it at error level and ends without a retry.
 */
export class SyncProblem extends Error {}

/**
 * Runs one Stripe sync job: re-fetches the object, writes it through a SQL sync function and marks
 * the ledger's events about it processed. The fetch time comes from the database's clock, because
 * it is compared with the ledger's received_at and guards the upserts (synced_at <= fetch time).
 * A failure is recorded on those events (attempts, last_error) before graphile-worker retries with
 * its backoff; the last attempt's failure is logged at error level.
 */
export async function syncStripeObject(
  helpers: JobHelpers,
  id: string,
  sync: (stripe: Stripe, fetchedAt: Date) => Promise<string>,
): Promise<void> {
  const { rows } = await helpers.query<{ now: Date }>("select clock_timestamp() as now");
  const fetchedAt = rows[0]!.now;
  try {
    const outcome = await sync(stripeForTasks(), fetchedAt);
    await helpers.query("select app_private.stripe_sync_done($1, $2)", [id, fetchedAt]);
    helpers.logger.info(`${id}: ${outcome}`);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    await helpers.query("select app_private.stripe_sync_failed($1, $2, $3)", [id, fetchedAt, message]);
    if (error instanceof SyncProblem) {
      helpers.logger.error(`${id}: ${message} (not retried; see app_private.stripe_events)`);
      return;
    }
    if (helpers.job.attempts >= helpers.job.max_attempts) {
      helpers.logger.error(`giving up on ${id} after ${helpers.job.attempts} attempts: ${message} (see app_private.stripe_events)`);
    }
    throw error;
  }
}

/**
 * Reads a sync job's payload. One that does not fit was not queued by this backend (the ledger
 * only queues ids of the right shape): a retry cannot fix it, so it is logged and dropped.
 */
export function parsePayload<T>(schema: z.ZodType<T>, payload: unknown, helpers: JobHelpers): T | undefined {
  const parsed = schema.safeParse(payload);
  if (parsed.success) return parsed.data;
  helpers.logger.error(`dropping ${helpers.job.task_identifier} job ${helpers.job.id}: its payload is not { id } of the right kind (${parsed.error.issues[0]?.message})`);
  return undefined;
}

/** Statuses of a subscription Stripe bills (or may bill). */
const LIVE = new Set(["incomplete", "trialing", "active", "past_due", "unpaid", "paused"]);

/** A Stripe object that does not exist (any more): Stripe answers 404 resource_missing. */
export function isMissing(error: unknown): boolean {
  return error instanceof Stripe.errors.StripeInvalidRequestError && error.statusCode === 404;
}

/** Runs a SQL sync function with a fetched object; returns its outcome. */
export async function writeObject(helpers: JobHelpers, fn: string, object: unknown, fetchedAt: Date): Promise<string> {
  const { rows } = await helpers.query<{ outcome: unknown }>(`select app_private.${fn}($1::jsonb, $2) as outcome`, [JSON.stringify(object), fetchedAt]);
  return String(rows[0]?.outcome ?? "no change");
}

/**
 * Fetches a subscription with everything app_private.sync_stripe_subscription reads (its plan's
 * price and product, the card, the latest invoice, the customer) and writes it. One Stripe no
 * longer has is marked canceled. Outcomes a retry cannot fix become a SyncProblem.
 */
export async function syncSubscription(helpers: JobHelpers, stripe: Stripe, id: string, fetchedAt: Date): Promise<string> {
  let subscription: unknown;
  try {
    subscription = await stripe.subscriptions.retrieve(id, {
      expand: ["items.data.price.product", "default_payment_method", "latest_invoice", "customer"],
    });
  } catch (error) {
    if (!isMissing(error)) throw error;
    subscription = { id, deleted: true };
  }
  const outcome = await writeObject(helpers, "sync_stripe_subscription", subscription, fetchedAt);
  if (outcome.startsWith("duplicate of ")) {
    const current = outcome.slice("duplicate of ".length);
    throw new SyncProblem(
      `${id} is a second live subscription for an organization that already has ${current}, and Stripe bills both. ` +
        "Cancel one of them in the Stripe dashboard (usually the newer, refunding it if needed); if the current one ends, this one is synced again and takes its place.",
    );
  }
  // Paid for after its organization was deleted (a checkout completed just before the deletion):
  // nothing here is billed for any more, but Stripe still bills it.
  const status = (subscription as { status?: string }).status;
  if (outcome === "organization deleted" && status && LIVE.has(status)) {
    throw new SyncProblem(`${id} is ${status} in Stripe, but its organization was deleted: cancel it in the Stripe dashboard (refunding it if needed).`);
  }
  if (outcome === "unattributed") {
    throw new SyncProblem(
      `${id} belongs to no organization here: neither its metadata nor its customer's names one, and the customer was not created by this backend.`,
    );
  }
  return outcome;
}
