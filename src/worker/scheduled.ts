import { z } from "zod";

/**
 * What a scheduled task may be given: graphile-worker's cron adds `_cron: { ts, backfilled }` (the
 * time the run was scheduled for, also when it is a backfill after downtime); an operator or a
 * test may pass `now` instead. Tasks compute from that time, never from the clock, so a late or
 * repeated run does the same work as the punctual one.
 */
const ScheduledPayload = z.object({
  now: z.iso.datetime({ offset: true }).optional(),
  _cron: z.object({ ts: z.string(), backfilled: z.boolean().optional() }).optional(),
});

export interface Schedule {
  /** The time the run is for. */
  now: Date;
  /** Whether graphile-worker queued it to make up for time no worker was running. */
  backfilled: boolean;
}

export function scheduleOf(payload: unknown): Schedule {
  const parsed = ScheduledPayload.parse(payload ?? {});
  const at = parsed.now ?? parsed._cron?.ts;
  const now = at ? new Date(at) : new Date();
  if (Number.isNaN(now.getTime())) throw new Error(`not a time: ${at}`);
  return { now, backfilled: parsed._cron?.backfilled ?? false };
}

/** The UTC day before `now` as YYYY-MM-DD: a run just after midnight reports on the day that ended. */
export function previousUtcDay(now: Date): string {
  return new Date(now.getTime() - 86_400_000).toISOString().slice(0, 10);
}
