import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildTestApp, type TestApp } from "./helpers/app.ts";
import { graphql, RELAXED_LIMITS, signUp, type SignedUp } from "./helpers/auth.ts";
import { asRole, createTestDatabase, type TestDatabase } from "./helpers/database.ts";
import { arrangeTenants, gqlError, gqlOk, type Tenants } from "./helpers/tenants.ts";

// A user's sessions (User.sessions, revokeSession) and their recent security activity
// (app_public.security_events), written by the database as things happen.

let db: TestDatabase;
let api: TestApp;
let t: Tenants;

beforeAll(async () => {
  db = await createTestDatabase();
  api = await buildTestApp(db, { env: RELAXED_LIMITS });
  t = await arrangeTenants(api, db, "security");
});

afterAll(async () => {
  await api?.close();
  await db?.drop();
});

const EVENTS = `{ currentUser { securityEvents(orderBy: CREATED_AT_DESC, first: 20) { nodes { kind details sessionId ip userAgent actorId } } } }`;
const SESSIONS = `{ currentUser { sessions { rowId createdAt lastUsedAt expiresAt userAgent ip isCurrent } } }`;
const REVOKE = `mutation ($id: UUID!) { revokeSession(input: { sessionId: $id }) { revoked } }`;

interface Event {
  kind: string;
  details: { reason?: string; sessions?: number };
  sessionId: string | null;
  ip: string | null;
  userAgent: string | null;
  actorId: string | null;
}

const eventsOf = async (token: string): Promise<Event[]> => (await gqlOk(api, token, EVENTS)).currentUser.securityEvents.nodes;
const sessionIdOf = (token: string) => (JSON.parse(Buffer.from(token.split(".")[1]!, "base64url").toString()) as { sid: string }).sid;
const login = (account: SignedUp, password = account.password, userAgent = "Phone/1.0") =>
  request(api.app).post("/auth/login").set("User-Agent", userAgent).send({ email: account.email, password });

describe("recent security activity", () => {
  it("records sign-ins with where they came from, failed passwords, sign-outs and password changes, newest first", async () => {
    const user = await signUp(api);
    expect((await login(user, "not the password at all")).status).toBe(401);
    const phone = await login(user);
    expect(phone.status).toBe(200);
    // An unknown address leaves no trace anywhere (and takes the same steps).
    expect((await request(api.app).post("/auth/login").send({ email: "nobody-here@example.com", password: "whatever it is" })).status).toBe(401);

    const changed = await request(api.app)
      .post("/auth/change-password")
      .set("Authorization", `Bearer ${user.accessToken}`)
      .send({ currentPassword: user.password, newPassword: "a brand new password" });
    expect(changed.status).toBe(200);

    const events = await eventsOf(user.accessToken);
    expect(events.map((e) => e.kind)).toEqual(["sessions_revoked", "password_changed", "signed_in", "sign_in_failed", "signed_in"]);
    const [revoked, passwordChanged, phoneSignIn, failed] = events as [Event, Event, Event, Event];
    expect(revoked.details).toEqual({ reason: "password_changed", sessions: 1 });
    expect(revoked.sessionId).toBe(sessionIdOf(phone.body.accessToken));
    expect(passwordChanged.sessionId).toBe(sessionIdOf(user.accessToken));
    expect(phoneSignIn).toMatchObject({ userAgent: "Phone/1.0", sessionId: sessionIdOf(phone.body.accessToken), actorId: null });
    expect(phoneSignIn.ip).toMatch(/127\.0\.0\.1|::1|::ffff:127\.0\.0\.1/);
    expect(failed).toMatchObject({ kind: "sign_in_failed", sessionId: null });
  });

  it("sign out everywhere is one event for all the sessions it ended; signing out one is another", async () => {
    const user = await signUp(api);
    await login(user);
    await login(user);
    expect((await request(api.app).post("/auth/logout-all").set("Authorization", `Bearer ${user.accessToken}`)).status).toBe(204);
    const fresh = await login(user);
    expect((await request(api.app).post("/auth/logout").send({ refreshToken: fresh.body.refreshToken })).status).toBe(204);
    const again = await login(user);
    const kinds = (await eventsOf(again.body.accessToken)).map((e) => [e.kind, e.details]);
    expect(kinds.slice(0, 4)).toEqual([
      ["signed_in", {}],
      ["signed_out", { reason: "logout", sessions: 1 }],
      ["signed_in", {}],
      ["sessions_revoked", { reason: "logout_all", sessions: 3 }],
    ]);
  });

  it("is the user's own: coworkers and outsiders see none of it, site administrators all of it, and nobody writes it", async () => {
    const query = `query ($id: UUID!) { securityEvents(condition: { userId: $id }) { totalCount } }`;
    const seen = async (token: string | undefined) => (await gqlOk(api, token, query, { id: t.member.id })).securityEvents.totalCount as number;
    expect(await seen(t.member.accessToken)).toBeGreaterThan(0);
    expect(await seen(t.owner.accessToken)).toBe(0);
    expect(await seen(t.outsider.accessToken)).toBe(0);
    expect(await seen(undefined)).toBe(0);
    expect(await seen(t.siteAdmin.accessToken)).toBeGreaterThan(0);

    const claims = { user_id: t.member.id, session_id: sessionIdOf(t.member.accessToken) };
    for (const sql of [
      "insert into app_public.security_events (user_id, kind) values ($1, 'password_reset')",
      "update app_public.security_events set kind = 'signed_in' where user_id = $1",
      "delete from app_public.security_events where user_id = $1",
    ]) {
      await expect(asRole(db, "user", claims, (c) => c.query(sql, [t.member.id]))).rejects.toMatchObject({ code: "42501" });
    }
    const fields = await gqlOk(api, t.member.accessToken, `{ __schema { mutationType { fields { name } } } }`);
    expect(fields.__schema.mutationType.fields.map((f: { name: string }) => f.name).filter((n: string) => /SecurityEvent/.test(n))).toEqual([]);
  });

  it("is kept 90 days", async () => {
    const user = await signUp(api);
    await db.root.query("update app_public.security_events set created_at = now() - interval '91 days' where user_id = $1", [user.id]);
    await login(user);
    const { rows } = await db.root.query("select app_private.cleanup_batch('security_events', 1000, now()) as removed");
    expect(rows[0].removed).toBeGreaterThanOrEqual(1);
    const left = await db.root.query("select kind from app_public.security_events where user_id = $1", [user.id]);
    expect(left.rows).toEqual([{ kind: "signed_in" }]);
  });
});

