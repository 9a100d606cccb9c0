import { Logger, runOnce } from "graphile-worker";
import type { Logger as AppLogger } from "../../src/logger.ts";
import { workerLogger } from "../../src/worker/runner.ts";
import { makeWorkerPreset } from "../../src/worker/preset.ts";
import type { TestDatabase } from "./database.ts";

const quiet = new Logger(() => () => {});

/**
 * Runs every queued job once, as a worker would (emails go to SMTP_URL); job failures stay in the
 * table. With `logger`, jobs log through it exactly as the in-process worker does.
 */
export async function runJobs(db: TestDatabase, logger?: AppLogger): Promise<void> {
  await runOnce({
    pgPool: db.root,
    preset: makeWorkerPreset({ concurrency: 2 }),
    noHandleSignals: true,
    logger: logger ? workerLogger(logger) : quiet,
  });
}
