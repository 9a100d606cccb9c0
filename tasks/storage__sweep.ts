import type { Task } from "graphile-worker";
import { z } from "zod";
import { jobStorage } from "../src/storage/open.ts";
import { scheduleOf } from "../src/worker/scheduled.ts";

const Payload = z.object({ olderThanHours: z.number().min(0).max(24 * 365).default(24) }).loose();

/**
 * storage__sweep (daily, see crontab): deletes objects in the bucket that no file row refers to
 * and that are older than a day (longer than any upload URL lives): an upload made through a
 * URL after its row was deleted, or what a deletion job that gave up left behind. Logs how many
 * objects it looked at and removed.
 */
const sweep: Task = async (rawPayload, helpers) => {
  const { now } = scheduleOf(rawPayload);
  const { olderThanHours } = Payload.parse(rawPayload ?? {});
  const cutoff = new Date(now.getTime() - olderThanHours * 3600_000);
  const storage = jobStorage();
  if (!storage) {
    helpers.logger.info("file storage is not configured (S3_BUCKET): nothing to sweep");
    return;
  }
  let seen = 0;
  const orphaned: string[] = [];
  for await (const page of storage.listObjects()) {
    seen += page.length;
    const old = page.filter((object) => object.lastModified && object.lastModified < cutoff).map((object) => object.key);
    if (old.length === 0) continue;
    const { rows } = await helpers.query<{ key: string }>("select app_private.orphaned_object_keys($1) as key", [old]);
    orphaned.push(...rows.map((row) => row.key));
  }
  await storage.deleteObjects(orphaned);
  helpers.logger.info(`looked at ${seen} object(s) in bucket ${storage.bucket}; removed ${orphaned.length} that no file refers to`);
};

export default sweep;
