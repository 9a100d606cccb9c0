import { readFile } from "node:fs/promises";
import path from "node:path";
import { Validator } from "@seriousme/openapi-schema-validator";
import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPasswords } from "../src/auth/passwords.ts";
import { authRoutes } from "../src/auth/routes.ts";
import { PROJECT_ROOT } from "../src/db/setup.ts";
import { healthRoutes } from "../src/http/health.ts";
import { openApiDocument, REST_OPERATIONS } from "../src/http/openapi.ts";
import { buildTestApp, type TestApp } from "./helpers/app.ts";
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

/** "post /auth/login" for every route an Express router serves, under its mount path. */
function routesOf(router: { stack: Array<{ route?: { path: string; methods: Record<string, boolean> } }> }, mount: string): string[] {
  return router.stack.flatMap((layer) =>
    layer.route ? Object.keys(layer.route.methods).map((method) => `${method} ${mount}${layer.route!.path === "/" ? "" : layer.route!.path}`) : [],
  );
}

describe("openapi.json", () => {
  it("is a valid OpenAPI 3.1 document", async () => {
    const result = await new Validator().validate(JSON.parse(JSON.stringify(openApiDocument())) as Record<string, unknown>);
    expect(result.errors ?? []).toEqual([]);
    expect(result.valid).toBe(true);
  });

  it("matches the committed file (run npm run openapi:export after a change)", async () => {
    const committed = await readFile(path.join(PROJECT_ROOT, "openapi.json"), "utf8");
    expect(JSON.parse(committed)).toEqual(openApiDocument());
  });

  it("documents every REST route, and no route that does not exist", async () => {
    const served = [
      ...routesOf(authRoutes({ config: api.config, pools: api.pools, roles: db.urls.roles, passwords: createPasswords() }) as never, "/auth"),
      ...routesOf(healthRoutes({ ownerPool: api.pools.owner, latestMigration: undefined, draining: () => false }) as never, ""),
      "post /webhooks/stripe",
      "get /openapi.json",
    ].sort();
    const documented = Object.values(REST_OPERATIONS).map(({ method, path: p }) => `${method} ${p}`).sort();
    expect(documented).toEqual(served);
  });

  it("is served at GET /openapi.json, and the bodies it describes are the ones the routes validate", async () => {
    const res = await request(api.app).get("/openapi.json");
    expect(res.status).toBe(200);
    expect(res.body).toEqual(JSON.parse(JSON.stringify(openApiDocument())));
    // An unknown field is refused, as additionalProperties: false says.
    const schema = res.body.paths["/auth/login"].post.requestBody.content["application/json"].schema;
    expect(schema.additionalProperties).toBe(false);
    const refused = await request(api.app).post("/auth/login").send({ email: "a@example.com", password: "x", extra: 1 });
    expect(refused.body.error.details).toEqual([{ field: "extra", message: "is not a known field" }]);
  });
});
