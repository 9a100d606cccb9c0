import { Writable } from "node:stream";
import { pino } from "pino";
import { loadConfig, type Config } from "../../src/config.ts";
import { createPools, type Pools } from "../../src/db/pools.ts";
import { latestCommittedMigration } from "../../src/db/setup.ts";
import { createApp, type App, type AppOptions } from "../../src/http/app.ts";
import { loggerOptions, type Logger } from "../../src/logger.ts";
import type { TestDatabase } from "./database.ts";

/** What production must be given beyond the test defaults (email explicitly off here). */
export const PRODUCTION_ENV = { NODE_ENV: "production", PUBLIC_URL: "https://api.example.com", SMTP_URL: "disabled" } as const;

/** Configuration as `npm start` would build it from `env`, pointed at the test database. */
export function testConfig(db: TestDatabase, env: Record<string, string> = {}): Config {
  return loadConfig({
    ...process.env,
    DATABASE_URL: db.urls.owner,
    AUTH_DATABASE_URL: db.urls.authenticator,
    DATABASE_ANONYMOUS: db.urls.roles.anonymous,
    DATABASE_USER: db.urls.roles.user,
    ...env,
  });
}

/** A logger configured like production's (JSON, same redaction) whose lines the test can read. */
export function captureLogger(level = "debug"): { logger: Logger; lines: () => Array<Record<string, unknown>>; text: () => string } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk, _encoding, callback) {
      chunks.push(String(chunk));
      callback();
    },
  });
  const logger = pino(loggerOptions(level), stream);
  return {
    logger,
    lines: () => chunks.join("").split("\n").filter(Boolean).map((line) => JSON.parse(line) as Record<string, unknown>),
    text: () => chunks.join(""),
  };
}

export interface TestApp extends App {
  config: Config;
  pools: Pools;
  close(): Promise<void>;
}

/** A whole HTTP app on the test database, built exactly as `npm start` builds it. */
export async function buildTestApp(
  db: TestDatabase,
  options: { env?: Record<string, string>; logger?: Logger; poolSize?: number } & Partial<
    Pick<AppOptions, "routes" | "latestMigration" | "socketCheckIntervalMs" | "storage" | "superuserUrl" | "contractsDir">
  > = {},
): Promise<TestApp> {
  const config = testConfig(db, options.env);
  const logger = options.logger ?? pino({ level: "silent" });
  const pools = createPools(db.urls, logger, { max: options.poolSize ?? 4 });
  const app = await createApp({
    config,
    pools,
    logger,
    roles: db.urls.roles,
    latestMigration: options.latestMigration ?? (await latestCommittedMigration()),
    routes: options.routes,
    socketCheckIntervalMs: options.socketCheckIntervalMs,
    storage: options.storage,
    superuserUrl: options.superuserUrl,
    contractsDir: options.contractsDir,
  });
  return {
    ...app,
    config,
    pools,
    close: async () => {
      await app.release();
      await pools.end();
    },
  };
}
