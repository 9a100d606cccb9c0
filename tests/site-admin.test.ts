import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildTestApp, type TestApp } from "./helpers/app.ts";
import { graphql, RELAXED_LIMITS, signUp, type SignedUp } from "./helpers/auth.ts";
import { createTestDatabase, type TestDatabase } from "./helpers/database.ts";
import { arrangeTenants, gqlError, gqlOk, type Tenants } from "./helpers/tenants.ts";

// Site administration: finding users, disabling and re-enabling accounts, ending a user's
// sessions; checked in SQL, and recorded in the user's security events with the admin as actor.

let db: TestDatabase;
let api: TestApp;
let t: Tenants;

beforeAll(async () => {
  db = await createTestDatabase();
  api = await buildTestApp(db, { env: RELAXED_LIMITS });
  t = await arrangeTenants(api, db, "siteadmin");
});

afterAll(async () => {
  await api?.close();
  await db?.drop();
});

const SEARCH = `query ($search: String, $verified: Boolean, $disabled: Boolean, $after: Datetime, $before: Datetime) {
  adminSearchUsers(search: $search, verified: $verified, disabled: $disabled, createdAfter: $after, createdBefore: $before, first: 50) {
    totalCount nodes { rowId name email emailVerifiedAt disabledAt }
  }
}`;
const DISABLE = `mutation ($id: UUID!, $reason: String) { adminDisableUser(input: { userId: $id, reason: $reason }) { user { rowId disabledAt } } }`;
const ENABLE = `mutation ($id: UUID!) { adminEnableUser(input: { userId: $id }) { user { rowId disabledAt } } }`;
const REVOKE_ALL = `mutation ($id: UUID!) { adminRevokeUserSessions(input: { userId: $id }) { sessions } }`;

const login = (account: SignedUp, password = account.password) => request(api.app).post("/auth/login").send({ email: account.email, password });
const lastEvents = async (userId: string, n: number) =>
  (
    await db.root.query("select kind, actor_id, details from app_public.security_events where user_id = $1 order by created_at desc limit $2", [
      userId,
      n,
    ])
  ).rows;

describe("who may administer", () => {
  it("every admin operation is refused to anyone but a site administrator, and changes nothing", async () => {
    const victim = await signUp(api);
    for (const [token, code] of [
      [t.owner.accessToken, "forbidden"],
      [t.member.accessToken, "forbidden"],
      [undefined, "forbidden"],
    ] as const) {
      expect((await gqlError(api, token, SEARCH, {})).code).toBe(code);
      expect((await gqlError(api, token, DISABLE, { id: victim.id })).code).toBe(code);
      expect((await gqlError(api, token, ENABLE, { id: victim.id })).code).toBe(code);
      expect((await gqlError(api, token, REVOKE_ALL, { id: victim.id })).code).toBe(code);
    }
    expect((await graphql(api, "{ currentUserId }", { token: victim.accessToken })).status).toBe(200);
    expect(await lastEvents(victim.id, 5)).toEqual([{ kind: "signed_in", actor_id: null, details: {} }]);
  });
});

describe("finding users", () => {
  it("lists every user, newest first, narrowed by search, verification, disabled and creation time", async () => {
    const unique = `findme-${Date.now()}`;
    const [verified, unverified] = [await signUp(api, { email: `${unique}-a@example.com`, name: "Ada Findme" }), await signUp(api, { email: `${unique}-b@example.com` })];
    await db.root.query("update app_public.users set email_verified_at = now() where id = $1", [verified.id]);
    const search = async (variables: Record<string, unknown>) => (await gqlOk(api, t.siteAdmin.accessToken, SEARCH, variables)).adminSearchUsers;

    const found = await search({ search: unique });
    expect(found.nodes.map((u: { rowId: string }) => u.rowId)).toEqual([unverified.id, verified.id]);
    expect(found.nodes[1]).toMatchObject({ email: `${unique}-a@example.com`, name: "Ada Findme" });
    expect((await search({ search: unique, verified: true })).nodes.map((u: { rowId: string }) => u.rowId)).toEqual([verified.id]);
    expect((await search({ search: unique, verified: false })).nodes.map((u: { rowId: string }) => u.rowId)).toEqual([unverified.id]);
    expect((await search({ search: "ADA FINDME" })).totalCount).toBe(1);
    // % and _ are themselves, not wildcards.
    expect((await search({ search: "%" })).totalCount).toBe(0);
    expect((await search({ after: new Date(Date.now() + 60_000).toISOString() })).totalCount).toBe(0);
    expect((await search({ before: new Date(Date.now() + 60_000).toISOString() })).totalCount).toBeGreaterThanOrEqual(7);
  });
});