describe("sessions", () => {
  it("lists a user's live sessions, the current one marked, to that user alone", async () => {
    const user = await signUp(api);
    const phone = await login(user, user.password, "Phone/2.0");
    const mine = (await gqlOk(api, user.accessToken, SESSIONS)).currentUser.sessions;
    expect(mine).toHaveLength(2);
    const current = mine.find((s: { isCurrent: boolean }) => s.isCurrent);
    expect(current.rowId).toBe(sessionIdOf(user.accessToken));
    expect(mine.find((s: { rowId: string }) => s.rowId === sessionIdOf(phone.body.accessToken))).toMatchObject({ isCurrent: false, userAgent: "Phone/2.0" });
    expect(new Date(current.expiresAt).getTime()).toBeGreaterThan(Date.now());

    // Nobody else sees them, not even a coworker looking at this user, nor a site administrator.
    const theirs = await gqlOk(api, t.owner.accessToken, `query ($id: UUID!) { user(rowId: $id) { sessions { rowId } } }`, { id: t.member.id });
    expect(theirs.user.sessions).toEqual([]);
    const admin = await gqlOk(api, t.siteAdmin.accessToken, `query ($id: UUID!) { user(rowId: $id) { sessions { rowId } } }`, { id: t.member.id });
    expect(admin.user.sessions).toEqual([]);
  });

  it("revokeSession ends another device's session: its access token, its refresh token, and it leaves the list", async () => {
    const user = await signUp(api);
    const phone = await login(user);
    const phoneSession = sessionIdOf(phone.body.accessToken);
    expect((await gqlOk(api, user.accessToken, REVOKE, { id: phoneSession })).revokeSession.revoked).toBe(true);

    const refused = await graphql(api, "{ currentUserId }", { token: phone.body.accessToken });
    expect(refused.status).toBe(401);
    expect(refused.body.errors[0].extensions.code).toBe("session_ended");
    const refresh = await request(api.app).post("/auth/refresh").send({ refreshToken: phone.body.refreshToken });
    expect(refresh.status).toBe(401);
    expect(refresh.body.error.code).toBe("session_ended");
    const left = (await gqlOk(api, user.accessToken, SESSIONS)).currentUser.sessions.map((s: { rowId: string }) => s.rowId);
    expect(left).toEqual([sessionIdOf(user.accessToken)]);
    expect((await eventsOf(user.accessToken))[0]).toMatchObject({ kind: "session_revoked", sessionId: phoneSession, details: { reason: "revoked_by_user", sessions: 1 } });

    // Again, or someone else's, or a made-up one: not found, and nothing changes.
    expect((await gqlError(api, user.accessToken, REVOKE, { id: phoneSession })).code).toBe("not_found");
    expect((await gqlError(api, user.accessToken, REVOKE, { id: sessionIdOf(t.member.accessToken) })).code).toBe("not_found");
    expect((await graphql(api, "{ currentUserId }", { token: t.member.accessToken })).status).toBe(200);
    expect((await gqlError(api, undefined, REVOKE, { id: phoneSession })).code).toBe("forbidden");
  });

  it("revoking the current session is signing out", async () => {
    const user = await signUp(api);
    await gqlOk(api, user.accessToken, REVOKE, { id: sessionIdOf(user.accessToken) });
    expect((await graphql(api, "{ currentUserId }", { token: user.accessToken })).status).toBe(401);
    const { rows } = await db.root.query("select kind, details from app_public.security_events where user_id = $1 order by created_at desc limit 1", [user.id]);
    expect(rows[0]).toEqual({ kind: "signed_out", details: { reason: "logout", sessions: 1 } });
  });
});
