import { Logger as WorkerLogger, run, type Runner } from "graphile-worker";
import type pg from "pg";
import type { Logger } from "../logger.ts";
import { makeWorkerPreset } from "./preset.ts";

const LEVELS = { error: "error", warning: "warn", info: "info", debug: "debug" } as const;

/**
 * What a log line may say about a job: never its payload. Payloads carry ids, but a job queued by
 * older code (or by hand) might carry anything.
 */
function withoutPayload(meta: Record<string, unknown> | undefined): Record<string, unknown> {
  if (!meta || typeof meta.job !== "object" || meta.job === null) return meta ?? {};
  const { id, task_identifier, attempts, max_attempts, queue_name } = meta.job as Record<string, unknown>;
  return { ...meta, job: { id, task_identifier, attempts, max_attempts, queue_name } };
}

/** graphile-worker's logger, writing through our pino logger so job logs carry the same format. */
export function workerLogger(logger: Logger): WorkerLogger {
  return new WorkerLogger((scope) => {
    const child = logger.child({ worker: scope.workerId, task: scope.taskIdentifier, jobId: scope.jobId });
    return (level, message, meta) => {
      const method = LEVELS[level as keyof typeof LEVELS] ?? "info";
      child[method](withoutPayload(meta), message);
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
