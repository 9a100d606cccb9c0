import { Logger as WorkerLogger, run, type Runner } from "graphile-worker";
import type pg from "pg";
import type { Logger } from "../logger.ts";
import { makeWorkerPreset } from "./preset.ts";

const LEVELS = { error: "error", warning: "warn", info: "info", debug: "debug" } as const;

/** graphile-worker's logger, writing through our pino logger so job logs carry the same format. */
export function workerLogger(logger: Logger): WorkerLogger {
  return new WorkerLogger((scope) => {
    const child = logger.child({ worker: scope.workerId, task: scope.taskIdentifier, jobId: scope.jobId });
    return (level, message, meta) => {
      const method = LEVELS[level as keyof typeof LEVELS] ?? "info";
      child[method](meta ?? {}, message);
    };
  });
}

/**
 * Runs the worker inside this process on the owner pool. Signals are ours to handle: the entry
 * point stops the worker during its own ordered shutdown.
 */
export async function startWorker(options: { pool: pg.Pool; concurrency: number; logger: Logger }): Promise<Runner> {
  const runner = await run({
    pgPool: options.pool,
    preset: makeWorkerPreset({ concurrency: options.concurrency }),
    noHandleSignals: true,
    logger: workerLogger(options.logger),
  });
  // A failing job is logged by the worker; an unexpected runner failure must not pass silently.
  runner.promise.catch((error: unknown) => options.logger.error({ err: error }, "worker stopped unexpectedly"));
  return runner;
}
