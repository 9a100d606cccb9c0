import { spawnSync } from "node:child_process";
import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PROJECT_ROOT } from "../src/db/setup.ts";
import { buildTestApp, type TestApp } from "./helpers/app.ts";
import { RELAXED_LIMITS } from "./helpers/auth.ts";
import { createTestDatabase, type TestDatabase } from "./helpers/database.ts";

let db: TestDatabase;
let api: TestApp;

beforeAll(async () => {
  db = await createTestDatabase();
  api = await buildTestApp(db, { env: RELAXED_LIMITS });
});

afterAll(async () => {
  await api?.close();
  await db?.drop();
});

const seed = () =>
  spawnSync(process.execPath, ["src/db/seed.ts"], {
    cwd: PROJECT_ROOT,
    encoding: "utf8",
    env: { ...process.env, DATABASE_URL: db.urls.owner, AUTH_DATABASE_URL: db.urls.authenticator, SMTP_URL: "" },
    timeout: 60_000,
  });

describe("npm run db:seed", () => {
  it("creates demo data once, prints how to sign in, and the printed credentials work", async () => {
    const first = seed();
    expect(first.status, first.stderr).toBe(0);
    expect(first.stdout).toContain("Demo data created.");
    expect(first.stdout).toContain('the password is "oddscenes-demo"');
    const again = seed();
    expect(again.status).toBe(0);
    expect(again.stdout).toContain("Demo data is already there.");

    const login = await request(api.app).post("/auth/login").send({ email: "mia@demo.oddscenes.dev", password: "oddscenes-demo" });
    expect(login.status).toBe(200);
    const res = await request(api.app)
      .post("/graphql")
      .set("Authorization", `Bearer ${login.body.accessToken}`)
      .send({ query: "{ organizations { nodes { name projects { totalCount } } } tasks { totalCount } }" });
    expect(res.body.data).toEqual({ organizations: { nodes: [{ name: "Acme", projects: { totalCount: 2 } }] }, tasks: { totalCount: 12 } });
  });
});
