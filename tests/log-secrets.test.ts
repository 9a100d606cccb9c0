import { mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { simpleParser, type ParsedMail } from "mailparser";
import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildTestApp, captureLogger, type TestApp } from "./helpers/app.ts";
import { RELAXED_LIMITS, recipient, signUp, tokenFrom, uniqueEmail } from "./helpers/auth.ts";
import { createTestDatabase, type TestDatabase } from "./helpers/database.ts";
import { runJobs } from "./helpers/jobs.ts";
import { gqlOk } from "./helpers/tenants.ts";

let db: TestDatabase;
let api: TestApp;
let mailDir: string;
const log = captureLogger("debug");

beforeAll(async () => {
  // Development mail: no SMTP server, every message becomes an .eml file under DATA_DIR/mail.
  delete process.env.SMTP_URL;
  const dataDir = mkdtempSync(path.join(tmpdir(), "oddscenes-logs-"));
  process.env.DATA_DIR = dataDir;
  mailDir = path.join(dataDir, "mail");
  db = await createTestDatabase();
  api = await buildTestApp(db, { env: RELAXED_LIMITS, logger: log.logger });
});

afterAll(async () => {
  delete process.env.DATA_DIR;
  await api?.close();
  await db?.drop();
});

/** Runs the queued jobs through the app's logger, then reads the newest matching .eml file. */
async function mailbox(to: string, subject: string): Promise<ParsedMail> {
  await runJobs(db, log.logger);
  const messages = await Promise.all(readdirSync(mailDir).sort().map((file) => simpleParser(readFileSync(path.join(mailDir, file)))));
  const found = messages.filter((m) => recipient(m) === to && m.subject === subject).at(-1);
  if (!found) throw new Error(`no "${subject}" email for ${to}`);
  return found;
}

describe("secrets never reach the logs", () => {
  it("register → verify → reset → invite → accept leaves no token, password or link in any log line", async () => {
    const secrets: string[] = [];
    const ada = await signUp(api, { name: "Ada" });
    secrets.push(ada.password, ada.accessToken, ada.refreshToken);

    const verifyToken = tokenFrom(await mailbox(ada.email, "Confirm your email address"));
    secrets.push(verifyToken);
    expect((await request(api.app).post("/auth/verify-email").send({ token: verifyToken })).status).toBe(200);

    expect((await request(api.app).post("/auth/forgot-password").send({ email: ada.email })).status).toBe(202);
    const resetToken = tokenFrom(await mailbox(ada.email, "Reset your password"));
    secrets.push(resetToken);
    const newPassword = "a completely new password";
    secrets.push(newPassword);
    expect((await request(api.app).post("/auth/reset-password").send({ token: resetToken, password: newPassword })).status).toBe(200);

    const login = await request(api.app).post("/auth/login").send({ email: ada.email, password: newPassword });
    expect(login.status).toBe(200);
    const refreshed = await request(api.app).post("/auth/refresh").send({ refreshToken: login.body.refreshToken });
    expect(refreshed.status).toBe(200);
    secrets.push(login.body.accessToken, login.body.refreshToken, refreshed.body.accessToken, refreshed.body.refreshToken);

    const org = await gqlOk(api, refreshed.body.accessToken, `mutation { createOrganization(input: { slug: "logs-${ada.id.slice(0, 8)}", name: "Logs" }) { organization { rowId } } }`);
    const bobEmail = uniqueEmail("bob");
    await gqlOk(api, refreshed.body.accessToken, `mutation ($org: UUID!, $email: String!) { inviteToOrganization(input: { organizationId: $org, email: $email }) { invitation { rowId } } }`, {
      org: org.createOrganization.organization.rowId,
      email: bobEmail,
    });
    const inviteToken = tokenFrom(await mailbox(bobEmail, "Ada invited you to Logs"));
    secrets.push(inviteToken);
    const bob = await signUp(api, { email: bobEmail, name: "Bob" });
    secrets.push(bob.password, bob.accessToken, bob.refreshToken);
    await gqlOk(api, bob.accessToken, `mutation ($token: String!) { acceptInvitation(input: { token: $token }) { membership { role } } }`, { token: inviteToken });
    secrets.push(tokenFrom(await mailbox(bobEmail, "Confirm your email address")));

    const text = log.text();
    // The run really went through the worker and the request log.
    expect(text).toContain("Completed task");
    expect(text).toContain("/auth/reset-password");
    expect(text).toMatch(/written to .*\.eml/);
    for (const secret of secrets) expect(text, "a secret reached the logs").not.toContain(secret);
    expect(text).not.toMatch(/token=/);
    // Job payloads carry ids only: nothing queued holds a token either.
    const { rows } = await db.root.query<{ payload: unknown }>("select payload from graphile_worker._private_jobs");
    for (const secret of secrets) expect(JSON.stringify(rows)).not.toContain(secret);
  });

  it("redacts credentials and job payloads even where a caller logs them by mistake", () => {
    log.logger.info({ job: { id: "1", payload: { link: "https://x.test/?token=leaked-1" } } }, "a careless line");
    log.logger.info({ body: { password: "leaked-2", refreshToken: "leaked-3" }, token: "leaked-4" }, "another");
    expect(log.text()).not.toMatch(/leaked-\d/);
  });
});
