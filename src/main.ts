import path from "node:path";
import { startBackend, type Backend } from "./backend.ts";
import { ConfigError, loadConfig, type Config } from "./config.ts";
import { createLogger } from "./logger.ts";

function banner(config: Config, backend: Backend): string {
  const relative = (p: string) => {
    const inside = path.relative(process.cwd(), p);
    return inside.startsWith("..") ? p : inside || ".";
  };
  const db = new URL(backend.database.urls.owner);
  const lines = [
    "",
    `Oddscenes backend is running (${config.env}).`,
    `  GraphQL API   ${backend.url}/graphql  (WebSocket subscriptions on the same URL)`,
    config.env === "production" ? undefined : `  GraphiQL      ${backend.url}/graphiql`,
    `  Health        ${backend.url}/healthz  ·  ${backend.url}/readyz  ·  ${backend.url}/metrics`,
    backend.database.embedded
      ? `  Database      embedded PostgreSQL on ${db.host}, data in ${relative(path.join(config.dataDir, "pg"))}/`
      : `  Database      ${db.host}${db.pathname}`,
    config.worker.mode === "inline"
      ? `  Worker        in this process, ${config.worker.concurrency} jobs at a time`
      : "  Worker        off here (WORKER=off); run `npm run worker` separately",
    config.email.smtpUrl
      ? `  Email         via ${new URL(config.email.smtpUrl).host}`
      : `  Email         written to ${relative(config.email.mailDir)}/ (set SMTP_URL to send for real)`,
    "Press Ctrl-C to stop.",
    "",
  ];
  return lines.filter((line) => line !== undefined).join("\n");
}

/** `npm start`: load config, start everything, print where it is, stop cleanly on a signal. */
export async function main(): Promise<void> {
  let config: Config;
  try {
    config = loadConfig();
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(`${error.message}\nSee .env.example for every variable and its meaning.`);
      process.exit(1);
    }
    throw error;
  }
  const logger = createLogger({ level: config.logLevel, pretty: config.env !== "production" && process.stdout.isTTY });
  const started = Date.now();
  const backend = await startBackend(config, logger).catch((error: unknown) => {
    logger.fatal({ err: error }, "could not start");
    process.exit(1);
  });
  logger.info({ url: backend.url, startupMs: Date.now() - started }, "ready");
  process.stdout.write(banner(config, backend) + "\n");

  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.warn({ signal }, "second signal: exiting now");
      process.exit(1);
    }
    stopping = true;
    logger.info({ signal }, "stopping (send the signal again to force)");
    const force = setTimeout(() => {
      logger.error("shutdown took too long: exiting");
      process.exit(1);
    }, config.shutdownTimeoutMs + 15_000);
    force.unref();
    backend.stop().then(
      () => {
        logger.info("stopped");
        process.exit(0);
      },
      (error: unknown) => {
        logger.error({ err: error }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
}
