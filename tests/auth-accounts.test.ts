import { createHash } from "node:crypto";
import argon2 from "argon2";
import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildTestApp, type TestApp } from "./helpers/app.ts";
import { RELAXED_LIMITS, recipient, signUp, uniqueEmail } from "./helpers/auth.ts";
import { runJobs } from "./helpers/jobs.ts";
import { createTestDatabase, type TestDatabase } from "./helpers/database.ts";
import { startSmtpSink, type SmtpSink } from "./helpers/smtp.ts";

let db: TestDatabase;
let api: TestApp;
let smtp: SmtpSink;

beforeAll(async () => {
  [db, smtp] = await Promise.all([createTestDatabase(), startSmtpSink()]);
  process.env.SMTP_URL = smtp.url;
  // The worker builds email links from its own environment, as it does in production.
  process.env.PUBLIC_URL = "https://app.example.com";
  api = await buildTestApp(db, { env: RELAXED_LIMITS });
});

afterAll(async () => {
  delete process.env.PUBLIC_URL;
  await api?.close();
  await smtp?.close();
  await db?.drop();
});

describe("POST /auth/register", () => {
  it("creates the account, signs it in and queues a verification email", async () => {
    const email = uniqueEmail("ada");
    const res = await request(api.app).post("/auth/register").send({ email, password: "correct horse battery", name: " Ada Lovelace " });
    expect(res.status).toBe(201);
    expect(res.body).toEqual({
      user: {
        id: expect.stringMatching(/^[0-9a-f-]{36}$/),
        email,
        name: "Ada Lovelace",
        avatarUrl: null,
        isAdmin: false,
        emailVerifiedAt: null,
        createdAt: expect.any(String),
        updatedAt: expect.any(String),
      },
      accessToken: expect.stringMatching(/^eyJ/),
      refreshToken: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/),
      expiresIn: 900,
      deviceToken: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/),
    });
    await runJobs(db);
    const mail = await smtp.waitFor((m) => recipient(m) === email);
    expect(mail.subject).toBe("Confirm your email address");
    expect(mail.text).toMatch(/https:\/\/app\.example\.com\/verify-email\?token=[A-Za-z0-9_-]{43}/);
  });

  it("stores only an argon2id hash of the password and only a hash of the refresh token", async () => {
    const account = await signUp(api);
    const { rows } = await db.root.query(
      "select password_hash from app_private.user_secrets where user_id = $1",
      [account.id],
    );
    expect(rows[0].password_hash).toMatch(/^\$argon2id\$v=19\$m=19456,p=1,t=2\$/);
    const tokens = await db.root.query<{ token_hash: Buffer }>(
      "select t.token_hash from app_private.refresh_tokens t join app_private.sessions s on s.id = t.session_id where s.user_id = $1",
      [account.id],
    );
    expect(tokens.rows).toHaveLength(1);
    expect(tokens.rows[0]!.token_hash.equals(createHash("sha256").update(account.refreshToken).digest())).toBe(true);
  });

  it("refuses a second account for the same address, whatever its case", async () => {
    const account = await signUp(api);
    const res = await request(api.app)
      .post("/auth/register")
      .send({ email: account.email.toUpperCase(), password: "another good password", name: "Copy" });
    expect(res.status).toBe(409);
    expect(res.body.error).toEqual({ code: "email_taken", message: expect.stringMatching(/already exists/) });
  });

  it("explains every invalid field at once", async () => {
    const res = await request(api.app)
      .post("/auth/register")
      .send({ email: "not-an-email", password: "short", name: "", isAdmin: true });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe("validation_failed");
    expect(res.body.error.details).toEqual(
      expect.arrayContaining([
        { field: "email", message: "must be an email address" },
        { field: "password", message: "must be at least 10 characters" },
        { field: "name", message: "must not be empty" },
        { field: "isAdmin", message: "is not a known field" },
      ]),
    );
  });

  it("refuses passwords over 256 characters and names over 100", async () => {
    const res = await request(api.app)
      .post("/auth/register")
      .send({ email: uniqueEmail(), password: "p".repeat(257), name: "n".repeat(101) });
    expect(res.status).toBe(400);
    expect(res.body.error.details).toEqual(
      expect.arrayContaining([
        { field: "password", message: "must be at most 256 characters" },
        { field: "name", message: "must be at most 100 characters" },
      ]),
    );
  });

  it("answers a body that is not JSON with invalid_json", async () => {
    const res = await request(api.app).post("/auth/register").set("content-type", "application/json").send("{email:");
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe("invalid_json");
  });
});

