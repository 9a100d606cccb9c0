import pg from "pg";
import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { pipelinedQuery } from "../src/graphql/pipelined-query.ts";
import { buildTestApp, type TestApp } from "./helpers/app.ts";
import { graphql, RELAXED_LIMITS, signUp } from "./helpers/auth.ts";
import { createTestDatabase, type TestDatabase } from "./helpers/database.ts";
import { arrangeTenants, gqlOk, type Tenants } from "./helpers/tenants.ts";

// A GraphQL query over HTTP runs all of its SQL on one connection, each statement in one round
// trip with the request's settings, the first also checking the caller's session
// (src/graphql/request-connection.ts, src/graphql/pipelined-query.ts).

let db: TestDatabase;
let api: TestApp;
let t: Tenants;

beforeAll(async () => {
  db = await createTestDatabase();
  api = await buildTestApp(db, { env: RELAXED_LIMITS });
  t = await arrangeTenants(api, db, "tx");
});

afterAll(async () => {
  await api?.close();
  await db?.drop();
});

/** How many times the GraphQL pool hands out a connection while `fn` runs. */
async function connectionsTaken(fn: () => Promise<unknown>): Promise<number> {
  let taken = 0;
  const count = () => void (taken += 1);
  api.pools.authenticator.on("acquire", count);
  try {
    await fn();
  } finally {
    api.pools.authenticator.off("acquire", count);
  }
  return taken;
}

/**
 * Every request connection is back in the pool: the only one out is PostGraphile's LISTEN
 * subscriber, which stays connected (the database announces ended sessions on it).
 */
const allReturned = () => api.pools.authenticator.totalCount - api.pools.authenticator.idleCount === 1;

/** A function's definition, to put it back. */
async function definitionOf(fn: string): Promise<string> {
  return (await db.root.query("select pg_get_functiondef($1::regprocedure) as def", [fn])).rows[0].def;
}

/** Drops and creates `fn` anew from `definition`, as a migration would, keeping its comment and grants. */
async function redefine(fn: string, definition: string, grantees: string[]): Promise<void> {
  const client = await db.root.connect();
  try {
    const comment = (await client.query("select obj_description($1::regprocedure) as comment", [fn])).rows[0].comment;
    await client.query("begin");
    await client.query(`drop function ${fn}`);
    await client.query(definition);
    if (comment) await client.query(`comment on function ${fn} is ${client.escapeLiteral(comment)}`);
    await client.query(`grant execute on function ${fn} to ${grantees.join(", ")}`);
    await client.query("commit");
  } catch (error) {
    await client.query("rollback");
    throw error;
  } finally {
    client.release();
  }
}

