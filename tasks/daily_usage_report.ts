import type { Task } from "graphile-worker";
import { z } from "zod";
import { previousUtcDay, scheduleOf } from "../src/worker/scheduled.ts";

const Payload = z.object({ day: z.iso.date().optional() }).loose();

/**
 * daily_usage_report (00:15 UTC, see crontab): queues one usage_report job per organization for
 * the UTC day that just ended (or `{ "day": "YYYY-MM-DD" }`), keyed usage_report:<org>:<day>, so
 * each organization's report is its own short transaction and a rerun replaces rather than adds.
 */
const dailyUsageReport: Task = async (rawPayload, helpers) => {
  const schedule = scheduleOf(rawPayload);
  const day = Payload.parse(rawPayload ?? {}).day ?? previousUtcDay(schedule.now);
  const { rows } = await helpers.query<{ queued: number }>("select app_private.queue_usage_reports($1::date) as queued", [day]);
  helpers.logger.info(`queued the ${day} usage report of ${rows[0]!.queued} organization(s)${schedule.backfilled ? " (catching up on a run missed while no worker ran)" : ""}`);
};

export default dailyUsageReport;
