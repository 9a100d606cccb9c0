import type pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FIXTURE, loadData, SIZES } from "../bench/data.ts";
import { signAccessToken } from "../src/auth/tokens.ts";
import { buildTestApp, type TestApp } from "./helpers/app.ts";
import { RELAXED_LIMITS } from "./helpers/auth.ts";
import { createTestDatabase, type TestDatabase } from "./helpers/database.ts";
import { gqlOk } from "./helpers/tenants.ts";

// The plans the README's queries rely on, checked on the SQL PostGraphile really generates for
// them (recorded from the GraphQL pool's connections) and explained as the signed-in member over
// the benchmark's data at its large size (200k tasks in 50 organizations, where the planner's
// choices are the ones production makes). A migration that makes a tenant policy unindexable
// again, or drops the board-order index, fails here.

let db: TestDatabase;
let api: TestApp;
let token: string;
let ids: { member: string; project: string; task: string; session: string };
const recorded: Array<{ text: string; values?: unknown[] }> = [];

beforeAll(async () => {
  db = await createTestDatabase();
  // One comment a task is enough to plan the comment queries, and loads in half the time.
  await loadData(db.root, { ...SIZES.large, commentsPerTask: 1 });
  const { rows } = await db.root.query(`select ${FIXTURE.member} as member, ${FIXTURE.project} as project, ${FIXTURE.task} as task`);
  const session = await db.root.query(`insert into app_private.sessions (user_id, expires_at) values ($1, now() + interval '1 hour') returning id`, [rows[0].member]);
  ids = { ...rows[0], session: session.rows[0].id };
  // As in the benchmark: the default plan's limits would stop a task being added to a project of 1,000.
  await db.root.query("update app_public.plans set max_projects = null, max_members = null, max_tasks_per_project = null where is_default");
  api = await buildTestApp(db, { env: RELAXED_LIMITS });
  token = signAccessToken(api.config.jwt, { userId: ids.member, sessionId: ids.session });
  // Record what PostGraphile sends (the driver still runs every statement as usual).
  api.pools.authenticator.on("acquire", (client: pg.PoolClient & { recording?: boolean }) => {
    if (client.recording) return;
    client.recording = true;
    const query = client.query.bind(client) as (...args: unknown[]) => unknown;
    (client as { query: unknown }).query = (...args: unknown[]) => {
      const [config, values] = args as [string | { text: string; values?: unknown[] }, unknown[] | undefined];
      recorded.push(typeof config === "string" ? { text: config, values } : { text: config.text, values: config.values });
      return query(...args);
    };
  });
});

afterAll(async () => {
  await api?.close();
  await db?.drop();
});

interface PlanNode {
  "Node Type": string;
  "Relation Name"?: string;
  "Index Name"?: string;
  "Index Cond"?: string;
  "Recheck Cond"?: string;
  Filter?: string;
  "Join Filter"?: string;
  Plans?: PlanNode[];
}

const flatten = (node: PlanNode): PlanNode[] => [node, ...(node.Plans ?? []).flatMap(flatten)];

/**
 * The plans of the statements a GraphQL query made, explained as the member with their claims.
 * `generic`: the plan PostgreSQL may switch a prepared statement to after five runs, made
 * without the parameters' values (PostGraphile prepares its statements).
 */
async function plansOf(query: string, variables: Record<string, unknown> = {}, { generic = false } = {}): Promise<PlanNode[][]> {
  recorded.length = 0;
  await gqlOk(api, token, query, variables);
  const statements = recorded.filter(({ text }) => /^\s*select/i.test(text) && text.includes("app_public") && !text.includes("set_config"));
  expect(statements.length).toBeGreaterThan(0);
  const client = await db.root.connect();
  try {
    const plans: PlanNode[][] = [];
    for (const { text, values } of statements) {
      await client.query("begin");
      await client.query(
        "select set_config('role', $1, true), set_config('jwt.claims.user_id', $2, true), set_config('jwt.claims.session_id', $3, true)",
        [db.urls.roles.user, ids.member, ids.session],
      );
      let explain = async (options: string) => (await client.query(`explain (${options}) ${text}`, values)).rows;
      if (generic) {
        await client.query("set local plan_cache_mode = force_generic_plan");
        await client.query(`prepare planned as ${text}`);
        const literals = (values ?? []).map((value) => (value === null ? "null" : client.escapeLiteral(String(value))));
        explain = async (options) => (await client.query(`explain (${options}) execute planned${literals.length ? `(${literals.join(", ")})` : ""}`)).rows;
      }
      const rows = await explain("format json");
      if (process.env.SHOW_PLANS) console.log(text, values, (await explain("format text")).map((r) => r["QUERY PLAN"]).join("\n"));
      await client.query("rollback");
      if (generic) await client.query("deallocate planned");
      plans.push(flatten((rows[0]["QUERY PLAN"] as Array<{ Plan: PlanNode }>)[0]!.Plan));
    }
    return plans;
  } finally {
    client.release();
  }
}

