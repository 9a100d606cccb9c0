import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildTestApp, type TestApp } from "./helpers/app.ts";
import { RELAXED_LIMITS } from "./helpers/auth.ts";
import { createTestDatabase, type TestDatabase } from "./helpers/database.ts";
import { arrangeTenants, gqlError, gqlOk, type Tenants } from "./helpers/tenants.ts";

// A root function connection's totalCount (searchTasks) comes from the statement that fetches its
// page (count(*) over ()) when its page is not cut by a cursor or an offset, and from PostGraphile's
// count statement otherwise (src/graphql/total-count.ts). Every answer here is checked against a
// count made in SQL, and the statements are counted as they reach the database.

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
    "select count(*)::int as n from app_public.tasks where organization_id = $1 and search @@ app_private.search_query('alpha') and status::text = any($2)",
    [t.acme.id, statuses],
  );
  return rows[0].n;
}

const SEARCH = `query: "alpha"`;
const searches = (statements: string[]) => statements.filter((text) => text.includes("search_tasks")).length;

describe("a root function connection's totalCount", () => {
  it("comes with its first page in one statement: the search runs once", async () => {
    expect(await acmeAlphas()).toBe(ACME_ALPHAS);
    const { data, statements } = await run(`{ searchTasks(${SEARCH}, first: 5) { totalCount nodes { title } pageInfo { hasNextPage } } }`);
    expect(data.searchTasks.totalCount).toBe(ACME_ALPHAS);
    expect(data.searchTasks.nodes).toHaveLength(5);
    expect(data.searchTasks.pageInfo.hasNextPage).toBe(true);
    expect(searches(statements)).toBe(1);
    expect(windowed(statements)).toBe(1);
  });

  it("counts with the connection's conditions: a filter, and another tenant's own rows", async () => {
    const open = await run(`{ searchTasks(${SEARCH}, first: 2, filter: { status: { in: [todo, in_progress] } }) { totalCount nodes { title } } }`);
    expect(open.data.searchTasks.totalCount).toBe(await acmeAlphas(["todo", "in_progress"]));
    expect(searches(open.statements)).toBe(1);
    const outsider = await run(`{ searchTasks(${SEARCH}, first: 2) { totalCount nodes { title } } }`, {}, t.outsider.accessToken);
    expect(outsider.data.searchTasks.totalCount).toBe(GLOBEX_ALPHAS);
  });

  it("is 0 when nothing matches, and right with no first (the page size fills it in)", async () => {
    const none = await run(`{ searchTasks(query: "zebra", first: 5) { totalCount nodes { title } } }`);
    expect(none.data.searchTasks).toEqual({ totalCount: 0, nodes: [] });
    expect(none.statements).toHaveLength(1);
    const all = await run(`{ searchTasks(${SEARCH}) { totalCount nodes { title } } }`);
    expect(all.data.searchTasks.totalCount).toBe(ACME_ALPHAS);
    expect(all.data.searchTasks.nodes).toHaveLength(ACME_ALPHAS);
    expect(all.statements).toHaveLength(1);
  });

  it("is counted on its own when a cursor or an offset cuts the page, or the page asks for no rows", async () => {
    const first = await run(`{ searchTasks(${SEARCH}, first: 5) { nodes { title } pageInfo { startCursor endCursor } } }`);
    const { endCursor, startCursor } = first.data.searchTasks.pageInfo;
    const pages = [
      { args: `first: 5, after: "${endCursor}"`, nodes: 5 },
      { args: `first: 5, after: "${startCursor}"`, nodes: 5 },
      { args: `first: 5, offset: 20`, nodes: ACME_ALPHAS - 20 },
      { args: `first: 5, offset: 1000`, nodes: 0 },
      { args: `first: 0`, nodes: 0 },
    ];
    for (const page of pages) {
      const { data, statements } = await run(`{ searchTasks(${SEARCH}, ${page.args}) { totalCount nodes { title } } }`);
      expect(data.searchTasks.totalCount, page.args).toBe(ACME_ALPHAS);
      expect(data.searchTasks.nodes, page.args).toHaveLength(page.nodes);
      expect(windowed(statements), page.args).toBe(0);
      expect(statements.some((text) => /count\(\*\)\)::text/.test(text)), page.args).toBe(true);
    }
  });

  it("is right for one document whatever its variables: a cursor, none, or first: 0", async () => {
    const query = `query ($after: Cursor, $first: Int) { searchTasks(${SEARCH}, first: $first, after: $after) { totalCount nodes { title } pageInfo { endCursor } } }`;
    let after: string | null = null;
    const seen: string[] = [];
    for (let page = 0; page < 9; page++) {
      const { data } = await run(query, { after, first: 3 });
      expect(data.searchTasks.totalCount).toBe(ACME_ALPHAS);
      seen.push(...data.searchTasks.nodes.map((node: { title: string }) => node.title));
      after = data.searchTasks.pageInfo.endCursor;
      if (after === null) break;
    }
    expect(seen).toHaveLength(ACME_ALPHAS);
    expect(new Set(seen).size).toBe(ACME_ALPHAS);
    const windowless = `query ($first: Int) { searchTasks(${SEARCH}, first: $first) { totalCount nodes { title } } }`;
    for (const first of [4, 0, 4]) {
      const { data, statements } = await run(windowless, { first });
      expect(data.searchTasks.totalCount, `first: ${first}`).toBe(ACME_ALPHAS);
      expect(data.searchTasks.nodes).toHaveLength(first);
      expect(searches(statements), `first: ${first}`).toBe(1);
      expect(windowed(statements), `first: ${first}`).toBe(first === 0 ? 0 : 1);
    }
  });

  it("asked for alone is one statement too", async () => {
    const { data, statements } = await run(`{ searchTasks(${SEARCH}) { totalCount } }`);
    expect(data.searchTasks.totalCount).toBe(ACME_ALPHAS);
    expect(statements).toHaveLength(1);
  });

  it("of two aliased connections is each its own", async () => {
    const { data } = await run(`{ a: searchTasks(${SEARCH}, first: 1) { totalCount nodes { title } } b: searchTasks(query: "press", first: 1) { totalCount nodes { title } } }`);
    expect(data.a.totalCount).toBe(ACME_ALPHAS);
    expect(data.b.totalCount).toBe(1);
  });

  it("leaves table connections to PostGraphile: an index may stop their page early, and a window would read every row", async () => {
    const { data, statements } = await run(`{ tasks(first: 2, filter: { title: { includesInsensitive: "alpha" } }) { totalCount nodes { title } } }`);
    expect(data.tasks.totalCount).toBe(ACME_ALPHAS);
    expect(statements).toHaveLength(2);
    expect(windowed(statements)).toBe(0);
    const nested = await run(`query ($p: UUID!) { project(rowId: $p) { tasks(first: 2) { totalCount nodes { title } } } }`, { p: t.acme.projectId });
    expect(nested.data.project.tasks.totalCount).toBe(ACME_ALPHAS + 1);
    expect(nested.statements).toHaveLength(1);
    expect(windowed(nested.statements)).toBe(0);
  });

  it("still refuses a malformed cursor with the connection's own error", async () => {
    const error = await gqlError(api, t.member.accessToken, `{ searchTasks(${SEARCH}, first: 2, after: "bm90IGEgY3Vyc29y") { totalCount nodes { title } } }`);
    expect(error.code).not.toBe("internal_error");
  });
});
