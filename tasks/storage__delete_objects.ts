import type { Task } from "graphile-worker";
import { z } from "zod";
import { jobStorage } from "../src/storage/open.ts";

const Payload = z.object({ keys: z.array(z.string().min(1)).max(1000) });

/**
 * storage__delete_objects { keys }: deletes the objects of file rows that were deleted (queued by
 * a trigger on app_public.files in the deleting transaction: a file, or the task, comment,
 * organization or user it belonged to). Keys a row has taken again in the meantime are kept.
 * Objects already gone are fine; a storage failure fails the job, which is retried. On a
 * server without storage there is nothing to reach: the job says so and leaves them to the sweep.
 */
const deleteObjects: Task = async (rawPayload, helpers) => {
  const { keys } = Payload.parse(rawPayload);
  const { rows } = await helpers.query<{ key: string }>("select app_private.orphaned_object_keys($1) as key", [keys]);
  const orphaned = rows.map((row) => row.key);
  const storage = jobStorage();
  if (!storage) {
    // Nothing can be reached; storage__sweep removes these once storage is configured again.
    helpers.logger.warn(`file storage is not configured (S3_BUCKET): ${orphaned.length} object(s) of deleted files are left to storage__sweep`);
    return;
  }
  await storage.deleteObjects(orphaned);
  helpers.logger.info(`deleted ${orphaned.length} object(s) of deleted files`);
};

export default deleteObjects;
