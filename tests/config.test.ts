import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
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
    expect(problems).toHaveLength(5);
    expect(problems.join("\n")).toMatch(/PORT/);
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
    ]);
    expect(existsSync(path.join(dataDir, "secrets.json"))).toBe(false);
  });

  it("accepts a complete production environment", () => {
    const config = loadConfig({
      NODE_ENV: "production",
      DATABASE_URL: "postgres://owner:pw@db:5432/app",
      AUTH_DATABASE_URL: "postgres://authenticator:pw@db:5432/app",
      JWT_SECRET: "x".repeat(48),
      PUBLIC_URL: "https://api.example.com/",
    });
    expect(config.host).toBe("0.0.0.0");
    expect(config.publicUrl).toBe("https://api.example.com");
    expect(config.jwt.issuer).toBe("https://api.example.com");
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
      JWT_SECRET: "x".repeat(48),
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
