import { Router } from "express";
import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildTestApp, captureLogger, PRODUCTION_ENV, type TestApp } from "./helpers/app.ts";
import { graphql } from "./helpers/auth.ts";
import { createTestDatabase, type TestDatabase } from "./helpers/database.ts";

let db: TestDatabase;
let api: TestApp;
const log = captureLogger();

beforeAll(async () => {
  db = await createTestDatabase();
  const echo = Router();
  echo.post("/echo", (req, res) => {
    res.json({ received: req.body });
  });
  echo.get("/boom", () => {
    throw new Error('relation "app_private.secret_table" does not exist at /srv/app/src/x.ts:12');
  });
  api = await buildTestApp(db, {
    logger: log.logger,
    env: { BODY_LIMIT: "1kb", CORS_ORIGINS: "https://app.example.com" },
    routes: [["/test", echo]],
  });
});

afterAll(async () => {
  await api?.close();
  await db?.drop();
});

describe("error responses", () => {
  it("answers malformed JSON with 400 invalid_json", async () => {
    const res = await request(api.app).post("/test/echo").set("content-type", "application/json").send('{"name": ');
    expect(res.status).toBe(400);
    expect(res.body).toEqual({ error: { code: "invalid_json", message: expect.stringMatching(/not valid JSON/) } });
  });

  it("answers a body over BODY_LIMIT with 413 payload_too_large", async () => {
    const res = await request(api.app).post("/test/echo").send({ text: "x".repeat(2048) });
    expect(res.status).toBe(413);
    expect(res.body.error.code).toBe("payload_too_large");
  });

  it("accepts a body within the limit", async () => {
    const res = await request(api.app).post("/test/echo").send({ text: "hello" });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ received: { text: "hello" } });
  });

  it("answers an unknown route with 404 not_found", async () => {
    const res = await request(api.app).get("/no/such/thing");
    expect(res.status).toBe(404);
    expect(res.body).toEqual({ error: { code: "not_found", message: "No route for GET /no/such/thing." } });
  });

  it("answers an unexpected failure with 500 internal_error and leaks nothing", async () => {
    const res = await request(api.app).get("/test/boom");
    expect(res.status).toBe(500);
    expect(res.body).toEqual({ error: { code: "internal_error", message: expect.any(String) } });
    expect(res.text).not.toMatch(/secret_table|\.ts:|relation/);
    const logged = log.lines().find((line) => line.msg === "unhandled error");
    expect(logged?.err).toMatchObject({ message: expect.stringContaining("secret_table") });
  });
});