/**
 * The plans of the statements run inside functions the GraphQL query's statements call (a
 * SECURITY DEFINER function is planned on its own), from auto_explain, as the member.
 */
async function nestedPlansOf(query: string, { generic = false } = {}): Promise<PlanNode[][]> {
  recorded.length = 0;
  await gqlOk(api, token, query, {});
  const statements = recorded.filter(({ text }) => /^\s*select/i.test(text) && text.includes("app_public") && !text.includes("set_config"));
  expect(statements.length).toBeGreaterThan(0);
  return plansInside(statements, (message) => message.includes("search_tasks.query") || message.includes("tasks t"), { generic });
}

/**
 * The plans auto_explain reports for the statements `statements` run inside functions and
 * triggers (the ones whose log message `keep` picks), run twice as the member, rolled back.
 */
async function plansInside(
  statements: Array<{ text: string; values?: unknown[] }>,
  keep: (message: string) => boolean,
  { generic = false } = {},
): Promise<PlanNode[][]> {
  const client = await db.root.connect();
  const logged: string[] = [];
  const onNotice = (notice: { message?: string }) => void (notice.message && logged.push(notice.message));
  client.on("notice", onNotice);
  const collected: string[] = [];
  let failed: Error | undefined;
  try {
    await client.query("load 'auto_explain'");
    for (const { text, values } of statements) {
      await client.query("begin");
      await client.query(
        `select set_config('auto_explain.log_min_duration', '0', true), set_config('auto_explain.log_nested_statements', 'on', true),
           set_config('auto_explain.log_format', 'json', true), set_config('client_min_messages', 'log', true)`,
      );
      if (generic) await client.query("set local plan_cache_mode = force_generic_plan");
      await client.query(
        "select set_config('role', $1, true), set_config('jwt.claims.user_id', $2, true), set_config('jwt.claims.session_id', $3, true)",
        [db.urls.roles.user, ids.member, ids.session],
      );
      // Twice: SQL functions may plan their statements anew on the first call.
      await client.query(text, values);
      logged.length = 0;
      await client.query(text, values);
      collected.push(...logged);
      await client.query("rollback");
    }
    const plans = collected
      .filter(keep)
      .map((message) => JSON.parse(message.slice(message.indexOf("{"))) as { Plan: PlanNode })
      .map(({ Plan }) => flatten(Plan));
    if (process.env.SHOW_PLANS) console.log(JSON.stringify(plans, null, 1));
    return plans;
  } catch (error) {
    // The connection is mid-transaction: it goes, rather than back to the pool.
    failed = error instanceof Error ? error : new Error(String(error));
    throw error;
  } finally {
    client.off("notice", onNotice);
    client.release(failed);
  }
}

const scansOf = (plans: PlanNode[][], table: string) => plans.flat().filter((node) => node["Relation Name"] === table);

