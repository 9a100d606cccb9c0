import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildTestApp, type TestApp } from "./helpers/app.ts";
import { RELAXED_LIMITS, recipient, signUp, tokenFrom, uniqueEmail, type SignedUp } from "./helpers/auth.ts";
import { createTestDatabase, type TestDatabase } from "./helpers/database.ts";
import { runJobs } from "./helpers/jobs.ts";
import { startSmtpSink, type SmtpSink } from "./helpers/smtp.ts";

// Changing the email address, end to end through HTTP and a real SMTP server: the new address
// confirms the change, the old one is told, and a taken address gives nothing away.

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

/** Everything emailed to `to` since the test began, after the queued jobs ran. */
async function mailTo(to: string) {
  await runJobs(db);
  return smtp.messages.filter((m) => recipient(m) === to);
}

const changeEmail = (account: SignedUp, newEmail: string, currentPassword = account.password) =>
  request(api.app).post("/auth/change-email").set("Authorization", `Bearer ${account.accessToken}`).send({ currentPassword, newEmail });
const confirm = (token: string) => request(api.app).post("/auth/confirm-email-change").send({ token });
const login = (email: string, password: string) => request(api.app).post("/auth/login").send({ email, password });

describe("changing the email address", () => {
  it("changes it only when the link sent to the new address is opened; the old address is told at once", async () => {
    const account = await signUp(api, { name: "Grace" });
    const newEmail = uniqueEmail("grace-new");
    const asked = await changeEmail(account, newEmail);
    expect(asked.status).toBe(202);
    expect(asked.body.message).toContain(newEmail);

    const notice = (await mailTo(account.email)).find((m) => m.subject === "A change of your email address was requested");
    expect(notice?.text).toContain(newEmail);
    const link = (await mailTo(newEmail)).find((m) => m.subject === "Confirm your new email address");
    expect(link).toBeDefined();
    // Not yet: the old address still signs in, the new one does not.
    expect((await login(account.email, account.password)).status).toBe(200);
    expect((await login(newEmail, account.password)).status).toBe(401);

    const confirmed = await confirm(tokenFrom(link!));
    expect(confirmed.status).toBe(200);
    expect(confirmed.body.user).toMatchObject({ email: newEmail });
    expect(confirmed.body.user.emailVerifiedAt).not.toBeNull();
    expect((await login(newEmail, account.password)).status).toBe(200);
    expect((await login(account.email, account.password)).status).toBe(401);
    // The link works once.
    expect((await confirm(tokenFrom(link!))).body.error.code).toBe("invalid_token");

    const { rows } = await db.root.query("select kind, details from app_public.security_events where user_id = $1 and kind = 'email_changed'", [account.id]);
    expect(rows).toEqual([{ kind: "email_changed", details: { from: account.email, to: newEmail } }]);
  });

  it("an address another account uses gets the same answer; its owner is told someone tried, and nothing changes", async () => {
    const [account, other] = [await signUp(api), await signUp(api, { name: "Owner Of It" })];
    const free = await changeEmail(account, uniqueEmail("free"));
    const taken = await changeEmail(account, other.email);
    expect(taken.status).toBe(free.status);
    expect(taken.body.message.replace(other.email, "X")).toBe(free.body.message.replace(/\S+@example\.com/, "X"));

    const toOther = await mailTo(other.email);
    expect(toOther.map((m) => m.subject)).toContain("Someone tried to use your email address");
    expect(toOther.map((m) => m.subject)).not.toContain("Confirm your new email address");
    // The account's own address hears about both requests alike.
    expect((await mailTo(account.email)).filter((m) => m.subject === "A change of your email address was requested")).toHaveLength(2);
    const { rows } = await db.root.query("select email from app_public.users where id = $1", [account.id]);
    expect(rows[0].email).toBe(account.email);
  });

  it("asks for the current password, refuses the same address and malformed ones, and needs a signed-in user", async () => {
    const account = await signUp(api);
    const wrong = await changeEmail(account, uniqueEmail(), "not my password");
    expect(wrong.status).toBe(403);
    expect(wrong.body.error.code).toBe("invalid_credentials");
    const same = await changeEmail(account, account.email.toUpperCase());
    expect(same.status).toBe(400);
    expect(same.body.error.code).toBe("validation_failed");
    const malformed = await changeEmail(account, "not-an-address");
    expect(malformed.status).toBe(400);
    expect(malformed.body.error.details).toEqual([{ field: "newEmail", message: "must be an email address" }]);
    const anonymous = await request(api.app).post("/auth/change-email").send({ currentPassword: account.password, newEmail: uniqueEmail() });
    expect(anonymous.status).toBe(401);
    expect((await mailTo(account.email)).filter((m) => m.subject === "A change of your email address was requested")).toEqual([]);
  });

  it("securing the account cancels a pending change: a new password, or signing out everywhere", async () => {
    for (const secure of [
      (a: SignedUp) =>
        request(api.app).post("/auth/change-password").set("Authorization", `Bearer ${a.accessToken}`).send({ currentPassword: a.password, newPassword: "the owner's new password" }),
      (a: SignedUp) => request(api.app).post("/auth/logout-all").set("Authorization", `Bearer ${a.accessToken}`),
    ]) {
      const victim = await signUp(api);
      const intruders = uniqueEmail("intruder");
      expect((await changeEmail(victim, intruders)).status).toBe(202);
      const link = tokenFrom((await mailTo(intruders)).at(-1)!);
      expect((await secure(victim)).status).toBeLessThan(300);
      expect((await confirm(link)).body.error.code).toBe("invalid_token");
      const { rows } = await db.root.query("select email from app_public.users where id = $1", [victim.id]);
      expect(rows[0].email).toBe(victim.email);
    }
  });

  it("a reset link emailed to the old address dies when the address changes", async () => {
    const account = await signUp(api);
    await request(api.app).post("/auth/forgot-password").send({ email: account.email });
    const resetLink = tokenFrom((await mailTo(account.email)).find((m) => m.subject === "Reset your password")!);
    const newEmail = uniqueEmail("moved");
    await changeEmail(account, newEmail);
    expect((await confirm(tokenFrom((await mailTo(newEmail)).at(-1)!))).status).toBe(200);
    const reset = await request(api.app).post("/auth/reset-password").send({ token: resetLink, password: "an intruder's password" });
    expect(reset.status).toBe(400);
    expect(reset.body.error.code).toBe("invalid_token");
  });

  it("a newer request supersedes the older link whether or not its address is taken, and each request is recorded", async () => {
    const [account, other] = [await signUp(api), await signUp(api)];
    const mine = uniqueEmail("mine");
    await changeEmail(account, mine);
    const older = tokenFrom((await mailTo(mine)).at(-1)!);
    await changeEmail(account, other.email);
    expect((await confirm(older)).body.error.code).toBe("invalid_token");
    const { rows } = await db.root.query("select details from app_public.security_events where user_id = $1 and kind = 'email_change_requested' order by created_at", [account.id]);
    expect(rows.map((r) => r.details)).toEqual([{ to: mine }, { to: other.email }]);
  });

  it("three requests an hour per user at most: nobody's mailbox is flooded through it", async () => {
    const account = await signUp(api);
    for (let i = 0; i < 3; i++) expect((await changeEmail(account, uniqueEmail("flood"))).status).toBe(202);
    const fourth = await changeEmail(account, uniqueEmail("flood"));
    expect(fourth.status).toBe(429);
    expect(fourth.body.error.code).toBe("rate_limited");
  });

  it("nor through several accounts asking for the same address", async () => {
    const target = uniqueEmail("target");
    const statuses = [];
    for (let i = 0; i < 4; i++) statuses.push((await changeEmail(await signUp(api), target)).status);
    expect(statuses).toEqual([202, 202, 202, 429]);
  });

  it("a link dies when a newer one is asked for, or when the address changed by another link first", async () => {
    const account = await signUp(api);
    const [first, second] = [uniqueEmail("first"), uniqueEmail("second")];
    await changeEmail(account, first);
    const firstLink = tokenFrom((await mailTo(first)).at(-1)!);
    await changeEmail(account, second);
    const secondLink = tokenFrom((await mailTo(second)).at(-1)!);
    expect((await confirm(firstLink)).body.error.code).toBe("invalid_token");
    expect((await confirm(secondLink)).status).toBe(200);

    // An address taken between the request and the confirmation: email_taken, nothing changes.
    const third = uniqueEmail("third");
    const account2 = await signUp(api);
    await changeEmail(account2, third);
    const link = tokenFrom((await mailTo(third)).at(-1)!);
    await signUp(api, { email: third });
    const refused = await confirm(link);
    expect(refused.status).toBe(409);
    expect(refused.body.error.code).toBe("email_taken");
  });
});
