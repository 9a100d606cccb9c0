import { readFile } from "node:fs/promises";
import path from "node:path";
import { parse, OperationTypeNode, Kind } from "postgraphile/graphql";
import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PROJECT_ROOT } from "../src/db/setup.ts";
import { buildTestApp, PRODUCTION_ENV, type TestApp } from "./helpers/app.ts";
import { graphql, RELAXED_LIMITS } from "./helpers/auth.ts";
import { createTestDatabase, type TestDatabase } from "./helpers/database.ts";
import { arrangeTenants, gqlOk, type Tenants } from "./helpers/tenants.ts";

let db: TestDatabase;
let api: TestApp;
let production: TestApp;
let t: Tenants;

beforeAll(async () => {
  db = await createTestDatabase();
  api = await buildTestApp(db, { env: RELAXED_LIMITS });
  production = await buildTestApp(db, { env: { ...RELAXED_LIMITS, ...PRODUCTION_ENV } });
  t = await arrangeTenants(api, db, "limits");
});

afterAll(async () => {
  await production?.close();
  await api?.close();
  await db?.drop();
});

/** Posts a document as the member of Acme; returns the status and the first error (scripts/graphql-abuse.ts times them). */
async function send(app: TestApp, query: string, variables?: Record<string, unknown>, token: string | null = t.member.accessToken) {
  const res = await graphql(app, query, { token: token ?? undefined, variables });
  return { status: res.status, error: res.body.errors?.[0], data: res.body.data };
}

describe("documents that would stall the server are refused before planning", () => {
  it("a fragment bomb (each fragment spreads the next twice): 1 KB that expands to millions of fields", async () => {
    const levels = 22;
    const fragments = Array.from({ length: levels }, (_, i) =>
      i === levels - 1 ? `fragment F${i} on User { name }` : `fragment F${i} on User { ...F${i + 1} ...F${i + 1} }`,
    );
    const query = `{ currentUser { ...F0 } } ${fragments.join(" ")}`;
    expect(query.length).toBeLessThan(1500);
    const refused = await send(api, query);
    expect(refused.status).toBe(400);
    expect(refused.error).toMatchObject({ extensions: { code: "query_too_complex", limit: 1000 } });
    expect(refused.error.message).toMatch(/^The query asks for 1001\+ fields \(fragments expanded\); the limit is 1000\.$/);
  });

  it("a bomb of fragments with no fields in them, ending in an unknown or a cyclic fragment, is refused too", async () => {
    for (const end of ["...Missing", "...F0"]) {
      const levels = 30;
      const fragments = Array.from({ length: levels }, (_, i) => `fragment F${i} on Query { ${i === levels - 1 ? end : `...F${i + 1} ...F${i + 1}`} }`);
      const refused = await send(api, `{ ...F0 } ${fragments.join(" ")}`);
      expect(refused.status).toBe(400);
      expect(refused.error.extensions).toMatchObject({ code: "query_too_complex", limit: 1000 });
    }
  });

  it("introspection is measured like any other query where it is allowed", async () => {
    const wide = `{ __schema { types { ${Array.from({ length: 60 }, (_, i) => `f${i}: fields { name }`).join(" ")} } } }`;
    const refused = await send(api, wide);
    expect(refused.status).toBe(400);
    expect(refused.error.message).toBe("The query uses 51+ aliases; the limit is 50.");
  });

  it("absurd nesting is refused before parsing, however the document hides it", async () => {
    for (const query of [`${"{a".repeat(5000)}`, `#\r${"{a".repeat(5000)}`, `{ a(s: """ \\""" { """) ${"{a".repeat(5000)} }`]) {
      const refused = await send(api, query);
      expect(refused.status, query.slice(0, 30)).toBe(400);
      expect(refused.error.extensions).toMatchObject({ code: "query_too_complex", limit: 100 });
    }
    const variables = await send(api, `query ($f: TaskFilter) { tasks(filter: $f) { nodes { title } } }`, { f: JSON.parse(`${'{"not":'.repeat(500)}{}${"}".repeat(500)}`) });
    expect(variables.error.extensions).toMatchObject({ code: "query_too_complex", limit: 100 });
  });

  it("thousands of aliases: refused by size before parsing, and by count below that", async () => {
    const huge = `{ ${Array.from({ length: 20_000 }, (_, i) => `a${i}: currentUser { name }`).join(" ")} }`;
    const tooLarge = await send(api, huge);
    expect(tooLarge.status).toBe(413);
    expect(tooLarge.error).toMatchObject({ extensions: { code: "query_too_large", limit: 32 * 1024 } });

    const wide = `{ ${Array.from({ length: 400 }, (_, i) => `a${i}: tasks(first: 100) { nodes { title } }`).join(" ")} }`;
    const refused = await send(api, wide);
    expect(refused.status).toBe(400);
    expect(refused.error).toMatchObject({ message: "The query uses 51+ aliases; the limit is 50.", extensions: { code: "query_too_complex", figure: 51, limit: 50 } });
  });

  it("deep nesting and nested pages are refused with the figure and the limit", async () => {
    let deep = "name";
    for (let i = 0; i < 8; i++) deep = `organization { projects { nodes { ${deep} } } }`;
    const tooDeep = await send(api, `{ tasks(first: 1) { nodes { project { ${deep} } } } }`);
    expect(tooDeep.status).toBe(400);
    expect(tooDeep.error.message).toMatch(/^The query nests 13\+ fields deep; the limit is 12\.$/);

    const nested = `{ organizations(first: 100) { nodes { projects(first: 100) { nodes { tasks(first: 100) { nodes { comments(first: 100) { nodes { body } } } } } } } } }`;
    const expensive = await send(api, nested);
    expect(expensive.status).toBe(400);
    expect(expensive.error.extensions).toMatchObject({ code: "query_too_complex", limit: 5_000_000 });
    expect(expensive.error.message).toMatch(/^The query could resolve about [\d,]+ fields \(each connection counted at its page size\); the limit is 5,000,000\./);
  });

  it("page sizes are capped, whether written in the document or passed as variables", async () => {
    const literal = await send(api, `{ tasks(first: 2147483647) { nodes { title } } }`);
    expect(literal.status).toBe(400);
    expect(literal.error).toMatchObject({ extensions: { code: "query_too_complex", figure: 2147483647, limit: 100 } });

    const variable = await send(api, `query ($n: Int) { tasks(first: $n) { nodes { title } } }`, { n: 101 });
    expect(variable.status).toBe(400);
    expect(variable.error).toMatchObject({
      message: "`first: 101` is over the page limit of 100; ask for smaller pages and follow the cursors.",
      extensions: { code: "query_too_complex", figure: 101, limit: 100 },
    });
    const negative = await send(api, `query ($n: Int) { tasks(last: $n) { nodes { title } } }`, { n: -1 });
    expect(negative.error).toMatchObject({ message: "`last` must not be negative.", extensions: { code: "validation_failed" } });

    // Without first or last, a connection returns one full page and says there is more.
    await db.root.query(
      `insert into app_public.tasks (project_id, title) select $1, 'Bulk ' || i from generate_series(1, 105) i`,
      [t.acme.projectId],
    );
    const page = await gqlOk(api, t.member.accessToken, `query ($p: UUID!) { project(rowId: $p) { tasks { totalCount pageInfo { hasNextPage } nodes { rowId } } } }`, {
      p: t.acme.projectId,
    });
    expect(page.project.tasks.nodes).toHaveLength(100);
    expect(page.project.tasks.totalCount).toBeGreaterThan(100);
    expect(page.project.tasks.pageInfo.hasNextPage).toBe(true);
  });

  it("every query and mutation in the README passes the default limits", async () => {
    const readme = await readFile(path.join(PROJECT_ROOT, "README.md"), "utf8");
    const blocks = [...readme.matchAll(/```graphql\n([^]*?)```/g)].map((m) => m[1]!);
    const operations = blocks.flatMap((block) =>
      parse(block).definitions.filter((d) => d.kind === Kind.OPERATION_DEFINITION && d.operation !== OperationTypeNode.SUBSCRIPTION),
    );
    expect(operations.length).toBeGreaterThan(15);
    const problems: string[] = [];
    for (const operation of operations) {
      const source = operation.loc!.source.body.slice(operation.loc!.start, operation.loc!.end);
      const variables = Object.fromEntries(
        (operation.kind === Kind.OPERATION_DEFINITION ? (operation.variableDefinitions ?? []) : []).map((v) => [
          v.variable.name.value,
          /UUID/.test(JSON.stringify(v.type)) ? "00000000-0000-4000-8000-000000000000" : "x",
        ]),
      );
      const res = await graphql(api, source, { token: t.outsider.accessToken, variables });
      const codes = (res.body.errors ?? []).map((e: { extensions?: { code?: string } }) => e.extensions?.code);
      if (codes.some((code: string | undefined) => code === "query_too_complex" || code === "graphql_validation_failed")) {
        problems.push(`${source.slice(0, 60)}…: ${JSON.stringify(res.body.errors)}`);
      }
    }
    expect(problems).toEqual([]);
  });
});

