import { spawnSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PROJECT_ROOT } from "../src/db/setup.ts";
import { buildTestApp, type TestApp } from "./helpers/app.ts";
import { graphql, RELAXED_LIMITS, signUp, type SignedUp } from "./helpers/auth.ts";
import { asRole, createTestDatabase, type TestDatabase } from "./helpers/database.ts";

let db: TestDatabase;
let api: TestApp;
let alice: SignedUp;
let bob: SignedUp;
let admin: SignedUp;

/** Claims exactly as the API sets them from a verified access token. */
async function claimsOf(account: SignedUp) {
  const { rows } = await db.root.query("select id from app_private.sessions where user_id = $1 order by created_at limit 1", [account.id]);
  return { user_id: account.id, session_id: rows[0].id as string };
}

beforeAll(async () => {
  db = await createTestDatabase();
  api = await buildTestApp(db, { env: RELAXED_LIMITS });
  [alice, bob, admin] = await Promise.all([
    signUp(api, { name: "Alice" }),
    signUp(api, { name: "Bob" }),
    signUp(api, { name: "Site Admin" }),
  ]);
  await db.root.query("update app_public.users set is_admin = true where id = $1", [admin.id]);
});

afterAll(async () => {
  await api?.close();
  await db?.drop();
});

describe("reading users", () => {
  it("anonymous sees no users", async () => {
    const rows = await asRole(db, "anonymous", {}, async (c) => (await c.query("select id from app_public.users")).rows);
    expect(rows).toEqual([]);
  });

  it("a user sees only themself", async () => {
    const rows = await asRole(db, "user", await claimsOf(alice), async (c) => (await c.query("select id from app_public.users")).rows);
    expect(rows).toEqual([{ id: alice.id }]);
  });

  it("a site admin sees everyone", async () => {
    const rows = await asRole(db, "user", await claimsOf(admin), async (c) => (await c.query("select id from app_public.users")).rows);
    expect(rows.map((r) => r.id)).toEqual(expect.arrayContaining([alice.id, bob.id, admin.id]));
  });

  it("claims of a revoked session count as nobody", async () => {
    const claims = await claimsOf(bob);
    await db.root.query("select app_private.revoke_session($1, 'test')", [claims.session_id]);
    const rows = await asRole(db, "user", claims, async (c) => (await c.query("select id from app_public.users")).rows);
    expect(rows).toEqual([]);
    bob = await signUp(api, { name: "Bob again" });
  });

  it("claims naming another user's session count as nobody", async () => {
    const forged = { user_id: alice.id, session_id: (await claimsOf(bob)).session_id };
    const rows = await asRole(db, "user", forged, async (c) => (await c.query("select app_public.current_user_id() as id")).rows);
    expect(rows).toEqual([{ id: null }]);
  });
});

describe("changing users", () => {
  it("a user changes their own name and avatar", async () => {
    const claims = await claimsOf(alice);
    const rows = await asRole(db, "user", claims, async (c) =>
      (await c.query("update app_public.users set name = 'Alice L.', avatar_url = 'https://img.example.com/a.png' returning name")).rows,
    );
    expect(rows).toEqual([{ name: "Alice L." }]);
  });

  it("a user cannot change anyone else", async () => {
    const rows = await asRole(db, "user", await claimsOf(alice), async (c) =>
      (await c.query("update app_public.users set name = 'hacked' where id = $1 returning id", [bob.id])).rows,
    );
    expect(rows).toEqual([]);
  });

  it("nobody makes themself an admin, changes their email or verifies it directly", async () => {
    const claims = await claimsOf(alice);
    for (const assignment of ["is_admin = true", "email = 'new@example.com'", "email_verified_at = now()"]) {
      await expect(
        asRole(db, "user", claims, (c) => c.query(`update app_public.users set ${assignment} where id = $1`, [alice.id])),
      ).rejects.toThrow(/permission denied for table users/);
    }
  });

  it("request roles cannot insert or delete users", async () => {
    const claims = await claimsOf(alice);
    await expect(
      asRole(db, "user", claims, (c) => c.query("insert into app_public.users (email, name) values ('x@example.com', 'X')")),
    ).rejects.toThrow(/permission denied/);
    await expect(asRole(db, "user", claims, (c) => c.query("delete from app_public.users"))).rejects.toThrow(/permission denied/);
    await expect(
      asRole(db, "anonymous", {}, (c) => c.query("update app_public.users set name = 'x'")),
    ).rejects.toThrow(/permission denied/);
  });
});

