import { pino, type Logger, type LoggerOptions } from "pino";

export type { Logger };

const SECRET_KEYS = ["password", "currentPassword", "newPassword", "token", "refreshToken", "accessToken", "deviceToken", "link", "authorization"];

/**
 * Paths whose values never reach the logs: credentials anywhere in the first two levels, and job
 * payloads (they should carry ids only; this is the second line of defence).
 */
const REDACT = [
  "req.headers.authorization",
  "req.headers.cookie",
  'res.headers["set-cookie"]',
  ...SECRET_KEYS,
  ...SECRET_KEYS.map((key) => `*.${key}`),
  ...SECRET_KEYS.map((key) => `*.*.${key}`),
  "payload",
  "job.payload",
  "variables",
  "*.variables",
];

/** Level and redaction, shared by the root logger and anything that must log exactly like it. */
export function loggerOptions(level: string): LoggerOptions {
  return { level, redact: { paths: REDACT, censor: "[redacted]" } };
}

/**
 * The root logger: the only module-level singleton the house allows, built once in the entry
 * point. Pretty-printed when a person watches a terminal in development, JSON otherwise.
 */
export function createLogger(options: { level: string; pretty?: boolean }): Logger {
  return pino({
    ...loggerOptions(options.level),
    transport: options.pretty
      ? { target: "pino-pretty", options: { colorize: true, ignore: "pid,hostname", translateTime: "HH:MM:ss" } }
      : undefined,
  });
}