describe("a GraphQL query takes one connection", () => {
  it("takes one connection for a page, its totalCount and nested lists, and gives it back before answering", async () => {
    const query = `{ projects { totalCount nodes { name tasks(first: 3) { totalCount nodes { title } } } } organizations { nodes { name } } }`;
    const taken = await connectionsTaken(() => gqlOk(api, t.member.accessToken, query));
    expect(taken).toBe(1);
    expect(allReturned()).toBe(true);
  });

  it("a connection whose prepared statements were dropped behind its back (DEALLOCATE ALL) fails one request, then is replaced", async () => {
    const query = `{ projects { nodes { name } } }`;
    for (let i = 0; i < 3; i++) await gqlOk(api, t.member.accessToken, query);
    const pool = api.pools.authenticator;
    const idle = await Promise.all(Array.from({ length: pool.idleCount }, () => pool.connect()));
    const prepared = async (client: pg.PoolClient) => (await client.query("select count(*)::int as n from pg_prepared_statements")).rows[0].n as number;
    const used: pg.PoolClient[] = [];
    for (const client of idle) if ((await prepared(client)) > 0) used.push(client);
    expect(used.length).toBeGreaterThan(0);
    for (const client of idle) await client.query("deallocate all");
    // The pool hands out the connection released last first: those that had statements.
    for (const client of [...idle.filter((client) => !used.includes(client)), ...used]) client.release();
    const answers: string[] = [];
    for (let i = 0; i < idle.length + 3; i++) {
      const res = await graphql(api, query, { token: t.member.accessToken });
      answers.push(res.status === 200 && !res.body.errors ? "ok" : `${res.status} ${res.body.errors?.[0]?.extensions?.code}`);
    }
    // At most one failure per such connection (node-postgres would go on believing in its
    // statements and fail every request on it), and the last requests are answered.
    expect(answers.filter((answer) => answer !== "ok").length).toBeLessThanOrEqual(used.length);
    expect(answers.slice(-3)).toEqual(["ok", "ok", "ok"]);
    expect(allReturned()).toBe(true);
  });

  it("a connection whose prepared query a migration made stale (a changed result type) fails one request, then is replaced", async () => {
    const query = `{ tasks { nodes { title creatorName } } }`;
    for (let i = 0; i < 3; i++) await gqlOk(api, t.member.accessToken, query);
    const fn = "app_public.tasks_creator_name(app_public.tasks)";
    const original = await definitionOf(fn);
    const grantees = [db.urls.roles.anonymous, db.urls.roles.user];
    // The same function, returning varchar instead of text.
    await redefine(fn, original.replace(/RETURNS text/, "RETURNS character varying"), grantees);
    try {
      const connections = api.pools.authenticator.totalCount;
      const answers: string[] = [];
      for (let i = 0; i < connections + 3; i++) {
        const res = await graphql(api, query, { token: t.member.accessToken });
        answers.push(res.status === 200 && !res.body.errors ? "ok" : `${res.status} ${res.body.errors?.[0]?.extensions?.code}`);
      }
      // PostgreSQL refuses such a statement on every run: node-postgres's would fail for good.
      expect(answers.filter((answer) => answer !== "ok").length).toBeLessThanOrEqual(connections);
      expect(answers.slice(-3)).toEqual(["ok", "ok", "ok"]);
    } finally {
      await redefine(fn, original, grantees);
    }
  });

  it("the session check survives a migration changing what its function returns", async () => {
    for (let i = 0; i < 3; i++) await gqlOk(api, t.member.accessToken, `{ projects { nodes { name } } }`);
    const fn = "app_hidden.require_live_session(uuid)";
    const original = await definitionOf(fn);
    await redefine(fn, original.replace(/RETURNS void/, "RETURNS boolean").replace(/\bend if;\s*end;/, "end if;\n  return true;\nend;"), [db.urls.roles.user]);
    try {
      for (let i = 0; i < 3; i++) await gqlOk(api, t.member.accessToken, `{ projects { nodes { name } } }`);
    } finally {
      await redefine(fn, original, [db.urls.roles.user]);
    }
  });

  it("a mutation still commits its own work, and queries see it", async () => {
    const created = await gqlOk(api, t.member.accessToken, `mutation ($org: UUID!) { createProject(input: { project: { organizationId: $org, name: "Committed" } }) { project { rowId } } }`, {
      org: t.acme.id,
    });
    const id = created.createProject.project.rowId;
    const seen = await gqlOk(api, t.member.accessToken, `query ($id: UUID!) { project(rowId: $id) { name } }`, { id });
    expect(seen.project.name).toBe("Committed");
    expect(allReturned()).toBe(true);
  });

  it("one failing statement fails its own field only", async () => {
    const res = await graphql(api, `{ bad: tasks(filter: { dueAt: { lessThan: "294277-01-01T00:00:00Z" } }) { totalCount } good: projects { totalCount } }`, {
      token: t.member.accessToken,
    });
    expect(res.status).toBe(200);
    expect(res.body.errors).toHaveLength(1);
    expect(res.body.errors[0].path).toEqual(["bad"]);
    expect(res.body.errors[0].extensions.code).toBe("validation_failed");
    expect(res.body.data.good.totalCount).toBeGreaterThan(0);
    expect(allReturned()).toBe(true);
  });

  it("leaves no connection idle in a transaction once answered", async () => {
    const res = await graphql(api, `{ currentUser { name } }`, { token: t.member.accessToken });
    expect(res.status).toBe(200);
    // Roles are shared by every test database in the cluster: count this database's connections only.
    const { rows } = await db.root.query(
      "select count(*)::int as n from pg_stat_activity where state = 'idle in transaction' and usename = $1 and datname = current_database()",
      [db.urls.roles.authenticator],
    );
    expect(rows[0].n).toBe(0);
  });
});

