import { EventEmitter } from "node:events";
import { writeFile } from "node:fs/promises";
import { hostname } from "node:os";
import { Logger as WorkerLogger, run, type Runner, type WorkerEvents } from "graphile-worker";
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

/** How often a worker says it is alive, and after how long without a word it counts as dead. */
export const HEARTBEAT_MS = 5_000;
export const DEAD_AFTER_MS = 30_000;

export interface WorkerOptions {
  pool: pg.Pool;
  concurrency: number;
  logger: Logger;
  /** Touched at every heartbeat, for a container healthcheck (`npm run worker` sets it). */
  healthFile?: string;
  heartbeatMs?: number;
  deadAfterMs?: number;
}

/**
 * Runs graphile-worker on the owner pool, with signals left to the caller (it stops the worker
 * during its own ordered shutdown). While it runs it records a heartbeat under graphile-worker's
 * id for it (the locked_by of its jobs) and, now and then, hands back the jobs of workers whose
 * heartbeat stopped (a process that was killed), so they run again within a minute instead of
 * graphile-worker's 4 hours.
 */
export async function startWorker(options: WorkerOptions): Promise<Runner> {
  const { pool, logger } = options;
  const heartbeatMs = options.heartbeatMs ?? HEARTBEAT_MS;
  const deadAfterMs = options.deadAfterMs ?? DEAD_AFTER_MS;
  const events = new EventEmitter() as WorkerEvents;
  let workerId: string | undefined;
  // Emitted while run() starts, so the listener is in place before.
  events.on("pool:create", ({ workerPool }) => {
    workerId = workerPool.id;
  });
  const runner = await run({
    pgPool: pool,
    preset: makeWorkerPreset({ concurrency: options.concurrency, events }),
    noHandleSignals: true,
    logger: workerLogger(logger),
  });
  let timers: NodeJS.Timeout[] = [];
  const stopTimers = () => {
    for (const timer of timers) clearInterval(timer);
    timers = [];
  };
  let stopped = false;
  // A runner that stops by itself (e.g. it gave up on the database) must not look alive: its
  // heartbeat stops, so its jobs are recovered, and whoever runs it hears about it.
  runner.promise.then(
    () => {
      stopped = true;
      stopTimers();
    },
    (error: unknown) => {
      stopped = true;
      stopTimers();
      logger.error({ err: error }, "worker stopped unexpectedly");
    },
  );

  /** Since when every heartbeat has succeeded (undefined while they fail). */
  let healthySince: number | undefined;
  let beating: Promise<unknown> = Promise.resolve();
  const beat = async () => {
    if (!workerId || stopped) return;
    try {
      await pool.query("select app_private.worker_heartbeat($1, $2, $3)", [workerId, hostname(), process.pid]);
      healthySince ??= Date.now();
    } catch (error) {
      healthySince = undefined;
      throw error;
    }
    if (options.healthFile) await writeFile(options.healthFile, new Date().toISOString());
  };
  const recover = async () => {
    // After an outage every heartbeat is stale at once: only a worker that has itself beaten
    // without a gap for longer than the silence judges others, so by then the living have beaten too.
    if (healthySince === undefined || Date.now() - healthySince <= deadAfterMs) return;
    const { rows } = await pool.query<{ worker_id: string; jobs: number }>("select * from app_private.recover_dead_workers($1::interval)", [
      `${deadAfterMs} milliseconds`,
    ]);
    for (const dead of rows) {
      logger.warn({ deadWorker: dead.worker_id, jobs: dead.jobs }, `worker ${dead.worker_id} stopped beating; its ${dead.jobs} job(s) will run again here or on another worker`);
    }
  };
  // Timers that keep running while the database is away: a missed beat is logged, not fatal.
  const every = (ms: number, what: string, fn: () => Promise<void>, track = false) => {
    let running = false;
    const timer = setInterval(() => {
      if (running) return;
      running = true;
      const run = fn()
        .catch((error: unknown) => logger.warn({ err: error }, `worker ${what} failed`))
        .finally(() => (running = false));
      if (track) beating = run;
    }, ms);
    timer.unref();
    return timer;
  };
  await beat().catch((error: unknown) => logger.warn({ err: error }, "worker heartbeat failed"));
  timers = [every(heartbeatMs, "heartbeat", beat, true), every(Math.max(heartbeatMs, deadAfterMs / 3), "recovery", recover)];

  const stop = runner.stop.bind(runner);
  runner.stop = async () => {
    stopTimers();
    // A runner that already stopped by itself has nothing left to release.
    if (!stopped) await stop();
    stopped = true;
    // Its jobs are released: nobody needs to recover them. A beat still on its way must not
    // write the row back afterwards.
    await beating;
    if (workerId) await pool.query("select app_private.worker_stopped($1)", [workerId]).catch(() => {});
  };
  return runner;
}
