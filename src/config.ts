import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import proxyAddr from "proxy-addr";
import { z } from "zod";
import type { QueryLimits } from "./graphql/limits.ts";

/** Thrown when the environment is invalid; `problems` lists every issue, one per line. */
export class ConfigError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
    this.name = "ConfigError";
    this.problems = problems;
  }
}

const DURATION = /^(\d+)\s*(ms|s|m|h|d)?$/;
const UNIT_SECONDS = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 } as const;

/** "15m", "30d", "10s" or a plain number of seconds, as whole seconds. */
const duration = z.string().trim().transform((value, ctx) => {
  const match = DURATION.exec(value);
  if (!match) {
    ctx.addIssue({ code: "custom", message: `must be a duration like 30s, 15m, 12h or 30d (got "${value}")` });
    return z.NEVER;
  }
  const unit = (match[2] ?? "s") as keyof typeof UNIT_SECONDS;
  return Math.ceil(Number(match[1]) * UNIT_SECONDS[unit]);
});

/** "10/15m": at most 10 in any 15-minute window. */
const rate = z.string().trim().transform((value, ctx) => {
  const [count, window] = value.split("/");
  const windowMatch = DURATION.exec(window ?? "");
  if (!/^\d+$/.test(count ?? "") || !windowMatch || Number(count) < 1) {
    ctx.addIssue({ code: "custom", message: `must be a count per duration like 10/15m (got "${value}")` });
    return z.NEVER;
  }
  const unit = (windowMatch[2] ?? "s") as keyof typeof UNIT_SECONDS;
  return { max: Number(count), windowSeconds: Math.ceil(Number(windowMatch[1]) * UNIT_SECONDS[unit]) };
});

export interface Rate {
  max: number;
  windowSeconds: number;
}

const SIZE = /^(\d+)\s*(b|kb|mb|gb)?$/i;
const SIZE_BYTES = { b: 1, kb: 1024, mb: 1024 * 1024, gb: 1024 * 1024 * 1024 } as const;
const byteSize = z.string().trim().transform((value, ctx) => {
  const match = SIZE.exec(value);
  if (!match) {
    ctx.addIssue({ code: "custom", message: `must be a size like 100kb or 1mb (got "${value}")` });
    return z.NEVER;
  }
  const unit = (match[2] ?? "b").toLowerCase() as keyof typeof SIZE_BYTES;
  return Number(match[1]) * SIZE_BYTES[unit];
});

/**
 * TRUST_PROXY: which hops may set X-Forwarded-For. Unset trusts none (the client's own address
 * counts); a number trusts that many hops; a list trusts those addresses, CIDR ranges or the names
 * loopback, linklocal and uniquelocal. "Trust everything" is refused: any client could then pick
 * the address its rate limits are counted under.
 */
const trustProxy = z.string().trim().transform((value, ctx): number | string[] | false => {
  if (value === "" || value === "0" || value === "false") return false;
  if (/^\d+$/.test(value)) return Number(value);
  if (value === "true" || value === "*") {
    ctx.addIssue({ code: "custom", message: 'must name the proxies (a hop count like 1, or addresses like 10.0.0.0/8), not "trust everything"' });
    return z.NEVER;
  }
  const entries = value.split(",").map((entry) => entry.trim()).filter(Boolean);
  try {
    proxyAddr.compile(entries);
  } catch (error) {
    ctx.addIssue({ code: "custom", message: `must be a hop count or a list of addresses/CIDR ranges (${(error as Error).message})` });
    return z.NEVER;
  }
  return entries;
});

const flag = z
  .string()
  .trim()
  .toLowerCase()
  .refine((value) => ["true", "false", "1", "0", "on", "off", "yes", "no"].includes(value), { message: "must be true or false" })
  .transform((value) => ["true", "1", "on", "yes"].includes(value));