describe("POST /auth/login", () => {
  it("signs in with the right password", async () => {
    const account = await signUp(api);
    const res = await request(api.app).post("/auth/login").send({ email: account.email, password: account.password });
    expect(res.status).toBe(200);
    expect(res.body.user.id).toBe(account.id);
    expect(res.body.accessToken).toBeTruthy();
    expect(res.body.refreshToken).not.toBe(account.refreshToken);
    expect(res.body.expiresIn).toBe(900);
  });

  it("finds the account whatever the case and spacing of the address", async () => {
    const account = await signUp(api);
    const res = await request(api.app).post("/auth/login").send({ email: `  ${account.email.toUpperCase()} `, password: account.password });
    expect(res.status).toBe(200);
    expect(res.body.user.id).toBe(account.id);
  });

  it("answers a wrong password and an unknown email alike", async () => {
    const account = await signUp(api);
    const wrong = await request(api.app).post("/auth/login").send({ email: account.email, password: "not the password" });
    const unknown = await request(api.app).post("/auth/login").send({ email: uniqueEmail("nobody"), password: "whatever it is" });
    expect(wrong.status).toBe(401);
    expect(unknown.status).toBe(401);
    expect(wrong.body).toEqual(unknown.body);
    expect(wrong.body.error).toEqual({ code: "invalid_credentials", message: "The email or password is incorrect." });
  });

  it("upgrades a hash made with older parameters on the next sign-in", async () => {
    const account = await signUp(api);
    const weaker = await argon2.hash(account.password, { type: argon2.argon2id, memoryCost: 4096, timeCost: 1, parallelism: 1 });
    await db.root.query("update app_private.user_secrets set password_hash = $2 where user_id = $1", [account.id, weaker]);
    const res = await request(api.app).post("/auth/login").send({ email: account.email, password: account.password });
    expect(res.status).toBe(200);
    const { rows } = await db.root.query("select password_hash from app_private.user_secrets where user_id = $1", [account.id]);
    expect(rows[0].password_hash).toMatch(/^\$argon2id\$v=19\$m=19456,p=1,t=2\$/);
  });
});

describe("rate limits", () => {
  it("answers 429 with Retry-After once an address has used up its login attempts, across app instances", async () => {
    const strict = { ...RELAXED_LIMITS, RATE_LIMIT_LOGIN_EMAIL: "2/10m" };
    const [first, second] = await Promise.all([buildTestApp(db, { env: strict }), buildTestApp(db, { env: strict })]);
    try {
      const email = uniqueEmail("limited");
      const attempt = (app: TestApp) => request(app.app).post("/auth/login").send({ email, password: "guessing games" });
      expect((await attempt(first)).status).toBe(401);
      expect((await attempt(second)).status).toBe(401);
      const limited = await attempt(first);
      expect(limited.status).toBe(429);
      expect(limited.body.error.code).toBe("rate_limited");
      expect(Number(limited.headers["retry-after"])).toBeGreaterThan(590);
      expect(Number(limited.headers["retry-after"])).toBeLessThanOrEqual(600);
    } finally {
      await Promise.all([first.close(), second.close()]);
    }
  });

  it("limits registrations per IP address", async () => {
    const strict = await buildTestApp(db, { env: { ...RELAXED_LIMITS, RATE_LIMIT_REGISTER_IP: "1/1h" } });
    try {
      // The counter is per IP and shared with other tests' registrations, so start from a clean slate.
      await db.root.query("delete from app_private.rate_limits where bucket = 'register_ip'");
      const body = () => ({ email: uniqueEmail(), password: "correct horse battery", name: "Limited" });
      expect((await request(strict.app).post("/auth/register").send(body())).status).toBe(201);
      const limited = await request(strict.app).post("/auth/register").send(body());
      expect(limited.status).toBe(429);
      expect(limited.headers["retry-after"]).toBeDefined();
    } finally {
      await strict.close();
    }
  });

  it("cleans up old counters", async () => {
    await db.root.query(
      "insert into app_private.rate_limits (bucket, key, window_start, hits) values ('login_ip', 'ancient', now() - interval '2 days', 3)",
    );
    const { rows } = await db.root.query("select app_private.cleanup_batch('rate_limits', 1000, now()) as removed");
    expect(rows[0].removed).toBeGreaterThanOrEqual(1);
    const left = await db.root.query("select count(*)::int as n from app_private.rate_limits where key = 'ancient'");
    expect(left.rows[0].n).toBe(0);
  });
});
