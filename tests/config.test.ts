import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../src/config.ts";

const tmp = () => mkdtempSync(path.join(tmpdir(), "oddscenes-config-"));

function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConfig({ NODE_ENV: "development", DATA_DIR: tmp(), ...env });
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  return [];
}

describe("configuration", () => {
  it("works with no environment at all in development", () => {
    const dataDir = tmp();
    const config = loadConfig({ DATA_DIR: dataDir });
    expect(config.env).toBe("development");
    expect(config.port).toBe(3000);
    expect(config.publicUrl).toBe("http://localhost:3000");
    expect(config.database.ownerUrl).toBeUndefined();
    expect(config.jwt.accessTtlSeconds).toBe(900);
    expect(config.jwt.refreshTtlSeconds).toBe(30 * 86400);
    expect(config.jwt.reuseGraceSeconds).toBe(10);
    expect(config.worker.mode).toBe("inline");
    expect(config.bodyLimitBytes).toBe(1024 * 1024);
  });

  it("generates development secrets once and reuses them", () => {
    const dataDir = tmp();
    const first = loadConfig({ DATA_DIR: dataDir });
    const second = loadConfig({ DATA_DIR: dataDir });
    expect(first.jwt.secret).toHaveLength(43);
    expect(second.jwt.secret).toBe(first.jwt.secret);
    const stored = JSON.parse(readFileSync(path.join(dataDir, "secrets.json"), "utf8"));
    expect(stored.jwtSecret).toBe(first.jwt.secret);
  });

  it("lists every problem at once", () => {
    const problems = problemsOf({
      PORT: "eighty",
      JWT_ACCESS_TTL: "soon",
      WORKER: "sometimes",
      DATABASE_URL: "mysql://nope",
      LOG_LEVEL: "loud",
    });
    // One round: the cross-variable check (DATABASE_URL needs AUTH_DATABASE_URL) comes with the rest.
    expect(problems).toHaveLength(6);
    expect(problems.join("\n")).toMatch(/PORT: .* \(got "eighty"\)/);
    expect(problems.join("\n")).toMatch(/AUTH_DATABASE_URL: required when DATABASE_URL is set/);
    expect(problems.join("\n")).toMatch(/JWT_ACCESS_TTL: must be a duration like 30s, 15m, 12h or 30d \(got "soon"\)/);
    expect(problems.join("\n")).toMatch(/WORKER/);
    expect(problems.join("\n")).toMatch(/DATABASE_URL: must be a postgres:\/\/ connection string/);
    expect(problems.join("\n")).toMatch(/LOG_LEVEL/);
  });

  it("parses durations and sizes in friendly units", () => {
    const config = loadConfig({
      DATA_DIR: tmp(),
      JWT_ACCESS_TTL: "5m",
      REFRESH_TOKEN_TTL: "7d",
      REFRESH_REUSE_GRACE: "30",
      BODY_LIMIT: "256kb",
      CORS_ORIGINS: "https://a.example.com, https://b.example.com",
    });
    expect(config.jwt.accessTtlSeconds).toBe(300);
    expect(config.jwt.refreshTtlSeconds).toBe(7 * 86400);
    expect(config.jwt.reuseGraceSeconds).toBe(30);
    expect(config.bodyLimitBytes).toBe(256 * 1024);
    expect(config.corsOrigins).toEqual(["https://a.example.com", "https://b.example.com"]);
  });

  it("needs the authenticator URL alongside DATABASE_URL", () => {
    expect(problemsOf({ DATABASE_URL: "postgres://owner@db/app" })).toEqual([
      expect.stringMatching(/^AUTH_DATABASE_URL: required when DATABASE_URL is set/),
    ]);
  });

  it("refuses to invent secrets in production", () => {
    const dataDir = tmp();
    const problems = problemsOf({ NODE_ENV: "production", DATA_DIR: dataDir });
    expect(problems).toEqual([
      expect.stringMatching(/^DATABASE_URL: required in production/),
      expect.stringMatching(/^JWT_SECRET: required in production/),
      expect.stringMatching(/^PUBLIC_URL: required in production/),
      expect.stringMatching(/^SMTP_URL: required in production \(an smtp:\/\/ URL, or "disabled"/),
    ]);
    expect(existsSync(path.join(dataDir, "secrets.json"))).toBe(false);
  });

  it("accepts a complete production environment", () => {
    const config = loadConfig({
      NODE_ENV: "production",
      DATABASE_URL: "postgres://owner:pw@db:5432/app",
      AUTH_DATABASE_URL: "postgres://authenticator:pw@db:5432/app",
      JWT_SECRET: "k8Jq2vN5wX1zR7tY3uB6mC9pL4sD0fG2hA5jE8rT1yU6iO3",
      SMTP_URL: "smtp://mail.example.com:587",
      PUBLIC_URL: "https://api.example.com/",
    });
    expect(config.host).toBe("0.0.0.0");
    expect(config.publicUrl).toBe("https://api.example.com");
    expect(config.jwt.issuer).toBe("https://api.example.com");
  });

  it("refuses the examples' placeholder secret in production, and never echoes a secret", () => {
    const production = {
      NODE_ENV: "production",
      DATABASE_URL: "postgres://owner:hunter2@db:5432/app",
      AUTH_DATABASE_URL: "postgres://authenticator:pw@db:5432/app",
      PUBLIC_URL: "https://api.example.com",
      SMTP_URL: "disabled",
    };
    expect(problemsOf({ ...production, JWT_SECRET: "change-me-change-me-change-me-change-me-0000" })).toEqual([
      "JWT_SECRET: is the example's placeholder; set a random secret (openssl rand -base64 48)",
    ]);
    const shown = problemsOf({ ...production, JWT_SECRET: "too-short-secret", PORT: "x", DATABASE_URL: "mysql://owner:hunter2@db/app" }).join("\n");
    expect(shown).toContain('PORT: ');
    expect(shown).toContain('(got "x")');
    expect(shown).toContain("mysql://db/…");
    expect(shown).not.toContain("too-short-secret");
    expect(shown).not.toContain("hunter2");
    // Credentials in URLs of any shape stay out of the message.
    const odd = problemsOf({ SMTP_URL: "mailer:S3cretPass@smtp.example.com", DATABASE_URL: "postgres://owner:pa/ss@db/x", AUTH_DATABASE_URL: "postgres://a@db/x" }).join("\n");
    expect(odd).toContain("SMTP_URL: ");
    expect(odd).not.toContain("S3cretPass");
    expect(odd).not.toContain("pa/ss");
    // SMTP_URL=disabled is the explicit way to run without email.
    expect(loadConfig({ ...production, JWT_SECRET: "k8Jq2vN5wX1zR7tY3uB6mC9pL4sD0fG2hA5jE8rT1yU6iO3" }).email.smtpUrl).toBe("disabled");
  });

  it("asks operator commands and workers only for what they use", () => {
    const base = { NODE_ENV: "production", DATABASE_URL: "postgres://owner:pw@db:5432/app", AUTH_DATABASE_URL: "postgres://authenticator:pw@db:5432/app" };
    expect(() => loadConfig(base, tmp(), "cli")).not.toThrow();
    const worker = () => loadConfig(base, tmp(), "worker");
    expect(worker).toThrow(ConfigError);
    try {
      worker();
    } catch (error) {
      expect((error as ConfigError).problems).toEqual([expect.stringMatching(/^PUBLIC_URL: required/), expect.stringMatching(/^SMTP_URL: required/)]);
    }
  });

  it("reads a .env file in the working directory; variables already set win", () => {
    const dir = tmp();
    writeFileSync(path.join(dir, ".env"), "PORT=4321\nLOG_LEVEL=debug\n");
    const script = `const { loadConfig } = await import(${JSON.stringify(path.resolve("src/config.ts"))}); const c = loadConfig(process.env, process.cwd(), "cli"); console.log(c.port, c.logLevel);`;
    const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith("VITEST")));
    const result = spawnSync(process.execPath, ["--input-type=module", "-e", script], { cwd: dir, encoding: "utf8", env: { ...env, LOG_LEVEL: "warn", DATA_DIR: dir } });
    expect(result.stderr).toBe("");
    expect(result.stdout.trim()).toBe("4321 warn");
  });

  it("trusts no proxy unless told which, and never all of them", () => {
    expect(loadConfig({ DATA_DIR: tmp() }).trustProxy).toBe(false);
    expect(loadConfig({ DATA_DIR: tmp(), TRUST_PROXY: "1" }).trustProxy).toBe(1);
    expect(loadConfig({ DATA_DIR: tmp(), TRUST_PROXY: "loopback, 10.0.0.0/8" }).trustProxy).toEqual(["loopback", "10.0.0.0/8"]);
    expect(problemsOf({ TRUST_PROXY: "true" })).toEqual([expect.stringMatching(/^TRUST_PROXY: must name the proxies/)]);
    expect(problemsOf({ TRUST_PROXY: "10.0.0.0/8, not-an-address" })).toEqual([expect.stringMatching(/^TRUST_PROXY: must be a hop count or a list/)]);
  });

  it("requires verified email addresses in production unless told otherwise", () => {
    const production = {
      NODE_ENV: "production",
      DATABASE_URL: "postgres://owner:pw@db:5432/app",
      AUTH_DATABASE_URL: "postgres://authenticator:pw@db:5432/app",
      JWT_SECRET: "k8Jq2vN5wX1zR7tY3uB6mC9pL4sD0fG2hA5jE8rT1yU6iO3",
      SMTP_URL: "smtp://mail.example.com:587",
      PUBLIC_URL: "https://api.example.com",
    };
    expect(loadConfig(production).auth.requireVerifiedEmail).toBe(true);
    expect(loadConfig({ ...production, REQUIRE_VERIFIED_EMAIL: "false" }).auth.requireVerifiedEmail).toBe(false);
    expect(loadConfig({ DATA_DIR: tmp() }).auth.requireVerifiedEmail).toBe(false);
    expect(problemsOf({ REQUIRE_VERIFIED_EMAIL: "sometimes" })).toEqual([expect.stringMatching(/^REQUIRE_VERIFIED_EMAIL: must be true or false/)]);
  });

  it("takes several Stripe webhook secrets for rotation, and wants the API key with them", () => {
    const config = loadConfig({ DATA_DIR: tmp(), STRIPE_SECRET_KEY: "sk_test_1", STRIPE_WEBHOOK_SECRET: "whsec_new, whsec_old" });
    expect(config.stripe.webhookSecrets).toEqual(["whsec_new", "whsec_old"]);
    expect(config.stripe.apiUrl).toBe("https://api.stripe.com");
    expect(config.billing.pastDueGraceSeconds).toBe(7 * 86400);
    expect(problemsOf({ STRIPE_SECRET_KEY: "sk_test_1", STRIPE_WEBHOOK_SECRET: "whsec_ok,nope" })).toEqual([
      expect.stringMatching(/^STRIPE_WEBHOOK_SECRET: must be one or more whsec_/),
    ]);
    expect(problemsOf({ STRIPE_WEBHOOK_SECRET: "whsec_1" })).toEqual([expect.stringMatching(/^STRIPE_SECRET_KEY: required when STRIPE_WEBHOOK_SECRET is set/)]);
    expect(problemsOf({ STRIPE_SECRET_KEY: "sk_test_1" })).toEqual([expect.stringMatching(/^STRIPE_WEBHOOK_SECRET: required when STRIPE_SECRET_KEY is set/)]);
  });

  it("stores files locally in development only: production without S3_BUCKET has no storage, never a local fallback", () => {
    expect(loadConfig({ DATA_DIR: tmp() }).storage).toMatchObject({ mode: "embedded", bucket: "oddscenes", maxUploadBytes: 25 * 1024 * 1024 });
    const production = {
      NODE_ENV: "production",
      DATABASE_URL: "postgres://owner:pw@db:5432/app",
      AUTH_DATABASE_URL: "postgres://authenticator:pw@db:5432/app",
      JWT_SECRET: "k8Jq2vN5wX1zR7tY3uB6mC9pL4sD0fG2hA5jE8rT1yU6iO3",
      SMTP_URL: "disabled",
      PUBLIC_URL: "https://api.example.com/",
    };
    expect(loadConfig(production).storage.mode).toBe("disabled");
    const r2 = loadConfig({
      ...production,
      S3_BUCKET: "team-files",
      S3_REGION: "auto",
      S3_ENDPOINT: "https://acct.r2.cloudflarestorage.com",
      S3_ACCESS_KEY_ID: "key",
      S3_SECRET_ACCESS_KEY: "secret",
      STORAGE_MAX_UPLOAD: "1gb",
      STORAGE_ALLOWED_TYPES: "image/*, application/pdf",
    }).storage;
    expect(r2).toMatchObject({ mode: "s3", bucket: "team-files", region: "auto", credentials: { accessKeyId: "key", secretAccessKey: "secret" } });
    expect(r2.maxUploadBytes).toBe(1024 ** 3);
    expect(r2.allowedTypes).toEqual(["image/*", "application/pdf"]);
    // AWS itself: the bucket alone, credentials from the SDK's chain.
    expect(loadConfig({ ...production, S3_BUCKET: "team-files" }).storage).toMatchObject({ mode: "s3", endpoint: undefined, credentials: undefined });
  });

  it("says what is wrong with storage settings", () => {
    const problems = problemsOf({
      S3_ENDPOINT: "http://minio:9000",
      S3_ACCESS_KEY_ID: "key",
      STORAGE_MAX_UPLOAD: "6gb",
      STORAGE_ALLOWED_TYPES: "images, text/plain",
    });
    expect(problems).toEqual(
      expect.arrayContaining([
        "S3_BUCKET: required when S3_ENDPOINT is set",
        expect.stringMatching(/^S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY: set both or neither/),
        expect.stringMatching(/^STORAGE_MAX_UPLOAD: must be between 1 byte and 5gb/),
        expect.stringMatching(/^STORAGE_ALLOWED_TYPES: must be a comma-separated list of media types/),
      ]),
    );
    expect(problemsOf({ S3_BUCKET: "Not_A_Bucket" })).toEqual([expect.stringMatching(/^S3_BUCKET: must be a bucket name/)]);
  });

  it("watches the schema in development only", () => {
    expect(loadConfig({ DATA_DIR: tmp(), DEV_WATCH: "true" }).devWatch).toBe(true);
    expect(loadConfig({ DATA_DIR: tmp() }).devWatch).toBe(false);
    const production = { NODE_ENV: "production", DATABASE_URL: "postgres://o:p@db/app", AUTH_DATABASE_URL: "postgres://a:p@db/app", JWT_SECRET: "k8Jq2vN5wX1zR7tY3uB6mC9pL4sD0fG2hA5jE8rT1yU6iO3", SMTP_URL: "disabled", PUBLIC_URL: "https://api.example.com" };
    expect(() => loadConfig({ ...production, DEV_WATCH: "true" })).toThrow(/DEV_WATCH: development only/);
  });

  it("points operators of the old lockout setting to what replaced it", () => {
    expect(problemsOf({ LOGIN_LOCKOUT: "5/15m" })).toEqual([expect.stringMatching(/^LOGIN_LOCKOUT: no longer used.*LOGIN_BACKOFF_AFTER/)]);
  });

  it("makes npm start exit 1 with the list of problems", () => {
    const result = spawnSync(process.execPath, ["src/index.ts"], {
      env: { PATH: process.env.PATH, PORT: "-1", WORKER: "maybe", DATA_DIR: tmp() },
      encoding: "utf8",
      timeout: 20_000,
    });
    expect(result.status).toBe(1);
    expect(result.stderr).toContain("Invalid configuration:");
    expect(result.stderr).toMatch(/- PORT:/);
    expect(result.stderr).toMatch(/- WORKER:/);
    expect(result.stderr).toContain("See .env.example");
    expect(result.stderr).not.toMatch(/\n\s+at /);
  });
});