const postgresUrl = z
  .string()
  .trim()
  .refine((value) => /^postgres(ql)?:\/\//.test(value) && URL.canParse(value), {
    message: "must be a postgres:// connection string",
  });

const roleName = z
  .string()
  .trim()
  .regex(/^[a-z_][a-z0-9_]{0,62}$/, "must be a lower-case PostgreSQL role name (letters, digits, _)");

/** What may be uploaded unless STORAGE_ALLOWED_TYPES says otherwise: images, PDFs, office documents, text, archives. */
const DEFAULT_ALLOWED_TYPES = [
  "image/png",
  "image/jpeg",
  "image/gif",
  "image/webp",
  "application/pdf",
  "text/plain",
  "text/csv",
  "text/markdown",
  "application/zip",
  "application/json",
  "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
  "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
  "application/vnd.openxmlformats-officedocument.presentationml.presentation",
];
const MEDIA_TYPE_PATTERN = /^[a-z0-9][a-z0-9!#$&^_.+-]*\/([a-z0-9][a-z0-9!#$&^_.+-]*|\*)$/;

const optional = <T extends z.ZodType>(schema: T) =>
  z.preprocess((value) => (value === "" ? undefined : value), schema.optional());

const EnvSchema = z.object({
  NODE_ENV: z.enum(["development", "test", "production"]).default("development"),
  PORT: z.coerce.number().int().min(0).max(65535).default(3000),
  HOST: optional(z.string().trim().min(1)),
  PUBLIC_URL: optional(z.url()),
  DATA_DIR: z.string().trim().min(1).default(".data"),
  DATABASE_URL: optional(postgresUrl),
  AUTH_DATABASE_URL: optional(postgresUrl),
  ROOT_DATABASE_URL: optional(postgresUrl),
  SHADOW_DATABASE_URL: optional(postgresUrl),
  DATABASE_ANONYMOUS: roleName.default("oddscenes_anonymous"),
  DATABASE_USER: roleName.default("oddscenes_user"),
  EMBEDDED_PG_PORT: optional(z.coerce.number().int().min(1024).max(65535)),
  JWT_SECRET: optional(z.string().min(32, "must be at least 32 characters")),
  JWT_ACCESS_TTL: duration.default(900),
  REFRESH_TOKEN_TTL: duration.default(30 * 86400),
  REFRESH_REUSE_GRACE: duration.default(10),
  LOGIN_BACKOFF_AFTER: z.coerce.number().int().min(1).max(100).default(5),
  LOGIN_BACKOFF_MAX: duration.default(900),
  REQUIRE_VERIFIED_EMAIL: optional(flag),
  TRUST_PROXY: optional(trustProxy),
  RATE_LIMIT_LOGIN_EMAIL: rate.default({ max: 10, windowSeconds: 900 }),
  RATE_LIMIT_LOGIN_IP: rate.default({ max: 50, windowSeconds: 900 }),
  RATE_LIMIT_REGISTER_IP: rate.default({ max: 10, windowSeconds: 3600 }),
  RATE_LIMIT_FORGOT_PASSWORD_EMAIL: rate.default({ max: 3, windowSeconds: 3600 }),
  RATE_LIMIT_REFRESH_SESSION: rate.default({ max: 30, windowSeconds: 60 }),
  RATE_LIMIT_RESEND_VERIFICATION: rate.default({ max: 3, windowSeconds: 3600 }),
  RATE_LIMIT_GRAPHQL_IP: rate.default({ max: 1200, windowSeconds: 60 }),
  RATE_LIMIT_GRAPHQL_USER: rate.default({ max: 600, windowSeconds: 60 }),
  GRAPHQL_MAX_SUBSCRIPTIONS: z.coerce.number().int().min(1).max(100_000).default(100),
  GRAPHQL_MAX_DEPTH: z.coerce.number().int().min(2).max(100).default(12),
  GRAPHQL_MAX_ALIASES: z.coerce.number().int().min(0).max(10_000).default(50),
  GRAPHQL_MAX_FIELDS: z.coerce.number().int().min(10).max(100_000).default(1000),
  GRAPHQL_MAX_COST: z.coerce.number().int().min(100).max(1_000_000_000).default(5_000_000),
  GRAPHQL_MAX_PAGE_SIZE: z.coerce.number().int().min(1).max(10_000).default(100),
  GRAPHQL_MAX_DOCUMENT: byteSize.default(32 * 1024),
  GRAPHQL_INTROSPECTION: optional(flag),
  STRIPE_SECRET_KEY: optional(z.string().regex(/^(sk|rk)_(test|live)_/, "must start with sk_test_, sk_live_ or rk_")),
  STRIPE_WEBHOOK_SECRET: optional(
    z
      .string()
      .transform((value) => value.split(",").map((secret) => secret.trim()).filter(Boolean))
      .refine((secrets) => secrets.length > 0 && secrets.every((secret) => /^whsec_\S+$/.test(secret)), {
        message: "must be one or more whsec_… secrets, comma-separated (several while rotating)",
      }),
  ),
  STRIPE_API_URL: z.url().default("https://api.stripe.com"),
  BILLING_PAST_DUE_GRACE: duration.default(7 * 86400),
  SMTP_URL: optional(z.string().regex(/^(smtps?:\/\/|disabled$)/, 'must be an smtp:// or smtps:// URL, or "disabled"')),
  EMAIL_FROM: z.string().trim().min(3).default("Oddscenes <no-reply@oddscenes.localhost>"),
  CORS_ORIGINS: z.string().default(""),
  BODY_LIMIT: byteSize.default(1024 * 1024),
  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
  WORKER: z.enum(["inline", "off"]).default("inline"),
  WORKER_CONCURRENCY: z.coerce.number().int().min(1).max(100).default(4),
  WORKER_HEALTH_FILE: optional(z.string().trim().min(1)),
  SHUTDOWN_TIMEOUT: duration.default(10),
  HTTP_REQUEST_TIMEOUT: duration.default(30),
  SHUTDOWN_DELAY: optional(duration),
  METRICS_PORT: optional(z.coerce.number().int().min(0).max(65535)),
  METRICS_TOKEN: optional(z.string().min(16, "must be at least 16 characters")),
  WEBSOCKET_KEEPALIVE: duration.default(12),
  DEV_WATCH: optional(flag),
  S3_ENDPOINT: optional(z.url()),
  S3_REGION: z.string().trim().min(1).default("us-east-1"),
  S3_BUCKET: optional(z.string().trim().regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, "must be a bucket name (3-63 lower-case letters, digits, dots, hyphens)")),
  S3_ACCESS_KEY_ID: optional(z.string().trim().min(1)),
  S3_SECRET_ACCESS_KEY: optional(z.string().trim().min(1)),
  S3_FORCE_PATH_STYLE: optional(flag),
  STORAGE_MAX_UPLOAD: byteSize.default(25 * 1024 * 1024).refine((bytes) => bytes >= 1 && bytes <= 5 * 1024 * 1024 * 1024, {
    message: "must be between 1 byte and 5gb (the largest single upload S3 accepts)",
  }),
  STORAGE_ALLOWED_TYPES: z
    .string()
    .default(DEFAULT_ALLOWED_TYPES.join(","))
    .transform((value) => value.split(",").map((type) => type.trim().toLowerCase()).filter(Boolean))
    .refine((types) => types.length > 0 && types.every((type) => MEDIA_TYPE_PATTERN.test(type)), {
      message: "must be a comma-separated list of media types like image/png, or image/* for a whole family",
    }),
});