describe("disabling an account", () => {
  it("ends its sessions, refuses its sign-in like a wrong password, and is recorded with the admin as actor", async () => {
    const user = await signUp(api);
    const phone = await login(user);
    const disabled = await gqlOk(api, t.siteAdmin.accessToken, DISABLE, { id: user.id, reason: "Spam reports" });
    expect(disabled.adminDisableUser.user.disabledAt).not.toBeNull();

    for (const token of [user.accessToken, phone.body.accessToken]) {
      const res = await graphql(api, "{ currentUserId }", { token });
      expect(res.status).toBe(401);
      expect(res.body.errors[0].extensions.code).toBe("session_ended");
    }
    expect((await request(api.app).post("/auth/refresh").send({ refreshToken: phone.body.refreshToken })).status).toBe(401);
    const right = await login(user);
    const wrong = await login(user, "not the password at all");
    expect(right.status).toBe(401);
    expect(right.body).toEqual(wrong.body);
    expect(right.body.error.code).toBe("invalid_credentials");

    expect(await lastEvents(user.id, 2)).toEqual([
      { kind: "sessions_revoked", actor_id: t.siteAdmin.id, details: { reason: "account_disabled", sessions: 2 } },
      { kind: "account_disabled", actor_id: t.siteAdmin.id, details: { reason: "Spam reports" } },
    ]);
    // Site administrators see it; nobody else does.
    expect((await gqlOk(api, t.siteAdmin.accessToken, SEARCH, { disabled: true })).adminSearchUsers.nodes.map((u: { rowId: string }) => u.rowId)).toContain(user.id);
  });

  it("no session opens for a disabled account by any path, and re-enabling lets it sign in again", async () => {
    const user = await signUp(api);
    await gqlOk(api, t.siteAdmin.accessToken, DISABLE, { id: user.id });
    await expect(db.root.query("select * from app_private.open_session($1, 'x', null, 60)", [user.id])).rejects.toMatchObject({
      code: "OS403",
      detail: "account_disabled",
    });
    const enabled = await gqlOk(api, t.siteAdmin.accessToken, ENABLE, { id: user.id });
    expect(enabled.adminEnableUser.user.disabledAt).toBeNull();
    expect((await login(user)).status).toBe(200);
    expect((await lastEvents(user.id, 2)).map((e) => [e.kind, e.actor_id])).toEqual([
      ["signed_in", null],
      ["account_enabled", t.siteAdmin.id],
    ]);
  });

  it("disabling a disabled account or enabling an enabled one changes nothing and records nothing", async () => {
    const user = await signUp(api);
    const kinds = async () =>
      (await db.root.query("select kind from app_public.security_events where user_id = $1 and kind in ('account_disabled', 'account_enabled') order by created_at", [user.id])).rows.map(
        (e) => e.kind,
      );
    await gqlOk(api, t.siteAdmin.accessToken, ENABLE, { id: user.id });
    expect(await kinds()).toEqual([]);
    const first = await gqlOk(api, t.siteAdmin.accessToken, DISABLE, { id: user.id });
    const second = await gqlOk(api, t.siteAdmin.accessToken, DISABLE, { id: user.id, reason: "again" });
    expect(second.adminDisableUser.user.disabledAt).toBe(first.adminDisableUser.user.disabledAt);
    await gqlOk(api, t.siteAdmin.accessToken, ENABLE, { id: user.id });
    await gqlOk(api, t.siteAdmin.accessToken, ENABLE, { id: user.id });
    expect(await kinds()).toEqual(["account_disabled", "account_enabled"]);
  });

  it("an administrator cannot disable themself, nor a user that does not exist", async () => {
    expect((await gqlError(api, t.siteAdmin.accessToken, DISABLE, { id: t.siteAdmin.id })).code).toBe("conflict");
    expect((await gqlError(api, t.siteAdmin.accessToken, DISABLE, { id: "00000000-0000-4000-8000-000000000000" })).code).toBe("not_found");
  });

  it("whether an account is disabled is for the user and site administrators only", async () => {
    const query = `query ($id: UUID!) { user(rowId: $id) { disabledAt } }`;
    await db.root.query("update app_public.users set disabled_at = now() where id = $1", [t.member.id]);
    try {
      expect((await gqlOk(api, t.owner.accessToken, query, { id: t.member.id })).user.disabledAt).toBeNull();
      expect((await gqlOk(api, t.siteAdmin.accessToken, query, { id: t.member.id })).user.disabledAt).not.toBeNull();
    } finally {
      await db.root.query("update app_public.users set disabled_at = null where id = $1", [t.member.id]);
    }
  });
});

describe("ending a user's sessions", () => {
  it("signs the user out everywhere and says how many, recorded with the admin as actor", async () => {
    const user = await signUp(api);
    await login(user);
    expect((await gqlOk(api, t.siteAdmin.accessToken, REVOKE_ALL, { id: user.id })).adminRevokeUserSessions.sessions).toBe(2);
    expect((await graphql(api, "{ currentUserId }", { token: user.accessToken })).status).toBe(401);
    expect(await lastEvents(user.id, 1)).toEqual([{ kind: "sessions_revoked", actor_id: t.siteAdmin.id, details: { reason: "revoked_by_admin", sessions: 2 } }]);
    // The user may sign in again at once: nothing else changed.
    expect((await login(user)).status).toBe(200);
  });
});