describe("in production", () => {
  it("introspection is refused and errors suggest no field names, unless GRAPHQL_INTROSPECTION is on", async () => {
    const introspection = await send(production, `{ __schema { types { name } } }`, undefined, null);
    expect(introspection.status).toBe(400);
    expect(introspection.error.message).toMatch(/introspection/i);
    const typo = await send(production, `{ currentUsr { name } }`, undefined, null);
    expect(typo.error.message).toBe('Cannot query field "currentUsr" on type "Query".');
    const typoInDevelopment = await send(api, `{ currentUsr { name } }`, undefined, null);
    expect(typoInDevelopment.error.message).toMatch(/Did you mean "currentUser"/);

    const opened = await buildTestApp(db, { env: { ...RELAXED_LIMITS, ...PRODUCTION_ENV, GRAPHQL_INTROSPECTION: "true" } });
    try {
      const allowed = await send(opened, `{ __schema { queryType { name } } }`, undefined, null);
      expect(allowed.data).toEqual({ __schema: { queryType: { name: "Query" } } });
    } finally {
      await opened.close();
    }
  });

  it("health checks answer at once while a refused bomb is being sent", async () => {
    const fragments = Array.from({ length: 24 }, (_, i) => (i === 23 ? `fragment F${i} on User { name }` : `fragment F${i} on User { ...F${i + 1} ...F${i + 1} }`));
    const bomb = `{ currentUser { ...F0 } } ${fragments.join(" ")}`;
    const [health, refused] = await Promise.all([request(production.app).get("/healthz"), send(production, bomb, undefined, null)]);
    expect(health.status).toBe(200);
    expect(refused.error.extensions.code).toBe("query_too_complex");
  });
});