export type NodeEnv = "development" | "test" | "production";

export interface Config {
  env: NodeEnv;
  port: number;
  host: string;
  publicUrl: string;
  /** Absolute path of the local state folder (embedded database, dev secrets, mail). */
  dataDir: string;
  database: {
    /** Owner connection; undefined means "run the embedded PostgreSQL under dataDir". */
    ownerUrl: string | undefined;
    authUrl: string | undefined;
    rootUrl: string | undefined;
    shadowUrl: string | undefined;
    anonymousRole: string;
    userRole: string;
    embeddedPort: number | undefined;
  };
  jwt: {
    secret: string;
    accessTtlSeconds: number;
    refreshTtlSeconds: number;
    reuseGraceSeconds: number;
    issuer: string;
    audience: string;
  };
  auth: {
    /**
     * Consecutive wrong passwords for an address from one client before each further attempt
     * from there waits 2^n seconds, up to `maxSeconds`.
     */
    backoff: { after: number; maxSeconds: number };
    /** Unverified users may sign in and verify, but not create or join organizations. */
    requireVerifiedEmail: boolean;
    rateLimits: {
      /** Failed sign-ins on one address from clients that never signed in to it. */
      loginEmail: Rate;
      loginIp: Rate;
      registerIp: Rate;
      forgotPasswordEmail: Rate;
      refreshSession: Rate;
      resendVerification: Rate;
    };
  };
  graphqlRateLimits: { ip: Rate; user: Rate };
  /** Live subscriptions one user may hold at once, per API instance. */
  graphqlMaxSubscriptions: number;
  /** What one GraphQL document may ask for (see src/graphql/limits.ts). */
  graphqlLimits: QueryLimits;
  /** Introspection and "did you mean" suggestions: on in development, off in production unless asked for. */
  graphqlIntrospection: boolean;
  /** Express's `trust proxy`: false, a hop count, or addresses/ranges allowed to set X-Forwarded-For. */
  trustProxy: number | string[] | false;
  stripe: {
    secretKey: string | undefined;
    /** Every endpoint secret a webhook may be signed with (the new and the old one while rotating). */
    webhookSecrets: string[];
    /** Stripe's API; tests point it at a local fake. */
    apiUrl: string;
  };
  billing: {
    /** How long a past_due subscription keeps its paid plan's limits. */
    pastDueGraceSeconds: number;
  };
  email: { smtpUrl: string | undefined; from: string; mailDir: string };
  corsOrigins: string[];
  bodyLimitBytes: number;
  logLevel: string;
  /** healthFile: touched at every heartbeat of `npm run worker`, for a container healthcheck. */
  worker: { mode: "inline" | "off"; concurrency: number; healthFile: string | undefined };
  shutdownTimeoutMs: number;
  /** How long a stopping instance stays open, already unready, before it drains (load balancers lag). */
  shutdownDelayMs: number;
  /** How long one HTTP request (its body included) may take; slow clients are cut off after it. */
  requestTimeoutMs: number;
  /** WebSockets are pinged this often; one that does not answer within it is closed. */
  websocketKeepaliveMs: number;
  /** Where /metrics is served: its own port, or the public one behind a bearer token (open in development). */
  metrics: { port: number | undefined; token: string | undefined };
  storage: StorageSettings;
  /**
   * `npm run dev`: the GraphQL schema is rebuilt whenever the database's schema changes (e.g.
   * db:watch applying current.sql), and schema.graphql and openapi.json are rewritten.
   */
  devWatch: boolean;
}

