// `npm run worker`: graphile-worker in a process of its own, as many as you like, on this machine
// or others. It reads the same environment as `npm start`. Without DATABASE_URL it joins the
// embedded database `npm start` runs, or starts (and migrates) it. `npm run worker -- --once`
// runs what is due and exits.
import { parseArgs } from "node:util";
import { runOnce } from "graphile-worker";
import pg from "pg";
import { ConfigError, loadConfig, type Config } from "../config.ts";
import { openDatabase } from "../db/database.ts";
import { migrateDatabase } from "../db/setup.ts";
import { createLogger } from "../logger.ts";
import { stopOnSignals } from "../signals.ts";
import { makeWorkerPreset } from "./preset.ts";
import { startWorker, workerLogger } from "./runner.ts";

const { values } = parseArgs({ options: { once: { type: "boolean", default: false } } });

let config: Config;
try {
  config = loadConfig(process.env, process.cwd(), "worker");
} catch (error) {
  if (!(error instanceof ConfigError)) throw error;
  console.error(`${error.message}\nSee .env.example for every variable and its meaning.`);
  process.exit(1);
}
const logger = createLogger({ level: config.logLevel, pretty: config.env !== "production" && process.stdout.isTTY });

const database = await openDatabase(config, logger).catch((error: unknown) => {
  logger.fatal({ err: error }, "could not reach the database");
  process.exit(1);
});
// A development database this command started itself may be new: bring it up to date first.
if (database.embedded) await migrateDatabase(database.urls, logger);
const pool = new pg.Pool({
  connectionString: database.urls.owner,
  max: config.worker.concurrency + 3,
  application_name: "oddscenes:worker",
  connectionTimeoutMillis: 5000,
});
pool.on("error", (error) => logger.warn({ err: error }, "idle database connection failed"));
// A connection that fails while checked out must not crash the process either.
pool.on("connect", (client) => client.on("error", (error) => logger.warn({ err: error }, "database connection failed")));

const release = async () => {
  await pool.end();
  await database.stop();
};

if (values.once) {
  await runOnce({ pgPool: pool, preset: makeWorkerPreset({ concurrency: config.worker.concurrency }), noHandleSignals: true, logger: workerLogger(logger) });
  await release();
  logger.info("ran every job that was due");
} else {
  let stopping = false;
  const starting = startWorker({ pool, concurrency: config.worker.concurrency, logger, healthFile: config.worker.healthFile });
  // Signals are handled from the start: a job can be taken before startWorker returns, and a
  // SIGTERM then must still let it finish rather than kill the process mid-job.
  stopOnSignals(
    logger,
    async () => {
      stopping = true;
      await (await starting.catch(() => undefined))?.stop();
      await release();
    },
    config.shutdownTimeoutMs + 15_000,
  );
  const worker = await starting;
  logger.info({ concurrency: config.worker.concurrency }, "worker running");
  // A worker that stops by itself (it gave up on the database) exits, so a supervisor restarts it.
  worker.promise
    .catch(() => undefined)
    .then(async () => {
      if (stopping) return;
      logger.error("the worker stopped by itself; exiting so it can be restarted");
      await release().catch(() => undefined);
      process.exit(1);
    });
}