describe("secrets", () => {
  it("no request role can read app_private", async () => {
    for (const table of ["user_secrets", "sessions", "refresh_tokens", "email_tokens", "rate_limits"]) {
      for (const [role, claims] of [["anonymous", {}], ["user", await claimsOf(admin)]] as const) {
        await expect(
          asRole(db, role, claims, (c) => c.query(`select * from app_private.${table}`)),
          `${role} reading ${table}`,
        ).rejects.toThrow(/permission denied for schema app_private/);
      }
    }
  });

  it("GraphQL exposes no secret and no way to write users directly", async () => {
    const res = await graphql(api, `{ __schema { types { name fields { name } } mutationType { fields { name } } } }`);
    const types: Array<{ name: string; fields: Array<{ name: string }> | null }> = res.body.data.__schema.types;
    const typeNames = types.map((type) => type.name);
    for (const hidden of ["UserSecret", "Session", "RefreshToken", "EmailToken", "RateLimit", "LoginFailure", "TrustedDevice", "StripeEvent", "StripeCustomer", "BillingNotice"]) {
      expect(typeNames, hidden).not.toContain(hidden);
    }
    const fieldNames = types.flatMap((type) => (type.fields ?? []).map((field) => field.name));
    for (const secret of ["passwordHash", "tokenHash", "refreshToken", "deviceToken", "stripeCustomerId", "stripeSubscriptionId", "stripePriceId", "stripeProductId"]) {
      expect(fieldNames.filter((name) => name.toLowerCase().includes(secret.toLowerCase())), secret).toEqual([]);
    }
    const mutations: string[] = res.body.data.__schema.mutationType.fields.map((f: { name: string }) => f.name);
    expect(mutations).toContain("updateCurrentUser");
    expect(mutations.filter((name) => /^(create|update|delete)User/.test(name))).toEqual([]);
  });
});

describe("GraphQL", () => {
  it("lists only what each caller may see", async () => {
    const query = "{ users { totalCount nodes { name } } }";
    expect((await graphql(api, query)).body.data.users.totalCount).toBe(0);
    expect((await graphql(api, query, { token: alice.accessToken })).body.data.users.totalCount).toBe(1);
    expect((await graphql(api, query, { token: admin.accessToken })).body.data.users.totalCount).toBeGreaterThanOrEqual(3);
  });

  it("updateCurrentUser changes the caller's profile and clears the avatar with an empty string", async () => {
    const mutation = `mutation ($name: String, $avatarUrl: String) {
      updateCurrentUser(input: { name: $name, avatarUrl: $avatarUrl }) { user { name avatarUrl } }
    }`;
    const renamed = await graphql(api, mutation, { token: bob.accessToken, variables: { name: "Robert", avatarUrl: "https://img.example.com/b.png" } });
    expect(renamed.body).toEqual({ data: { updateCurrentUser: { user: { name: "Robert", avatarUrl: "https://img.example.com/b.png" } } } });
    const cleared = await graphql(api, mutation, { token: bob.accessToken, variables: { avatarUrl: "" } });
    expect(cleared.body.data.updateCurrentUser.user).toEqual({ name: "Robert", avatarUrl: null });
  });

  it("updateCurrentUser explains bad input and anonymous callers", async () => {
    const mutation = `mutation ($name: String, $avatarUrl: String) {
      updateCurrentUser(input: { name: $name, avatarUrl: $avatarUrl }) { user { name } }
    }`;
    const bad = await graphql(api, mutation, { token: bob.accessToken, variables: { avatarUrl: "javascript:alert(1)" } });
    expect(bad.body.errors[0].extensions.code).toBe("validation_failed");
    const anonymous = await graphql(api, mutation, { variables: { name: "Nobody" } });
    expect(anonymous.body.errors[0].extensions.code).toBe("forbidden");
  });
});

describe("npm run admin:grant / admin:revoke", () => {
  const run = (...args: string[]) =>
    spawnSync(process.execPath, ["src/auth/admin-cli.ts", ...args], {
      cwd: PROJECT_ROOT,
      encoding: "utf8",
      env: { ...process.env, DATABASE_URL: db.urls.owner, AUTH_DATABASE_URL: db.urls.authenticator },
    });

  it("makes a user a site admin and takes it back, saying so", async () => {
    const granted = run("grant", alice.email);
    expect(granted.status).toBe(0);
    expect(granted.stdout).toContain(`<${alice.email}> is now a site administrator.`);
    expect((await db.root.query("select is_admin from app_public.users where id = $1", [alice.id])).rows[0].is_admin).toBe(true);

    const revoked = run("revoke", alice.email.toUpperCase());
    expect(revoked.status).toBe(0);
    expect(revoked.stdout).toContain("is no longer a site administrator.");
    expect((await db.root.query("select is_admin from app_public.users where id = $1", [alice.id])).rows[0].is_admin).toBe(false);
  });

  it("says clearly when no user has that address", () => {
    const result = run("grant", "nobody-at-all@example.com");
    expect(result.status).toBe(1);
    expect(result.stderr).toContain("No user has the email address nobody-at-all@example.com. Nothing changed.");
  });
});