describe("the README's queries use the indexes the benchmark relies on", () => {
  for (const generic of [false, true]) {
    const plan = generic ? "generic plan" : "custom plan";
    it(`Q1 a page of a project's tasks by position (${plan}): read in index order, no sort, no full scan`, async () => {
      const plans = await plansOf(`query ($p: UUID!) { project(rowId: $p) { tasks(first: 20, orderBy: POSITION_ASC) { totalCount nodes { rowId title } } } }`, {
        p: ids.project,
      }, { generic });
      const tasks = scansOf(plans, "tasks");
      expect(tasks.length).toBeGreaterThan(0);
      expect(tasks.map((node) => node["Node Type"])).not.toContain("Seq Scan");
      expect(tasks.some((node) => node["Index Name"] === "tasks_project_position_idx")).toBe(true);
      expect(plans.flat().map((node) => node["Node Type"])).not.toContain("Sort");
    });

    it(`Q2 organizations → projects → 10 tasks each (${plan}): no full scan of tasks`, async () => {
      const plans = await plansOf(`{ organizations { nodes { projects { nodes { tasks(first: 10, orderBy: POSITION_ASC) { nodes { title assignee { name } } } } } } } }`, {}, { generic });
      const tasks = scansOf(plans, "tasks");
      expect(tasks.length).toBeGreaterThan(0);
      expect(tasks.map((node) => node["Node Type"])).not.toContain("Seq Scan");
    });

    it(`Q3 a task with its comments (${plan}): no full scan of tasks or comments`, async () => {
      const plans = await plansOf(`query ($t: UUID!) { task(rowId: $t) { title comments(first: 50) { nodes { body author { name } } } } }`, { t: ids.task }, { generic });
      for (const table of ["tasks", "task_comments"]) {
        expect(scansOf(plans, table).map((node) => node["Node Type"])).not.toContain("Seq Scan");
      }
    });
  }

  // Under RLS only leakproof conditions may become index conditions, and ILIKE and @@ are not:
  // the tenant policy must be one, or every tenant's rows are read.
  const tenantIndexed = (plans: PlanNode[][]) =>
    scansOf(plans, "tasks").every((node) => /organization_id = ANY/.test(`${node["Index Cond"] ?? ""} ${node["Recheck Cond"] ?? ""}`)) &&
    scansOf(plans, "tasks").length > 0;

  const Q4A = `{ tasks(first: 20, filter: { status: { in: [todo, in_progress] }, title: { includesInsensitive: "landing" } }) { totalCount nodes { title } } }`;
  const Q4B = `{ searchTasks(query: "landing page", first: 20) { totalCount nodes { title } } }`;

  for (const generic of [false, true]) {
    const plan = generic ? "generic plan" : "custom plan";
    it(`Q4a filter + includesInsensitive + totalCount (${plan}): the member's organizations' rows only, from the index alone`, async () => {
      const plans = await plansOf(Q4A, {}, { generic });
      expect(tenantIndexed(plans)).toBe(true);
      expect(scansOf(plans, "tasks").map((node) => node["Node Type"])).toEqual(plans.map(() => "Index Only Scan"));
    });

    it(`Q4b searchTasks + totalCount (${plan}): the search runs once, the search index answers tenant and words at once, the search parsed once`, async () => {
      // search_tasks runs as its owner (past row-level security, so @@ can be an index condition):
      // its plan is the statement inside the function, which auto_explain reports.
      const plans = await nestedPlansOf(Q4B, { generic });
      const scans = scansOf(plans, "tasks");
      // Page and count from one run of the search (src/graphql/total-count.ts).
      expect(scans).toHaveLength(1);
      for (const scan of scans) expect(scan["Node Type"]).toBe("Bitmap Heap Scan");
      const indexScans = plans.flat().filter((node) => node["Node Type"] === "Bitmap Index Scan");
      expect(indexScans.map((node) => node["Index Name"])).toEqual(scans.map(() => "tasks_organization_search_idx"));
      for (const node of indexScans) expect(node["Index Cond"]).toMatch(/organization_id = ANY .*search @@/);
      // The tsquery is made once (a constant, or a one-row function scan), not in a filter per row.
      const filters = plans.flat().flatMap((node) => [node.Filter, node["Join Filter"], node["Index Cond"]].filter((filter) => filter !== undefined));
      for (const filter of filters) expect(filter).not.toMatch(/websearch_to_tsquery/);
    });

    it(`M1 createTask and moveTask (${plan}): a column's end and next position come from (project_id, status, position), not a walk through the project`, async () => {
      // The benchmark's first project has 1,000 tasks, none of them to do: the worst case for
      // "the last position in the To do column" read in position order and filtered by status.
      const plans = await plansInside(
        [
          { text: "insert into app_public.tasks (project_id, title) values ($1, 'Plan probe')", values: [ids.project] },
          { text: "select (app_public.move_task($1, 'todo')).id", values: [ids.task] },
        ],
        (message) => /(max|min)\(t\.position\)/.test(message),
        { generic },
      );
      const scans = scansOf(plans, "tasks");
      expect(scans.length).toBeGreaterThanOrEqual(2);
      for (const scan of scans) {
        expect(scan["Index Name"]).toBe("tasks_position_unique");
        expect(scan["Index Cond"]).toMatch(/project_id = .*status = /);
      }
    });
  }
});