describe("an ended session is refused before any data is read", () => {
  it("answers 401 session_ended to a query and to a mutation, and leaks no connection", async () => {
    const account = await signUp(api);
    expect((await graphql(api, "{ currentUserId }", { token: account.accessToken })).status).toBe(200);
    expect((await request(api.app).post("/auth/logout").send({ refreshToken: account.refreshToken })).status).toBe(204);

    const query = await graphql(api, "{ organizations { totalCount } }", { token: account.accessToken });
    expect(query.status).toBe(401);
    expect(query.body.errors.map((e: { extensions: { code: string } }) => e.extensions.code)).toEqual(["session_ended"]);
    expect(query.body.data?.organizations ?? null).toBeNull();

    const mutation = await graphql(api, `mutation { updateCurrentUser(input: { name: "Ghost" }) { user { name } } }`, { token: account.accessToken });
    expect(mutation.status).toBe(401);
    expect(mutation.body.errors[0].extensions.code).toBe("session_ended");
    const { rows } = await db.root.query("select name from app_public.users where id = $1", [account.id]);
    expect(rows[0].name).not.toBe("Ghost");
    // Operations that run no SQL at all are refused too: the session is checked on its own.
    for (const document of ["{ __typename }", "mutation { __typename }", "{ __schema { queryType { name } } }"]) {
      const res = await graphql(api, document, { token: account.accessToken });
      expect(res.status).toBe(401);
      expect(res.body.errors[0].extensions.code).toBe("session_ended");
      expect(res.body.data ?? null).toBeNull();
    }
    expect(allReturned()).toBe(true);
  });
});

