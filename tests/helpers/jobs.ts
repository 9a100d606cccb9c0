import { Logger, runOnce } from "graphile-worker";
import type { Logger as AppLogger } from "../../src/logger.ts";
import { workerLogger } from "../../src/worker/runner.ts";
import { makeWorkerPreset } from "../../src/worker/preset.ts";
import type { TestDatabase } from "./database.ts";

const quiet = new Logger(() => () => {});

/**
 * Runs the queued jobs as a worker would (emails go to SMTP_URL), including jobs those jobs queue,
 * until none is due; failures stay in the table with their backoff. With `logger`, jobs log
 * through it exactly as the in-process worker does.
 */
export async function runJobs(db: TestDatabase, logger?: AppLogger): Promise<void> {
  for (let round = 0; round < 5; round++) {
    await runOnce({
      pgPool: db.root,
      preset: makeWorkerPreset({ concurrency: 2 }),
      noHandleSignals: true,
      logger: logger ? workerLogger(logger) : quiet,
    });
    const { rows } = await db.root.query<{ due: number }>(
      "select count(*)::int as due from graphile_worker.jobs where run_at <= now() and attempts < max_attempts and locked_at is null",
    );
    if (rows[0]!.due === 0) return;
  }
}
