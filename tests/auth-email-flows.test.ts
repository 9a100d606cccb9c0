import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildTestApp, type TestApp } from "./helpers/app.ts";
import { RELAXED_LIMITS, recipient, signUp, tokenFrom, uniqueEmail } from "./helpers/auth.ts";
import { runJobs } from "./helpers/jobs.ts";
import { createTestDatabase, type TestDatabase } from "./helpers/database.ts";
import { startSmtpSink, type SmtpSink } from "./helpers/smtp.ts";

let db: TestDatabase;
let api: TestApp;
let smtp: SmtpSink;

beforeAll(async () => {
  [db, smtp] = await Promise.all([createTestDatabase(), startSmtpSink()]);
  process.env.SMTP_URL = smtp.url;
  api = await buildTestApp(db, { env: RELAXED_LIMITS });
});

afterAll(async () => {
  await api?.close();
  await smtp?.close();
  await db?.drop();
});

/** Runs the queued jobs and returns the newest email to `to` with that subject. */
async function inbox(to: string, subject: string) {
  await runJobs(db);
  const found = smtp.messages.filter((m) => recipient(m) === to && m.subject === subject).at(-1);
  if (!found) throw new Error(`no "${subject}" email for ${to}`);
  return found;
}

const login = (email: string, password: string) => request(api.app).post("/auth/login").send({ email, password });
const me = (token: string) => request(api.app).get("/auth/me").set("Authorization", `Bearer ${token}`);

describe("email verification", () => {
  it("verifies the address with the token from the emailed link, once", async () => {
    const account = await signUp(api);
    const token = tokenFrom(await inbox(account.email, "Confirm your email address"));

    const res = await request(api.app).post("/auth/verify-email").send({ token });
    expect(res.status).toBe(200);
    expect(res.body.user.emailVerifiedAt).toEqual(expect.any(String));
    expect((await me(account.accessToken)).body.user.emailVerifiedAt).toBe(res.body.user.emailVerifiedAt);

    const again = await request(api.app).post("/auth/verify-email").send({ token });
    expect(again.status).toBe(400);
    expect(again.body.error).toEqual({ code: "invalid_token", message: expect.stringMatching(/invalid, already used or expired/) });
  });

  it("refuses an expired link", async () => {
    const account = await signUp(api);
    const token = tokenFrom(await inbox(account.email, "Confirm your email address"));
    await db.root.query(
      "update app_private.email_tokens set expires_at = now() - interval '1 second' where user_id = $1",
      [account.id],
    );
    const res = await request(api.app).post("/auth/verify-email").send({ token });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe("invalid_token");
  });

  it("refuses a made-up token", async () => {
    const res = await request(api.app).post("/auth/verify-email").send({ token: "x".repeat(43) });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe("invalid_token");
  });
});

describe("password reset", () => {
  it("resets through the emailed link, signs out every session and sends a notice", async () => {
    const account = await signUp(api);
    const other = await login(account.email, account.password);

    const requested = await request(api.app).post("/auth/forgot-password").send({ email: account.email.toUpperCase() });
    expect(requested.status).toBe(202);
    const token = tokenFrom(await inbox(account.email, "Reset your password"));

    const reset = await request(api.app).post("/auth/reset-password").send({ token, password: "a brand new password" });
    expect(reset.status).toBe(200);
    expect((await me(account.accessToken)).status).toBe(401);
    expect((await me(other.body.accessToken)).status).toBe(401);
    expect((await login(account.email, account.password)).status).toBe(401);
    expect((await login(account.email, "a brand new password")).status).toBe(200);
    expect(await inbox(account.email, "Your password was changed")).toBeDefined();

    const reused = await request(api.app).post("/auth/reset-password").send({ token, password: "yet another password" });
    expect(reused.status).toBe(400);
    expect(reused.body.error.code).toBe("invalid_token");
  });

  it("answers 202 for an unknown address and sends nothing", async () => {
    const email = uniqueEmail("ghost");
    const res = await request(api.app).post("/auth/forgot-password").send({ email });
    expect(res.status).toBe(202);
    expect(res.body).toEqual({ message: "If an account uses this address, a reset link is on its way." });
    await runJobs(db);
    expect(smtp.messages.some((m) => recipient(m) === email)).toBe(false);
  });

  it("lets only the newest reset link work", async () => {
    const account = await signUp(api);
    await request(api.app).post("/auth/forgot-password").send({ email: account.email });
    const older = tokenFrom(await inbox(account.email, "Reset your password"));
    await request(api.app).post("/auth/forgot-password").send({ email: account.email });
    const newer = tokenFrom(await inbox(account.email, "Reset your password"));
    expect(newer).not.toBe(older);
    expect((await request(api.app).post("/auth/reset-password").send({ token: older, password: "password from old link" })).status).toBe(400);
    expect((await request(api.app).post("/auth/reset-password").send({ token: newer, password: "password from new link" })).status).toBe(200);
  });

  it("validates the new password", async () => {
    const res = await request(api.app).post("/auth/reset-password").send({ token: "x".repeat(43), password: "short" });
    expect(res.status).toBe(400);
    expect(res.body.error.details).toEqual([{ field: "password", message: "must be at least 10 characters" }]);
  });

  it("limits reset requests per address", async () => {
    const strict = await buildTestApp(db, { env: { ...RELAXED_LIMITS, RATE_LIMIT_FORGOT_PASSWORD_EMAIL: "1/1h" } });
    try {
      const email = uniqueEmail("flood");
      expect((await request(strict.app).post("/auth/forgot-password").send({ email })).status).toBe(202);
      const limited = await request(strict.app).post("/auth/forgot-password").send({ email });
      expect(limited.status).toBe(429);
      expect(limited.headers["retry-after"]).toBeDefined();
    } finally {
      await strict.close();
    }
  });
});

describe("POST /auth/change-password", () => {
  it("needs the current password", async () => {
    const account = await signUp(api);
    const res = await request(api.app)
      .post("/auth/change-password")
      .set("Authorization", `Bearer ${account.accessToken}`)
      .send({ currentPassword: "not my password", newPassword: "another fine password" });
    expect(res.status).toBe(403);
    expect(res.body.error.code).toBe("invalid_credentials");
  });

  it("changes the password, keeps this session and signs out the others", async () => {
    const account = await signUp(api);
    const other = await login(account.email, account.password);
    const res = await request(api.app)
      .post("/auth/change-password")
      .set("Authorization", `Bearer ${account.accessToken}`)
      .send({ currentPassword: account.password, newPassword: "another fine password" });
    expect(res.status).toBe(200);
    expect((await me(account.accessToken)).status).toBe(200);
    expect((await me(other.body.accessToken)).status).toBe(401);
    expect((await login(account.email, "another fine password")).status).toBe(200);
    expect(await inbox(account.email, "Your password was changed")).toBeDefined();
  });

  it("needs a Bearer token", async () => {
    const res = await request(api.app).post("/auth/change-password").send({ currentPassword: "x", newPassword: "another fine password" });
    expect(res.status).toBe(401);
  });
});
