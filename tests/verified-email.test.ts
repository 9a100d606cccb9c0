import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildTestApp, type TestApp } from "./helpers/app.ts";
import { RELAXED_LIMITS, recipient, signUp, tokenFrom, uniqueEmail, type SignedUp } from "./helpers/auth.ts";
import { createTestDatabase, type TestDatabase } from "./helpers/database.ts";
import { runJobs } from "./helpers/jobs.ts";
import { startSmtpSink, type SmtpSink } from "./helpers/smtp.ts";
import { gqlError, gqlOk } from "./helpers/tenants.ts";

let db: TestDatabase;
let api: TestApp;
let smtp: SmtpSink;

beforeAll(async () => {
  [db, smtp] = await Promise.all([createTestDatabase(), startSmtpSink()]);
  process.env.SMTP_URL = smtp.url;
  api = await buildTestApp(db, { env: { ...RELAXED_LIMITS, REQUIRE_VERIFIED_EMAIL: "true" } });
});

afterAll(async () => {
  await api?.close();
  await smtp?.close();
  await db?.drop();
});

const CREATE_ORG = `mutation ($slug: String!) { createOrganization(input: { slug: $slug, name: "Verified only" }) { organization { rowId } } }`;
const INVITE = `mutation ($org: UUID!, $email: String!) { inviteToOrganization(input: { organizationId: $org, email: $email }) { invitation { rowId } } }`;
const ACCEPT = `mutation ($token: String!) { acceptInvitation(input: { token: $token }) { membership { role } } }`;

/** The newest email with that subject to that address, after running the queued jobs. */
async function latest(to: string, subject: string) {
  await runJobs(db);
  await smtp.waitFor((m) => recipient(m) === to && m.subject === subject);
  return smtp.messages.filter((m) => recipient(m) === to && m.subject === subject).at(-1)!;
}

async function verify(account: SignedUp) {
  const token = tokenFrom(await latest(account.email, "Confirm your email address"));
  expect((await request(api.app).post("/auth/verify-email").send({ token })).status).toBe(200);
}

const resend = (token: string) => request(api.app).post("/auth/resend-verification").set("Authorization", `Bearer ${token}`).send({});

describe("with REQUIRE_VERIFIED_EMAIL", () => {
  it("an unverified user signs in but cannot create an organization until they confirm their address", async () => {
    const user = await signUp(api);
    expect((await request(api.app).get("/auth/me").set("Authorization", `Bearer ${user.accessToken}`)).status).toBe(200);
    const refused = await gqlError(api, user.accessToken, CREATE_ORG, { slug: `v-${user.id.slice(0, 10)}` });
    expect(refused.code).toBe("email_not_verified");
    expect(refused.message).toMatch(/Confirm your email address first/);
    await verify(user);
    await gqlOk(api, user.accessToken, CREATE_ORG, { slug: `v-${user.id.slice(0, 10)}` });
  });

  it("an unverified invitee cannot accept until verified; then the same link works", async () => {
    const owner = await signUp(api);
    await verify(owner);
    const org = (await gqlOk(api, owner.accessToken, CREATE_ORG, { slug: `inv-${owner.id.slice(0, 10)}` })).createOrganization.organization.rowId;
    const invitee = await signUp(api, { email: uniqueEmail("invitee") });
    await gqlOk(api, owner.accessToken, INVITE, { org, email: invitee.email });
    const invitation = tokenFrom(await latest(invitee.email, "Test User invited you to Verified only"));

    expect((await gqlError(api, invitee.accessToken, ACCEPT, { token: invitation })).code).toBe("email_not_verified");
    await verify(invitee);
    expect((await gqlOk(api, invitee.accessToken, ACCEPT, { token: invitation })).acceptInvitation.membership.role).toBe("member");
  });

  it("resend-verification emails a fresh link that replaces the old one, and is rate limited", async () => {
    const user = await signUp(api);
    const first = tokenFrom(await latest(user.email, "Confirm your email address"));
    const res = await resend(user.accessToken);
    expect(res.status).toBe(202);
    expect(res.body.message).toMatch(/new confirmation link/);
    const second = tokenFrom(await latest(user.email, "Confirm your email address"));
    expect(second).not.toBe(first);
    expect((await request(api.app).post("/auth/verify-email").send({ token: first })).body.error.code).toBe("invalid_token");
    expect((await request(api.app).post("/auth/verify-email").send({ token: second })).status).toBe(200);

    const again = await resend(user.accessToken);
    expect(again.status).toBe(409);
    expect(again.body.error.code).toBe("already_verified");

    const strict = await buildTestApp(db, { env: { ...RELAXED_LIMITS, RATE_LIMIT_RESEND_VERIFICATION: "1/1h" } });
    try {
      const other = await signUp(strict);
      const send = () => request(strict.app).post("/auth/resend-verification").set("Authorization", `Bearer ${other.accessToken}`).send({});
      expect((await send()).status).toBe(202);
      const limited = await send();
      expect(limited.status).toBe(429);
      expect(limited.headers["retry-after"]).toBeDefined();
    } finally {
      await strict.close();
    }
  });

  it("resend-verification needs a signed-in user and takes no fields", async () => {
    expect((await request(api.app).post("/auth/resend-verification").send({})).body.error.code).toBe("unauthenticated");
    const user = await signUp(api);
    const res = await request(api.app).post("/auth/resend-verification").set("Authorization", `Bearer ${user.accessToken}`).send({ email: "x@example.com" });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe("validation_failed");
  });
});

describe("without it (development default)", () => {
  it("unverified users may create organizations", async () => {
    const relaxed = await buildTestApp(db, { env: { ...RELAXED_LIMITS, REQUIRE_VERIFIED_EMAIL: "false" } });
    try {
      const user = await signUp(relaxed);
      await gqlOk(relaxed, user.accessToken, CREATE_ORG, { slug: `free-${user.id.slice(0, 10)}` });
    } finally {
      await relaxed.close();
    }
  });
});
