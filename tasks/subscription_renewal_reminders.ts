import type { Task } from "graphile-worker";
import { scheduleOf } from "../src/worker/scheduled.ts";

/**
 * subscription_renewal_reminders (daily, see crontab): emails owners of subscriptions that renew
 * within 7 days, and of trials that end within 3, once per subscription and period. The rules
 * live in app_private.send_renewal_reminders().
 */
const renewalReminders: Task = async (payload, helpers) => {
  const { now } = scheduleOf(payload);
  const { rows } = await helpers.query<{ sent: { renewals: number; trials: number } }>(
    "select app_private.send_renewal_reminders($1) as sent",
    [now],
  );
  const { renewals, trials } = rows[0]!.sent;
  helpers.logger.info(`reminders as of ${now.toISOString()}: ${renewals} renewal(s), ${trials} trial end(s)`);
};

export default renewalReminders;