/**
 * Where files go. "s3": the configured S3-compatible service; "embedded": development's local
 * S3-compatible server under DATA_DIR/storage (started by npm start); "disabled": no storage
 * (production or tests without S3 settings): uploads answer storage_unavailable.
 */
export interface StorageSettings {
  mode: "s3" | "embedded" | "disabled";
  endpoint: string | undefined;
  region: string;
  bucket: string;
  /** Unset: the AWS SDK's own credential chain (environment, instance role…). */
  credentials: { accessKeyId: string; secretAccessKey: string } | undefined;
  forcePathStyle: boolean;
  maxUploadBytes: number;
  /** Media types (lower case); "image/*" allows a whole family. */
  allowedTypes: string[];
  /** Where the embedded server keeps its objects. */
  embeddedDir: string;
}

/** Secrets that development generates once and keeps in `<DATA_DIR>/secrets.json`. */
export interface DevSecrets {
  jwtSecret: string;
  superuserPassword: string;
  ownerPassword: string;
  authenticatorPassword: string;
}

/** Reads or creates the development secrets file; never used in production. */
export function loadDevSecrets(dataDir: string): DevSecrets {
  const file = path.join(dataDir, "secrets.json");
  if (existsSync(file)) {
    return JSON.parse(readFileSync(file, "utf8")) as DevSecrets;
  }
  const secret = () => randomBytes(32).toString("base64url");
  const secrets: DevSecrets = {
    jwtSecret: secret(),
    superuserPassword: secret(),
    ownerPassword: secret(),
    authenticatorPassword: secret(),
  };
  mkdirSync(dataDir, { recursive: true });
  writeFileSync(file, JSON.stringify(secrets, null, 2) + "\n", { mode: 0o600 });
  return secrets;
}

