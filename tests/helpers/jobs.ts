import { Logger, runOnce } from "graphile-worker";
import { makeWorkerPreset } from "../../src/worker/preset.ts";
import type { TestDatabase } from "./database.ts";

const quiet = new Logger(() => () => {});

/** Runs every queued job once, as a worker would (emails go to SMTP_URL); job failures stay in the table. */
export async function runJobs(db: TestDatabase): Promise<void> {
  await runOnce({ pgPool: db.root, preset: makeWorkerPreset({ concurrency: 2 }), noHandleSignals: true, logger: quiet });
}