describe("a pipelined statement", () => {
  let client: pg.Client;
  beforeAll(async () => {
    client = new pg.Client({ connectionString: db.urls.authenticator });
    client.on("error", () => {});
    await client.connect();
  });
  afterAll(() => client?.end());

  const asUser = (userId: string) => ({
    text: "select pg_catalog.set_config('role', $1, true), pg_catalog.set_config('jwt.claims.user_id', $2, true)",
    values: [db.urls.roles.user, userId],
  });
  const whoAmI = { name: "who_am_i", text: "select current_user as role, current_setting('jwt.claims.user_id', true) as claim, $1::int as n", values: ["1"] };

  it("runs under its prelude's settings, which end with it", async () => {
    const result = await pipelinedQuery(client, whoAmI, [asUser(t.member.id), { text: "select 1 where false", values: [] }]);
    expect(result.rows).toEqual([{ role: db.urls.roles.user, claim: t.member.id, n: 1 }]);
    // Nothing lingers on the connection: the next statement is the authenticator again.
    const after = await client.query("select current_user as role, coalesce(current_setting('jwt.claims.user_id', true), '') as claim, pg_catalog.now() = statement_timestamp() as own_transaction");
    expect(after.rows).toEqual([{ role: db.urls.roles.authenticator, claim: "", own_transaction: true }]);
  });

  it("keeps a prepared statement usable whether its prelude, its parameters or its execution failed", async () => {
    const failingPrelude = { text: "select 1 / 0", values: [] };
    await expect(pipelinedQuery(client, { ...whoAmI, name: "fresh_statement" }, [asUser(t.member.id), failingPrelude])).rejects.toMatchObject({ code: "22012" });
    await expect(pipelinedQuery(client, { ...whoAmI, values: ["not a number"] }, [asUser(t.member.id)])).rejects.toMatchObject({ code: "22P02" });
    const failing = { name: "divides", text: "select 1 / $1::int as x", values: ["0"] };
    await expect(pipelinedQuery(client, failing, [asUser(t.member.id)])).rejects.toMatchObject({ code: "22012" });
    // Each name is prepared exactly once and still answers (no "does not exist", no "already exists").
    for (let i = 0; i < 2; i++) {
      expect((await pipelinedQuery(client, { ...whoAmI, name: "fresh_statement" }, [asUser(t.member.id)])).rows[0].claim).toBe(t.member.id);
      expect((await pipelinedQuery(client, whoAmI, [asUser(t.member.id)])).rows[0].n).toBe(1);
      expect((await pipelinedQuery(client, { ...failing, values: ["1"] }, [asUser(t.member.id)])).rows).toEqual([{ x: 1 }]);
    }
    // A failure rolled back the whole round trip: a prelude's write is undone with it.
    await expect(
      pipelinedQuery(client, failing, [{ text: "select pg_catalog.set_config('jwt.claims.user_id', $1, false)", values: ["kept?"] }]),
    ).rejects.toMatchObject({ code: "22012" });
    expect((await client.query("select coalesce(current_setting('jwt.claims.user_id', true), '') as claim")).rows[0].claim).toBe("");
  });

  it("prepares a named prelude statement once per connection, and again only when a failure leaves it in doubt", async () => {
    const prepared = async (name: string) =>
      (await client.query("select prepare_time::text as at, generic_plans + custom_plans as runs from pg_prepared_statements where name = $1", [name])).rows;
    const named = { ...asUser(t.member.id), name: "prelude_as_user" };
    for (let i = 0; i < 3; i++) expect((await pipelinedQuery(client, whoAmI, [named])).rows[0].claim).toBe(t.member.id);
    const [first] = await prepared("prelude_as_user");
    expect(first).toMatchObject({ runs: "3" });
    // Parsed once: the same statement, planned and run again.
    await pipelinedQuery(client, whoAmI, [{ ...asUser(t.admin.id), name: "prelude_as_user" }]);
    expect(await prepared("prelude_as_user")).toEqual([{ at: first!.at, runs: "4" }]);

    // Its first run failed after its Parse went through, then one where it was skipped behind a
    // failing statement: each later run works (no "already exists", no "does not exist").
    const divides = (by: string) => ({ text: "select 1 / $1::int", values: [by], name: "prelude_divides" });
    await expect(pipelinedQuery(client, whoAmI, [divides("0")])).rejects.toMatchObject({ code: "22012" });
    await expect(pipelinedQuery(client, whoAmI, [{ text: "select 1 / 0", values: [] }, divides("1")])).rejects.toMatchObject({ code: "22012" });
    for (let i = 0; i < 2; i++) expect((await pipelinedQuery(client, whoAmI, [divides("1"), named])).rows[0].claim).toBe(t.member.id);
    expect(await prepared("prelude_divides")).toHaveLength(1);

    // A migration changed what its function returns: that round trip fails (a prepared statement's
    // result type is fixed), the next prepares it again.
    await db.root.query(`create schema prelude_probe; grant usage on schema prelude_probe to ${db.urls.roles.authenticator}`);
    await db.root.query("create function prelude_probe.probe(n int) returns int language sql as $$ select n $$");
    const probe = { text: "select prelude_probe.probe($1::int)", values: ["1"], name: "prelude_probe" };
    expect((await pipelinedQuery(client, whoAmI, [probe])).rows[0].n).toBe(1);
    await db.root.query("drop function prelude_probe.probe(int)");
    await db.root.query("create function prelude_probe.probe(n int) returns text language sql as $$ select n::text $$");
    await expect(pipelinedQuery(client, whoAmI, [probe])).rejects.toMatchObject({ code: "0A000" });
    expect((await pipelinedQuery(client, whoAmI, [probe])).rows[0].n).toBe(1);

    // Deallocated behind its back: that round trip fails, the next prepares it again.
    await client.query("deallocate prelude_divides");
    await expect(pipelinedQuery(client, whoAmI, [divides("1")])).rejects.toMatchObject({ code: "26000" });
    expect((await pipelinedQuery(client, whoAmI, [divides("1"), named])).rows[0].n).toBe(1);
    expect(await prepared("prelude_divides")).toHaveLength(1);
  });

  it("is cut off by the statement_timeout its prelude sets", async () => {
    const timeout = { text: "select pg_catalog.set_config('statement_timeout', $1, true)", values: ["200ms"] };
    const started = Date.now();
    await expect(pipelinedQuery(client, { text: "select pg_catalog.pg_sleep(5)" }, [timeout])).rejects.toMatchObject({ code: "57014" });
    expect(Date.now() - started).toBeLessThan(3000);
    // The timeout ended with the statement.
    expect((await client.query("select current_setting('statement_timeout') as value")).rows[0].value).toBe("0");
  });

  it("does not run at all when a prelude statement raises, and read-only preludes keep it from writing", async () => {
    const check = (userId: string) => ({ text: "select app_hidden.require_live_session($1::uuid)", values: [userId] });
    // A session-level advisory lock outlives a rollback: had the query run, the lock would be held.
    const lock = { text: "select pg_catalog.pg_advisory_lock(4242)" };
    const held = async () => (await client.query("select count(*)::int as n from pg_locks where locktype = 'advisory' and objid = 4242 and pid = pg_backend_pid()")).rows[0].n;
    // Signed in as the member, but checking for another user: session_ended, and the query never ran.
    await expect(pipelinedQuery(client, lock, [asUser(t.member.id), check(t.admin.id)])).rejects.toMatchObject({ code: "OS401", detail: "session_ended" });
    expect(await held()).toBe(0);
    // With the member's live session, the check passes and the query runs.
    const sessionId = (JSON.parse(Buffer.from(t.member.accessToken.split(".")[1]!, "base64url").toString()) as { sid: string }).sid;
    const live = { text: `${asUser(t.member.id).text}, pg_catalog.set_config('jwt.claims.session_id', $3, true)`, values: [...asUser(t.member.id).values, sessionId] };
    await pipelinedQuery(client, lock, [live, check(t.member.id)]);
    expect(await held()).toBe(1);
    await client.query("select pg_catalog.pg_advisory_unlock_all()");
    const readOnly = { text: "select pg_catalog.set_config('transaction_read_only', 'on', true)", values: [] };
    await expect(pipelinedQuery(client, { text: "create temporary table scratch (i int)" }, [readOnly])).rejects.toMatchObject({ code: "25006" });
  });
});
