import path from "node:path";
import { startBackend, type Backend } from "./backend.ts";
import { ConfigError, loadConfig, type Config } from "./config.ts";
import { createLogger } from "./logger.ts";
import { stopOnSignals } from "./signals.ts";

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
    `  Files         ${backend.storage}`,
    config.email.smtpUrl === "disabled"
      ? "  Email         off (SMTP_URL=disabled)"
      : config.email.smtpUrl
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
  const starting = startBackend(config, logger).catch((error: unknown) => {
    logger.fatal({ err: error }, "could not start");
    process.exit(1);
  });
  // Signals are handled from the start: one that arrives while the database boots or migrates, or
  // once the in-process worker has taken a job, still stops everything cleanly (the embedded
  // database included) once it is up, instead of killing the process halfway.
  stopOnSignals(logger, async () => (await starting).stop(), config.shutdownDelayMs + config.shutdownTimeoutMs + 15_000);
  const backend = await starting;
  logger.info({ url: backend.url, startupMs: Date.now() - started }, "ready");
  // In production the "ready" line says it; stdout is a JSON log stream there.
  if (config.env !== "production") process.stdout.write(banner(config, backend) + "\n");
}