/** Variables whose values are never echoed in an error message. */
const SECRET_VARIABLES = /SECRET|PASSWORD|TOKEN|KEY/;

/** A variable's value as an error message may show it: secrets never, passwords in URLs masked. */
function shown(name: string, value: unknown): string | undefined {
  if (typeof value !== "string" || SECRET_VARIABLES.test(name)) return undefined;
  if (name.endsWith("_URL") && name !== "PUBLIC_URL") {
    // Connection URLs carry credentials in many shapes: show only the scheme and the host.
    if (!URL.canParse(value)) return undefined;
    const url = new URL(value);
    return url.hostname ? `${url.protocol}//${url.host}/…` : undefined;
  }
  return value.length > 80 ? `${value.slice(0, 77)}...` : value;
}

/** Secrets copied from the examples: fine on a laptop, never in production. */
const SAMPLE_SECRET = /change-?me|^(x+|0+|secret|changeit|example.*)$/i;

/**
 * What the process is: the API server (needs everything), a worker (sends email, so needs
 * PUBLIC_URL and mail settings, not the JWT secret), or an operator command (neither).
 */
export type ConfigPurpose = "server" | "worker" | "cli";

const DOT_ENV = ".env";

/**
 * Parses and validates the environment once. Throws ConfigError listing every problem, all at
 * once, with the offending value (never a secret's). Outside production, missing secrets are
 * generated into DATA_DIR and reused. A `.env` file in the working directory is read first
 * (variables already set win), except under the test runner.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env, cwd = process.cwd(), purpose: ConfigPurpose = "server"): Config {
  if (env === process.env && !process.env.VITEST && existsSync(path.join(cwd, DOT_ENV))) process.loadEnvFile(path.join(cwd, DOT_ENV));
  const parsed = EnvSchema.safeParse(env);
  const problems: string[] = parsed.success
    ? []
    : parsed.error.issues.map((issue) => {
        const name = issue.path.join(".") || "environment";
        const value = shown(name, env[name]);
        return `${name}: ${issue.message}${value === undefined || issue.message.includes("(got") ? "" : ` (got "${value}")`}`;
      });
  // Checks across variables run on the raw values too, so every problem is reported in one round.
  const raw = (name: string) => (env[name] === "" ? undefined : env[name]);
  const production = (parsed.success ? parsed.data.NODE_ENV : env.NODE_ENV) === "production";

  if (raw("DATABASE_URL") && !raw("AUTH_DATABASE_URL")) {
    problems.push("AUTH_DATABASE_URL: required when DATABASE_URL is set (the API connects as the authenticator role)");
  }
  if (!raw("DATABASE_URL") && raw("AUTH_DATABASE_URL")) {
    problems.push("DATABASE_URL: required when AUTH_DATABASE_URL is set");
  }
  if (production && !raw("DATABASE_URL")) {
    problems.push("DATABASE_URL: required in production (the embedded PostgreSQL is for development only)");
  }
  if (production && purpose === "server" && !raw("JWT_SECRET")) {
    problems.push("JWT_SECRET: required in production (at least 32 random characters, e.g. openssl rand -base64 48)");
  }
  if (production && raw("JWT_SECRET") && SAMPLE_SECRET.test(raw("JWT_SECRET")!)) {
    problems.push("JWT_SECRET: is the example's placeholder; set a random secret (openssl rand -base64 48)");
  }
  if (production && purpose !== "cli" && !raw("PUBLIC_URL")) {
    problems.push("PUBLIC_URL: required in production (links in emails point there)");
  }
  if (production && purpose !== "cli" && !raw("SMTP_URL")) {
    problems.push('SMTP_URL: required in production (an smtp:// URL, or "disabled" to send no email at all)');
  }
  if (env.LOGIN_LOCKOUT !== undefined) {
    problems.push("LOGIN_LOCKOUT: no longer used (accounts are not locked any more); see LOGIN_BACKOFF_AFTER and LOGIN_BACKOFF_MAX");
  }
  if (raw("STRIPE_SECRET_KEY") && !raw("STRIPE_WEBHOOK_SECRET")) {
    problems.push("STRIPE_WEBHOOK_SECRET: required when STRIPE_SECRET_KEY is set");
  }
  if (raw("STRIPE_WEBHOOK_SECRET") && !raw("STRIPE_SECRET_KEY")) {
    problems.push("STRIPE_SECRET_KEY: required when STRIPE_WEBHOOK_SECRET is set (events are synced by fetching their objects)");
  }
  if (production && raw("DEV_WATCH") && flag.safeParse(raw("DEV_WATCH")).data) {
    problems.push("DEV_WATCH: development only (it rebuilds the GraphQL schema on every DDL and writes schema.graphql and openapi.json)");
  }
  if (raw("S3_ENDPOINT") && !raw("S3_BUCKET")) {
    problems.push("S3_BUCKET: required when S3_ENDPOINT is set");
  }
  if (!raw("S3_ACCESS_KEY_ID") !== !raw("S3_SECRET_ACCESS_KEY")) {
    problems.push("S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY: set both or neither (neither uses the AWS SDK's credential chain)");
  }
  if (!parsed.success || problems.length > 0) {
    throw new ConfigError(problems);
  }
  const e = parsed.data;

  const dataDir = path.resolve(cwd, e.DATA_DIR);
  // Operator commands in production have no JWT_SECRET and sign nothing.
  const jwtSecret = e.JWT_SECRET ?? (production ? "" : loadDevSecrets(dataDir).jwtSecret);
  const publicUrl = (e.PUBLIC_URL ?? `http://localhost:${e.PORT}`).replace(/\/+$/, "");

  return {
    env: e.NODE_ENV,
    port: e.PORT,
    host: e.HOST ?? (production ? "0.0.0.0" : "127.0.0.1"),
    publicUrl,
    dataDir,
    database: {
      ownerUrl: e.DATABASE_URL,
      authUrl: e.AUTH_DATABASE_URL,
      rootUrl: e.ROOT_DATABASE_URL,
      shadowUrl: e.SHADOW_DATABASE_URL,
      anonymousRole: e.DATABASE_ANONYMOUS,
      userRole: e.DATABASE_USER,
      embeddedPort: e.EMBEDDED_PG_PORT,
    },
    jwt: {
      secret: jwtSecret,
      accessTtlSeconds: e.JWT_ACCESS_TTL,
      refreshTtlSeconds: e.REFRESH_TOKEN_TTL,
      reuseGraceSeconds: e.REFRESH_REUSE_GRACE,
      issuer: publicUrl,
      audience: "oddscenes",
    },
    auth: {
      backoff: { after: e.LOGIN_BACKOFF_AFTER, maxSeconds: e.LOGIN_BACKOFF_MAX },
      requireVerifiedEmail: e.REQUIRE_VERIFIED_EMAIL ?? production,
      rateLimits: {
        loginEmail: e.RATE_LIMIT_LOGIN_EMAIL,
        loginIp: e.RATE_LIMIT_LOGIN_IP,
        registerIp: e.RATE_LIMIT_REGISTER_IP,
        forgotPasswordEmail: e.RATE_LIMIT_FORGOT_PASSWORD_EMAIL,
        refreshSession: e.RATE_LIMIT_REFRESH_SESSION,
        resendVerification: e.RATE_LIMIT_RESEND_VERIFICATION,
      },
    },
    graphqlRateLimits: { ip: e.RATE_LIMIT_GRAPHQL_IP, user: e.RATE_LIMIT_GRAPHQL_USER },
    graphqlMaxSubscriptions: e.GRAPHQL_MAX_SUBSCRIPTIONS,
    graphqlLimits: {
      maxDepth: e.GRAPHQL_MAX_DEPTH,
      maxAliases: e.GRAPHQL_MAX_ALIASES,
      maxFields: e.GRAPHQL_MAX_FIELDS,
      maxCost: e.GRAPHQL_MAX_COST,
      maxPageSize: e.GRAPHQL_MAX_PAGE_SIZE,
      maxDocumentLength: e.GRAPHQL_MAX_DOCUMENT,
    },
    graphqlIntrospection: e.GRAPHQL_INTROSPECTION ?? !production,
    trustProxy: e.TRUST_PROXY ?? false,
    stripe: { secretKey: e.STRIPE_SECRET_KEY, webhookSecrets: e.STRIPE_WEBHOOK_SECRET ?? [], apiUrl: e.STRIPE_API_URL },
    billing: { pastDueGraceSeconds: e.BILLING_PAST_DUE_GRACE },
    email: { smtpUrl: e.SMTP_URL, from: e.EMAIL_FROM, mailDir: path.join(dataDir, "mail") },
    corsOrigins: e.CORS_ORIGINS.split(",").map((o) => o.trim()).filter(Boolean),
    bodyLimitBytes: e.BODY_LIMIT,
    logLevel: e.LOG_LEVEL,
    worker: { mode: e.WORKER, concurrency: e.WORKER_CONCURRENCY, healthFile: e.WORKER_HEALTH_FILE },
    shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT * 1000,
    shutdownDelayMs: (e.SHUTDOWN_DELAY ?? (production ? 5 : 0)) * 1000,
    requestTimeoutMs: e.HTTP_REQUEST_TIMEOUT * 1000,
    websocketKeepaliveMs: e.WEBSOCKET_KEEPALIVE * 1000,
    metrics: { port: e.METRICS_PORT, token: e.METRICS_TOKEN },
    devWatch: e.DEV_WATCH ?? false,
    storage: {
      // Only development falls back to a local server: production without S3 settings has no
      // storage (and says so), never a silent local copy.
      mode: e.S3_BUCKET ? "s3" : e.NODE_ENV === "development" ? "embedded" : "disabled",
      endpoint: e.S3_ENDPOINT,
      region: e.S3_REGION,
      bucket: e.S3_BUCKET ?? "oddscenes",
      credentials: e.S3_ACCESS_KEY_ID && e.S3_SECRET_ACCESS_KEY ? { accessKeyId: e.S3_ACCESS_KEY_ID, secretAccessKey: e.S3_SECRET_ACCESS_KEY } : undefined,
      forcePathStyle: e.S3_FORCE_PATH_STYLE ?? false,
      maxUploadBytes: e.STORAGE_MAX_UPLOAD,
      allowedTypes: e.STORAGE_ALLOWED_TYPES,
      embeddedDir: path.join(dataDir, "storage"),
    },
  };
}