describe("request ids and logs", () => {
  it("generates a request id and echoes it back", async () => {
    const res = await request(api.app).get("/healthz");
    expect(res.headers["x-request-id"]).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("honours a sane incoming X-Request-Id and logs it", async () => {
    const res = await request(api.app).get("/no-route").set("X-Request-Id", "edge-proxy.42");
    expect(res.headers["x-request-id"]).toBe("edge-proxy.42");
    expect(log.lines().some((line) => (line.req as { id?: string })?.id === "edge-proxy.42")).toBe(true);
  });

  it("replaces an unsafe incoming X-Request-Id", async () => {
    const res = await request(api.app).get("/healthz").set("X-Request-Id", "<script>");
    expect(res.headers["x-request-id"]).not.toBe("<script>");
  });

  it("warns once when X-Forwarded-For arrives but no proxy is trusted", async () => {
    const warnings = () => log.lines().filter((line) => String(line.msg).includes("TRUST_PROXY is unset"));
    await request(api.app).get("/healthz").set("X-Forwarded-For", "203.0.113.1");
    await request(api.app).get("/healthz").set("X-Forwarded-For", "203.0.113.2");
    expect(warnings()).toHaveLength(1);
    expect(warnings()[0]!.level).toBe(40);
  });

  it("never logs credentials", async () => {
    await request(api.app).post("/test/echo").set("Authorization", "Bearer super-secret-token").send({ password: "hunter22" });
    const text = JSON.stringify(log.lines());
    expect(text).not.toContain("super-secret-token");
    expect(text).not.toContain("hunter22");
  });
});

describe("security headers and CORS", () => {
  it("sets helmet's headers", async () => {
    const res = await request(api.app).get("/healthz");
    expect(res.headers["x-content-type-options"]).toBe("nosniff");
    expect(res.headers["content-security-policy"]).toContain("default-src 'self'");
    expect(res.headers["x-powered-by"]).toBeUndefined();
  });

  it("allows the configured origin and no other", async () => {
    const allowed = await request(api.app).get("/healthz").set("Origin", "https://app.example.com");
    expect(allowed.headers["access-control-allow-origin"]).toBe("https://app.example.com");
    const other = await request(api.app).get("/healthz").set("Origin", "https://evil.example.com");
    expect(other.headers["access-control-allow-origin"]).toBeUndefined();
  });
});

describe("health, readiness and metrics", () => {
  it("reports liveness", async () => {
    const res = await request(api.app).get("/healthz");
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ status: "ok" });
  });

  it("reports ready when the database holds the newest migration", async () => {
    const res = await request(api.app).get("/readyz");
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ status: "ready", migration: expect.stringMatching(/^\d{6}\.sql$/) });
  });

  it("reports not ready while a migration is pending", async () => {
    const behind = await buildTestApp(db, { latestMigration: "sha1:0000000000000000000000000000000000000000" });
    try {
      const res = await request(behind.app).get("/readyz");
      expect(res.status).toBe(503);
      expect(res.body.error.code).toBe("migrations_pending");
    } finally {
      await behind.close();
    }
  });

  it("reports not ready when the database is unreachable", async () => {
    const broken = await buildTestApp(db);
    await broken.pools.owner.end();
    try {
      const res = await request(broken.app).get("/readyz");
      expect(res.status).toBe(503);
      expect(res.body.error.code).toBe("database_unavailable");
    } finally {
      await broken.release();
      await broken.pools.authenticator.end();
    }
  });

  it("exposes process metrics and request durations by route template", async () => {
    await request(api.app).get("/healthz");
    await request(api.app).get("/does-not-exist/123");
    const res = await request(api.app).get("/metrics");
    expect(res.status).toBe(200);
    expect(res.headers["content-type"]).toContain("text/plain");
    expect(res.text).toContain("process_cpu_user_seconds_total");
    expect(res.text).toMatch(/http_request_duration_seconds_count\{method="GET",route="\/healthz",status_code="200"\} \d+/);
    expect(res.text).toMatch(/route="unmatched",status_code="404"/);
    expect(res.text).not.toContain("/does-not-exist/123");
  });

  it("labels routes of mounted routers with their full path, and counts GraphQL responses and pool connections", async () => {
    await request(api.app).get("/auth/me");
    await graphql(api, "{ __typename }");
    await graphql(api, "{ nope }");
    const res = await request(api.app).get("/metrics");
    expect(res.text).toMatch(/http_request_duration_seconds_count\{method="GET",route="\/auth\/me",status_code="401"\} \d+/);
    expect(res.text).not.toMatch(/route="\/me"/);
    expect(res.text).toMatch(/graphql_responses_total\{status_code="200",error_code="none"\} \d+/);
    expect(res.text).toMatch(/graphql_responses_total\{status_code="\d+",error_code="graphql_validation_failed"\} \d+/);
    expect(res.text).toMatch(/db_pool_connections\{pool="authenticator",state="total"\} \d+/);
  });

  it("keeps /metrics off the public port in production unless a token is set, and checks the token", async () => {
    const open = await buildTestApp(db, { env: PRODUCTION_ENV });
    const guarded = await buildTestApp(db, { env: { ...PRODUCTION_ENV, METRICS_TOKEN: "metrics-token-0123456789" } });
    try {
      expect((await request(open.app).get("/metrics")).status).toBe(404);
      expect((await request(guarded.app).get("/metrics")).status).toBe(401);
      expect((await request(guarded.app).get("/metrics").set("Authorization", "Bearer wrong-token-0123456789xx")).status).toBe(401);
      const allowed = await request(guarded.app).get("/metrics").set("Authorization", "Bearer metrics-token-0123456789");
      expect(allowed.status).toBe(200);
      expect(allowed.text).toContain("process_cpu_user_seconds_total");
    } finally {
      await open.close();
      await guarded.close();
    }
  });
});
