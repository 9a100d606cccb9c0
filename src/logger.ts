import { pino, type Logger } from "pino";

export type { Logger };

/** Paths whose values never reach the logs. */
const REDACT = [
  "req.headers.authorization",
  "req.headers.cookie",
  'res.headers["set-cookie"]',
  "*.password",
  "*.currentPassword",
  "*.newPassword",
  "*.token",
  "*.refreshToken",
  "*.accessToken",
];

/**
 * The root logger: the only module-level singleton the house allows, built once in the entry
 * point. Pretty-printed when a person watches a terminal in development, JSON otherwise.
 */
export function createLogger(options: { level: string; pretty?: boolean }): Logger {
  return pino({
    level: options.level,
    redact: { paths: REDACT, censor: "[redacted]" },
    transport: options.pretty
      ? { target: "pino-pretty", options: { colorize: true, ignore: "pid,hostname", translateTime: "HH:MM:ss" } }
      : undefined,
  });
}
