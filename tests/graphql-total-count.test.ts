import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildTestApp, type TestApp } from "./helpers/app.ts";
import { RELAXED_LIMITS } from "./helpers/auth.ts";
import { createTestDatabase, type TestDatabase } from "./helpers/database.ts";
import { arrangeTenants, gqlError, gqlOk, type Tenants } from "./helpers/tenants.ts";

// A root connection's totalCount comes from the statement that fetches its page (count(*) over ())
// whenever that window is the whole count, and from PostGraphile's count statement otherwise
// (src/graphql/total-count.ts). Every answer here is checked against a count made in SQL, for
// every kind of page, and the statements are counted as they reach the database.

let db: TestDatabase;
let api: TestApp;
let t: Tenants;
const recorded: string[] = [];

/** Acme's tasks titled "Alpha …" (the member's tenant) and Globex's (the outsider's). */
const ACME_ALPHAS = 23;
const GLOBEX_ALPHAS = 7;

beforeAll(async () => {
  db = await createTestDatabase();
  api = await buildTestApp(db, { env: RELAXED_LIMITS });
  t = await arrangeTenants(api, db, "total-count");
  const add = (project: string, count: number) =>
    db.root.query(
      `insert into app_public.tasks (project_id, title, status)
       select $1, 'Alpha ' || g, (array['todo', 'in_progress', 'done'])[g % 3 + 1]::app_public.task_status from generate_series(1, $2) g`,
      [project, count],
    );
  await add(t.acme.projectId, ACME_ALPHAS);
  await add(t.globex.projectId, GLOBEX_ALPHAS);
  // What PostGraphile sends, for counting statements (the driver still runs each as usual).
  api.pools.authenticator.on("acquire", (client: pg.PoolClient & { recording?: boolean }) => {
    if (client.recording) return;
    client.recording = true;
    const query = client.query.bind(client) as (...args: unknown[]) => unknown;
    (client as { query: unknown }).query = (...args: unknown[]) => {
      const [config] = args as [string | { text: string }];
      const text = typeof config === "string" ? config : config.text;
      if (text.includes("app_public")) recorded.push(text);
      return query(...args);
    };
  });
});

afterAll(async () => {
  await api?.close();
  await db?.drop();
});

/** Runs `query` as `token`; its data and the app_public statements it sent. */
async function run(query: string, variables: Record<string, unknown> = {}, token = t.member.accessToken) {
  recorded.length = 0;
  const data = await gqlOk(api, token, query, variables);
  return { data, statements: [...recorded] };
}

const windowed = (statements: string[]) => statements.filter((text) => text.includes("count(*) over ()")).length;

/** Acme's tasks with `status` in `statuses` and "alpha" in the title, as SQL counts them. */
async function acmeAlphas(statuses = ["todo", "in_progress", "done", "canceled"]): Promise<number> {
  const { rows } = await db.root.query(
    "select count(*)::int as n from app_public.tasks where organization_id = $1 and title ilike '%alpha%' and status::text = any($2)",
    [t.acme.id, statuses],
  );
  return rows[0].n;
}

const ALPHAS = `filter: { title: { includesInsensitive: "alpha" } }, orderBy: [TITLE_ASC, ROW_ID_ASC]`;

