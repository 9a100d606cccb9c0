import type { Task } from "graphile-worker";
import { z } from "zod";
import { scheduleOf } from "../src/worker/scheduled.ts";

/** What app_private.cleanup_batch() removes, in this order (see its comment for each retention). */
const CLEANUP_CATEGORIES = [
  "rate_limits",
  "login_failures",
  "sessions",
  "refresh_tokens",
  "email_tokens",
  "trusted_devices",
  "invitations",
  "unverified_users",
  "stripe_event_payloads",
  "usage_report_emails",
  "email_deliveries",
  "pending_uploads",
  "security_events",
  "data_exports",
  "failed_jobs",
] as const;

const Payload = z.object({ batchSize: z.number().int().min(1).max(100_000).default(1000) }).loose();

/**
 * cleanup (hourly, see crontab): removes what is past retention, one category at a time, in
 * batches of `batchSize` rows that each commit on their own, so no lock is held for long.
 * Logs how many of each went.
 */
const cleanup: Task = async (rawPayload, helpers) => {
  const { now } = scheduleOf(rawPayload);
  const { batchSize } = Payload.parse(rawPayload ?? {});
  const removed: string[] = [];
  for (const category of CLEANUP_CATEGORIES) {
    let total = 0;
    for (;;) {
      const { rows } = await helpers.query<{ n: number }>("select app_private.cleanup_batch($1, $2, $3) as n", [category, batchSize, now]);
      total += rows[0]!.n;
      if (rows[0]!.n < batchSize) break;
    }
    removed.push(`${total} ${category.replaceAll("_", " ")}`);
  }
  helpers.logger.info(`removed ${removed.join(", ")}`);
};

export default cleanup;
