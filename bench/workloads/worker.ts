// graphile-worker: jobs per second through a runner with the app's settings, and how long a job
// waits from being added until it starts when the runner is idle. The runner lives in this
// process and knows one task, `bench_noop`, so it never takes the app's jobs (a worker only
// fetches the task identifiers it knows) and the app's workers never take its jobs. It uses no
// named queue: jobs of one queue run one at a time, which would measure nothing but that.
import { Logger, makeWorkerUtils, run, type Runner, type Task, type WorkerUtils } from "graphile-worker";
import { makeWorkerPreset } from "../../src/worker/preset.ts";

const TASK = "bench_noop";

interface Payload {
  /** This measurement's id: jobs left behind by an earlier, interrupted one are run but not counted. */
  run: string;
  /** The latency job's number; absent for throughput jobs. */
  n?: number;
}

/** Errors only: the runner's info lines (every job) are not what is measured. */
const quietLogger = new Logger(() => (level, message) => {
  if (level === "error") console.error(`graphile-worker: ${message}`);
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const round1 = (value: number) => Math.round(value * 10) / 10;

/**
 * Runs graphile-worker's `run()` here with the app's preset (src/worker/preset.ts: `concurrency`
 * workers, a pool of concurrency + 2, completions written at once, no local queue, the default
 * 2 s poll besides LISTEN/NOTIFY), a one-task list and no cron.
 *
 * - Throughput: `jobs` jobs are added in one statement (addJobs) before the runner starts; the
 *   rate is jobs / (last job done − first job started), counted in the task itself.
 * - Latency: with the runner idle, `latencyJobs` jobs are added one at a time at
 *   `latencyRatePerSecond` (not waiting for each add), each timed from just before addJob until
 *   its task starts, in this process's clock.
 *
 * Stops the runner and releases every pool at the end.
 */
export async function measureWorker(options: {
  connectionString: string /* owner role URL */;
  jobs: number;
  concurrency: number;
  latencyJobs: number;
  latencyRatePerSecond: number;
}): Promise<{ jobsPerSecond: number; latencyP50: number; latencyP95: number; latencyMax: number; concurrency: number }> {
  const { connectionString, jobs, concurrency, latencyJobs, latencyRatePerSecond } = options;
  const runId = `${process.pid}-${Date.now()}`;

  let done = 0;
  let firstStart: number | undefined;
  let lastDone = 0;
  const enqueuedAt = new Map<number, number>();
  const startedAt = new Map<number, number>();
  let onEvent: (() => void) | undefined;

  const noop: Task = async (raw) => {
    const payload = raw as Payload;
    const now = performance.now();
    if (payload?.run !== runId) return;
    if (payload.n === undefined) {
      firstStart ??= now;
      done += 1;
      lastDone = performance.now();
    } else {
      startedAt.set(payload.n, now);
    }
    onEvent?.();
  };

  /** Resolves once `ready()` holds; throws after `timeoutMs`. */
  const until = async (ready: () => boolean, timeoutMs: number, what: () => string) => {
    const deadline = performance.now() + timeoutMs;
    while (!ready()) {
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`measureWorker: ${what()} within ${Math.round(timeoutMs / 1000)} s`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 50));
        onEvent = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      onEvent = undefined;
    }
  };

  let utils: WorkerUtils | undefined;
  let runner: Runner | undefined;
  try {
    // Its own small pool, for adding jobs as another process (or the API) would.
    utils = await makeWorkerUtils({ connectionString, logger: quietLogger });
    const spec = { identifier: TASK, payload: { run: runId } satisfies Payload, maxAttempts: 1 };
    await utils.addJobs(Array.from({ length: jobs }, () => spec));

    runner = await run({
      // The app's worker settings; graphile-worker makes (and on stop ends) a pool of concurrency + 2.
      preset: makeWorkerPreset({ concurrency, connectionString }),
      taskList: { [TASK]: noop },
      // Not the repository's crontab (the default crontabFile), nor anything else.
      parsedCronItems: [],
      noHandleSignals: true,
      logger: quietLogger,
    });

    await until(() => done >= jobs, Math.max(60_000, jobs * 20), () => `only ${done} of ${jobs} jobs ran`);
    const seconds = (lastDone - (firstStart ?? lastDone)) / 1000;
    const jobsPerSecond = seconds > 0 ? jobs / seconds : 0;

    // Idle now (and the last completions written): one job at a time, at the given rate.
    await sleep(500);
    const interval = 1000 / latencyRatePerSecond;
    const began = performance.now();
    const adds: Array<Promise<unknown>> = [];
    for (let n = 0; n < latencyJobs; n++) {
      const wait = began + n * interval - performance.now();
      if (wait > 0) await sleep(wait);
      enqueuedAt.set(n, performance.now());
      adds.push(utils.addJob(TASK, { run: runId, n } satisfies Payload, { maxAttempts: 1 }));
    }
    await Promise.all(adds);
    await until(() => startedAt.size >= latencyJobs, 30_000, () => `only ${startedAt.size} of ${latencyJobs} latency jobs started`);
    const latencies = [...startedAt].map(([n, at]) => at - enqueuedAt.get(n)!).sort((a, b) => a - b);
    const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0;

    return {
      jobsPerSecond: Math.round(jobsPerSecond),
      latencyP50: round1(at(0.5)),
      latencyP95: round1(at(0.95)),
      latencyMax: round1(latencies[latencies.length - 1] ?? 0),
      concurrency,
    };
  } finally {
    onEvent = undefined;
    await runner?.stop().catch((error: unknown) => console.error("measureWorker: stopping the runner failed", error));
    await utils?.release();
  }
}
