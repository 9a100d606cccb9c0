import { once } from "node:events";
import { createServer, type Server } from "node:http";
import express from "express";
import type { Runner } from "graphile-worker";
import type { Config } from "./config.ts";
import { openDatabase, type Database } from "./db/database.ts";
import { createPools } from "./db/pools.ts";
import { latestCommittedMigration, migrateDatabase } from "./db/setup.ts";
import { createApp } from "./http/app.ts";
import { metricsAuth } from "./http/metrics.ts";
import type { Logger } from "./logger.ts";
import { openStorage, shareStorageWithJobs } from "./storage/open.ts";
import { startWorker } from "./worker/runner.ts";

export interface Backend {
  /** Base URL the API listens on. */
  url: string;
  database: Database;
  worker: Runner | undefined;
  /** Where files are stored, for the startup banner. */
  storage: string;
  /** Ordered, bounded shutdown; resolves when everything is released. */
  stop(): Promise<void>;
}

async function listen(server: Server, port: number, host: string): Promise<number> {
  server.listen(port, host);
  await once(server, "listening");
  const address = server.address();
  return typeof address === "object" && address ? address.port : port;
}

/** The superuser's connection to the application's own database (for DEV_WATCH), when known. */
function superuserUrlOf(urls: Database["urls"]): string | undefined {
  if (!urls.root) return undefined;
  const url = new URL(urls.root);
  url.pathname = new URL(urls.owner).pathname;
  return url.toString();
}

/**
 * The whole backend in one process: database (embedded or configured), migrations, API and,
 * with WORKER=inline, the job worker.
 */
export async function startBackend(config: Config, logger: Logger): Promise<Backend> {
  const database = await openDatabase(config, logger);
  const cleanup: Array<() => Promise<void>> = [() => database.stop()];
  const unwind = async () => {
    for (const step of cleanup.reverse()) await step().catch((error: unknown) => logger.error({ err: error }, "cleanup failed"));
  };
  try {
    await migrateDatabase(database.urls, logger);
    const files = await openStorage(config, logger);
    cleanup.push(() => files.stop());
    shareStorageWithJobs(files.storage);
    const pools = createPools(database.urls, logger);
    cleanup.push(() => pools.end());
    // An in-process worker that stopped by itself makes this instance unready (jobs would pile up).
    let workerAlive = true;
    const app = await createApp({
      config,
      pools,
      logger,
      roles: database.urls.roles,
      latestMigration: await latestCommittedMigration(),
      workerAlive: () => workerAlive,
      storage: files.storage,
      superuserUrl: superuserUrlOf(database.urls),
    });
    cleanup.push(() => app.release());
    const worker =
      config.worker.mode === "inline"
        ? await startWorker({ pool: pools.owner, concurrency: config.worker.concurrency, logger })
        : undefined;
    if (worker) cleanup.push(() => worker.stop());
    let stopping = false;
    worker?.promise
      .catch(() => undefined)
      .then(() => {
        if (!stopping) workerAlive = false;
      });
    const port = await listen(app.server, config.port, config.host);
    let metricsServer: Server | undefined;
    if (config.metrics.port !== undefined) {
      // Metrics on a port of their own, e.g. reachable only inside the cluster.
      const metricsApp = express();
      metricsApp.get("/metrics", metricsAuth(config.metrics.token), app.metrics);
      metricsServer = createServer(metricsApp);
      const metricsPort = await listen(metricsServer, config.metrics.port, config.host);
      cleanup.push(() => new Promise<void>((resolve) => metricsServer!.close(() => resolve())));
      logger.info({ port: metricsPort }, "metrics served on their own port");
    } else if (config.env === "production" && !config.metrics.token) {
      logger.warn("/metrics is not served: set METRICS_PORT (a port of its own) or METRICS_TOKEN (a bearer token on this one)");
    }

    const stop = async () => {
      stopping = true;
      const drainMs = Math.max(1000, config.shutdownTimeoutMs / 2);
      logger.info("shutting down: not ready, no new connections, draining requests");
      await app.drain({ timeoutMs: drainMs, delayMs: config.shutdownDelayMs });
      if (worker) {
        logger.info("waiting for running jobs to finish");
        await worker.stop();
      }
      metricsServer?.closeAllConnections();
      await new Promise<void>((resolve) => (metricsServer ? metricsServer.close(() => resolve()) : resolve()));
      await app.release();
      await pools.end();
      await files.stop();
      await database.stop();
    };
    const displayHost = config.host === "0.0.0.0" || config.host === "::" ? "localhost" : config.host;
    return { url: `http://${displayHost}:${port}`, database, worker, storage: files.description, stop };
  } catch (error) {
    await unwind();
    throw error;
  }
}
