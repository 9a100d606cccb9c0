import path from "node:path";
import type { WorkerEvents } from "graphile-worker";
import { PROJECT_ROOT } from "../db/setup.ts";

/**
 * graphile-worker settings shared by the in-process worker (`npm start`) and `npm run worker`.
 * Completions and failures are written in batches. There is no local queue: in graphile-worker
 * 0.18 a worker stopping while its local queue holds jobs fails to hand them back cleanly (errors
 * at every normal shutdown), and every prefetched job would be one more a crash strands.
 */
export function makeWorkerPreset(options: { concurrency: number; connectionString?: string; events?: WorkerEvents }): GraphileConfig.Preset {
  return {
    worker: {
      connectionString: options.connectionString,
      concurrentJobs: options.concurrency,
      maxPoolSize: options.concurrency + 2,
      taskDirectory: path.join(PROJECT_ROOT, "tasks"),
      crontabFile: path.join(PROJECT_ROOT, "crontab"),
      fileExtensions: [".ts"],
      completeJobBatchDelay: 0,
      failJobBatchDelay: 0,
      gracefulShutdownAbortTimeout: 5000,
      ...(options.events ? { events: options.events } : {}),
    },
  };
}
