import { readFile } from "node:fs/promises";
import path from "node:path";
import { pino } from "pino";
import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PROJECT_ROOT } from "../src/db/setup.ts";
import { makeGraphilePreset } from "../src/graphql/preset.ts";
import { schemaSDL } from "../src/graphql/schema-sdl.ts";
import { buildTestApp, PRODUCTION_ENV, type TestApp } from "./helpers/app.ts";
import { createTestDatabase, type TestDatabase } from "./helpers/database.ts";

let db: TestDatabase;
let api: TestApp;

beforeAll(async () => {
  db = await createTestDatabase();
  api = await buildTestApp(db);
});

afterAll(async () => {
  await api?.close();
  await db?.drop();
});

describe("GraphQL endpoint", () => {
  it("answers a query as the anonymous role", async () => {
    const res = await request(api.app).post("/graphql").send({ query: "{ currentUserId }" });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ data: { currentUserId: null } });
  });

  it("reports an invalid query as a GraphQL error, not a crash", async () => {
    const res = await request(api.app).post("/graphql").send({ query: "{ noSuchField }" });
    expect(res.status).toBe(400);
    expect(res.body.errors[0].message).toMatch(/Cannot query field "noSuchField"/);
    expect(res.body.data).toBeUndefined();
  });

  it("rejects a request over the body limit", async () => {
    const small = await buildTestApp(db, { env: { BODY_LIMIT: "1kb" } });
    try {
      const res = await request(small.app).post("/graphql").send({ query: `{ currentUserId } # ${"x".repeat(4096)}` });
      expect(res.status).toBe(413);
    } finally {
      await small.close();
    }
  });

  it("serves GraphiQL in development only", async () => {
    const dev = await request(api.app).get("/graphiql");
    expect(dev.status).toBe(200);
    expect(dev.text).toContain("<html");

    const prod = await buildTestApp(db, { env: PRODUCTION_ENV });
    try {
      const res = await request(prod.app).get("/graphiql");
      expect(res.status).toBe(404);
      expect(res.body.error.code).toBe("not_found");
    } finally {
      await prod.close();
    }
  });
});

describe("schema.graphql", () => {
  it("matches the schema built from the migrations (run npm run schema:export after a change)", async () => {
    const sdl = await schemaSDL(makeGraphilePreset({ config: api.config, pool: api.pools.authenticator, roles: db.urls.roles, logger: pino({ level: "silent" }) }));
    const committed = await readFile(path.join(PROJECT_ROOT, "schema.graphql"), "utf8");
    expect(sdl).toBe(committed);
  });
});
