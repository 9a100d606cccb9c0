import type { Task } from "graphile-worker";
import { z } from "zod";

const Payload = z.object({ organizationId: z.uuid(), day: z.iso.date() });

/**
 * usage_report { organizationId, day }: stores one organization's report for a UTC day and emails
 * it to owners and admins who want it (each once, also when run again), unless nobody did
 * anything that day. Queued by daily_usage_report.
 */
const usageReport: Task = async (rawPayload, helpers) => {
  const { organizationId, day } = Payload.parse(rawPayload);
  const { rows } = await helpers.query<{ emails: number }>("select app_private.deliver_usage_report($1, $2::date) as emails", [organizationId, day]);
  helpers.logger.debug(`usage report of ${organizationId} for ${day}: ${rows[0]!.emails} email(s) queued`);
};

export default usageReport;
