import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { openApiDocument } from "../src/http/openapi.ts";
import { buildTestApp, type TestApp } from "./helpers/app.ts";
import { graphql } from "./helpers/auth.ts";
import { createTestDatabase, type TestDatabase } from "./helpers/database.ts";

// `npm run dev` (DEV_WATCH): the GraphQL schema follows the database's without a restart (as
// when db:watch applies current.sql), and schema.graphql and openapi.json are rewritten.

let db: TestDatabase;
let api: TestApp;
let contracts: string;

beforeAll(async () => {
  db = await createTestDatabase();
  contracts = await mkdtemp(path.join(tmpdir(), "oddscenes-contracts-"));
  api = await buildTestApp(db, { env: { DEV_WATCH: "true" }, superuserUrl: db.urls.root, contractsDir: contracts });
});

afterAll(async () => {
  await api?.close();
  await db?.drop();
  if (contracts) await rm(contracts, { recursive: true, force: true });
});

const schemaFile = () => readFile(path.join(contracts, "schema.graphql"), "utf8").catch(() => "");

describe("development watch mode", () => {
  it("writes openapi.json and schema.graphql at start", async () => {
    expect(JSON.parse(await readFile(path.join(contracts, "openapi.json"), "utf8"))).toEqual(JSON.parse(JSON.stringify(openApiDocument())));
    await expect.poll(schemaFile, { timeout: 10_000 }).toContain("type Query");
  });

  it("serves a new database function without a restart, and rewrites schema.graphql with it", async () => {
    expect((await graphql(api, "{ watchProbe }")).status).toBe(400);
    await db.root.query(`create function app_public.watch_probe() returns text language sql stable as $$ select 'probed' $$`);
    await db.root.query(`grant execute on function app_public.watch_probe() to ${db.urls.roles.anonymous}`);
    await expect.poll(async () => (await graphql(api, "{ watchProbe }")).body.data?.watchProbe, { timeout: 15_000, interval: 250 }).toBe("probed");
    await expect.poll(schemaFile, { timeout: 10_000 }).toContain("watchProbe: String");
  });
});
