import type { Task } from "graphile-worker";

/**
 * cleanup (hourly, see crontab): deletes rate-limit counters older than a day, and sessions and
 * email tokens that ended over a week ago. The rules live in app_private.cleanup_expired().
 */
const cleanup: Task = async (_payload, helpers) => {
  const { rows } = await helpers.query<{ removed: Record<string, number> }>("select app_private.cleanup_expired() as removed");
  const removed = rows[0]?.removed ?? {};
  helpers.logger.info(
    `removed ${Object.entries(removed)
      .map(([what, count]) => `${count} ${what.replace("_", " ")}`)
      .join(", ")}`,
  );
};

export default cleanup;