describe("a root connection's totalCount", () => {
  it("comes with its first page in one statement, the count of every matching row the caller may see", async () => {
    expect(await acmeAlphas()).toBe(ACME_ALPHAS);
    const { data, statements } = await run(`{ tasks(first: 5, ${ALPHAS}) { totalCount nodes { title } pageInfo { hasNextPage } } }`);
    expect(data.tasks.totalCount).toBe(ACME_ALPHAS);
    expect(data.tasks.nodes).toHaveLength(5);
    expect(data.tasks.pageInfo.hasNextPage).toBe(true);
    expect(statements).toHaveLength(1);
    expect(windowed(statements)).toBe(1);
  });

  it("counts with the connection's conditions: a filter, and another tenant's own rows", async () => {
    const open = await run(`{ tasks(first: 2, filter: { title: { includesInsensitive: "alpha" }, status: { in: [todo, in_progress] } }) { totalCount nodes { title } } }`);
    expect(open.data.tasks.totalCount).toBe(await acmeAlphas(["todo", "in_progress"]));
    expect(open.statements).toHaveLength(1);
    const outsider = await run(`{ tasks(first: 2, ${ALPHAS}) { totalCount nodes { title } } }`, {}, t.outsider.accessToken);
    expect(outsider.data.tasks.totalCount).toBe(GLOBEX_ALPHAS);
  });

  it("is 0 with no rows, and with last the same as with first", async () => {
    const none = await run(`{ tasks(first: 5, filter: { title: { equalTo: "no such task" } }) { totalCount nodes { title } } }`);
    expect(none.data.tasks).toEqual({ totalCount: 0, nodes: [] });
    expect(none.statements).toHaveLength(1);
    const last = await run(`{ tasks(last: 4, ${ALPHAS}) { totalCount nodes { title } pageInfo { hasPreviousPage } } }`);
    expect(last.data.tasks.totalCount).toBe(ACME_ALPHAS);
    expect(last.data.tasks.nodes).toHaveLength(4);
    expect(last.data.tasks.pageInfo.hasPreviousPage).toBe(true);
    expect(last.statements).toHaveLength(1);
  });

  it("is counted on its own when a cursor or an offset cuts the page, or the page has no rows to count", async () => {
    const first = await run(`{ tasks(first: 5, ${ALPHAS}) { nodes { title } pageInfo { startCursor endCursor } } }`);
    const { endCursor, startCursor } = first.data.tasks.pageInfo;
    const pages = [
      { args: `first: 5, after: "${endCursor}"`, nodes: 5 },
      { args: `last: 5, before: "${endCursor}"`, nodes: 4 },
      { args: `first: 5, after: "${startCursor}"`, nodes: 5 },
      { args: `first: 5, offset: 20`, nodes: ACME_ALPHAS - 20 },
      { args: `first: 5, offset: 1000`, nodes: 0 },
      { args: `first: 0`, nodes: 0 },
    ];
    for (const page of pages) {
      const { data, statements } = await run(`{ tasks(${page.args}, ${ALPHAS}) { totalCount nodes { title } } }`);
      expect(data.tasks.totalCount, page.args).toBe(ACME_ALPHAS);
      expect(data.tasks.nodes, page.args).toHaveLength(page.nodes);
      expect(statements.some((text) => /count\(\*\)\)::text/.test(text) && !text.includes("over ()")), page.args).toBe(true);
    }
  });

  it("is right for the same document whether a variable cursor is given or not", async () => {
    const query = `query ($after: Cursor) { tasks(first: 3, after: $after, ${ALPHAS}) { totalCount nodes { title } pageInfo { endCursor } } }`;
    let after: string | null = null;
    const seen: string[] = [];
    for (let page = 0; page < 9; page++) {
      const { data, statements } = await run(query, { after });
      expect(data.tasks.totalCount).toBe(ACME_ALPHAS);
      expect(statements).toHaveLength(after === null ? 1 : 2);
      seen.push(...data.tasks.nodes.map((node: { title: string }) => node.title));
      after = data.tasks.pageInfo.endCursor;
      if (after === null) break;
    }
    expect(seen).toHaveLength(ACME_ALPHAS);
    expect(new Set(seen).size).toBe(ACME_ALPHAS);
  });

  it("asked for alone is still one statement (PostGraphile's own plan fetched the page as well, in a second)", async () => {
    // Every connection has a page size (the page-size limit fills in `first`), so PostGraphile
    // fetches that page even when only totalCount is asked for.
    const { data, statements } = await run(`{ tasks(${ALPHAS}) { totalCount } }`);
    expect(data.tasks.totalCount).toBe(ACME_ALPHAS);
    expect(statements).toHaveLength(1);
  });

  it("of searchTasks runs the search once", async () => {
    const { rows } = await db.root.query("select count(*)::int as n from app_public.tasks where organization_id = $1 and search @@ app_private.search_query('alpha')", [t.acme.id]);
    expect(rows[0].n).toBe(ACME_ALPHAS);
    const { data, statements } = await run(`{ searchTasks(query: "alpha", first: 4) { totalCount nodes { title } } }`);
    expect(data.searchTasks.totalCount).toBe(ACME_ALPHAS);
    expect(data.searchTasks.nodes).toHaveLength(4);
    expect(statements.filter((text) => text.includes("search_tasks"))).toHaveLength(1);
  });

  it("of two aliased connections is each its own", async () => {
    const { data } = await run(`{ a: tasks(first: 1, ${ALPHAS}) { totalCount nodes { title } } b: tasks(first: 1) { totalCount nodes { title } } }`);
    const { rows } = await db.root.query("select count(*)::int as n from app_public.tasks where organization_id = $1", [t.acme.id]);
    expect(data.a.totalCount).toBe(ACME_ALPHAS);
    expect(data.b.totalCount).toBe(rows[0].n);
  });

  it("leaves nested connections to PostGraphile: page and count are already one statement there", async () => {
    const { data, statements } = await run(`query ($p: UUID!) { project(rowId: $p) { tasks(first: 2) { totalCount nodes { title } } } }`, { p: t.acme.projectId });
    expect(data.project.tasks.totalCount).toBe(ACME_ALPHAS + 1);
    expect(statements).toHaveLength(1);
    expect(windowed(statements)).toBe(0);
  });

  it("still refuses a malformed cursor with the connection's own error", async () => {
    const error = await gqlError(api, t.member.accessToken, `{ tasks(first: 2, after: "bm90IGEgY3Vyc29y", ${ALPHAS}) { totalCount nodes { title } } }`);
    expect(error.code).not.toBe("internal_error");
  });
});
