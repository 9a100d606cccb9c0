import path from "node:path";
import { PROJECT_ROOT } from "../db/setup.ts";

/**
 * graphile-worker settings shared by the in-process worker (`npm start`) and the CLI
 * (`npm run worker`). Batching (local queue, batched completion) drains short jobs far faster
 * than one round trip per job.
 */
export function makeWorkerPreset(options: { concurrency: number; connectionString?: string }): GraphileConfig.Preset {
  return {
    worker: {
      connectionString: options.connectionString,
      concurrentJobs: options.concurrency,
      maxPoolSize: options.concurrency + 2,
      taskDirectory: path.join(PROJECT_ROOT, "tasks"),
      crontabFile: path.join(PROJECT_ROOT, "crontab"),
      fileExtensions: [".ts"],
      localQueue: { size: 50 },
      completeJobBatchDelay: 0,
      failJobBatchDelay: 0,
      gracefulShutdownAbortTimeout: 5000,
    },
  };
}
