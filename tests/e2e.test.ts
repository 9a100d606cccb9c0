import { spawn, type ChildProcess } from "node:child_process";
import { chmodSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import pg from "pg";
import { pino } from "pino";
import { afterAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { startEmbeddedPostgres } from "../src/db/embedded.ts";
import { PROJECT_ROOT } from "../src/db/setup.ts";
import { createTestDatabase, type TestDatabase } from "./helpers/database.ts";

interface Started {
  child: ChildProcess;
  url: string;
  output: () => string;
}

const running = new Set<ChildProcess>();
const dataDirs: string[] = [];

/** Runs the real entry point (`npm start` runs `node src/index.ts`) and waits for its banner. */
function startBackend(env: Record<string, string>): Promise<Started> {
  const child = spawn(process.execPath, ["src/index.ts"], {
    cwd: PROJECT_ROOT,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, PORT: "0", LOG_LEVEL: "info", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  running.add(child);
  child.once("exit", () => running.delete(child));
  let output = "";
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no banner within 60 s:\n${output}`)), 60_000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      const match = /GraphQL API\s+(http:\/\/\S+)\/graphql/.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve({ child, url: match[1]!, output: () => output });
      }
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", (chunk: Buffer) => (output += chunk.toString()));
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`exited with ${code} before it was ready:\n${output}`));
    });
  });
}

async function stopWith(started: Started, signal: NodeJS.Signals): Promise<number | null> {
  started.child.removeAllListeners("exit");
  const exited = new Promise<number | null>((resolve) => started.child.once("exit", (code) => resolve(code)));
  started.child.kill(signal);
  return exited;
}

async function graphql(url: string, query: string, token?: string) {
  const res = await fetch(`${url}/graphql`, {
    method: "POST",
    headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify({ query }),
  });
  return { status: res.status, body: (await res.json()) as any };
}

const external = Boolean(process.env.TEST_DATABASE_URL);
let db: TestDatabase | undefined;

// If a test failed midway, leave no backend and no database server behind.
afterAll(async () => {
  for (const child of running) child.kill("SIGKILL");
  for (const dataDir of dataDirs) {
    const leftover = await startEmbeddedPostgres({ dataDir, superuserPassword: "", logger: pino({ level: "silent" }) }).catch(() => undefined);
    await leftover?.stop();
  }
  await db?.drop();
});

// One of the two runs, by server: the embedded one by default, the TEST_DATABASE_URL one otherwise.
describe("npm start, end to end", () => {
  if (!external) it(
    "boots an embedded PostgreSQL, serves the API, keeps queued jobs across a clean SIGTERM and reuses its data",
    async () => {
      const dataDir = mkdtempSync(path.join(tmpdir(), "oddscenes-e2e-"));
      chmodSync(dataDir, 0o755);
      dataDirs.push(dataDir);
      const env = { DATA_DIR: dataDir };

      const first = await startBackend(env);
      expect((await fetch(`${first.url}/healthz`)).status).toBe(200);
      expect((await fetch(`${first.url}/readyz`)).status).toBe(200);
      expect(await graphql(first.url, "{ currentUserId }")).toEqual({ status: 200, body: { data: { currentUserId: null } } });
      expect(first.output()).toContain("embedded PostgreSQL");

      // A signed-in user holds a live subscription while we shut down.
      const registered = await fetch(`${first.url}/auth/register`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ email: "e2e@example.com", password: "e2e password 123", name: "E2E" }),
      });
      expect(registered.status).toBe(201);
      const { accessToken } = (await registered.json()) as { accessToken: string };

      // Files work with no S3 settings: npm start runs a local S3-compatible server.
      expect(first.output()).toMatch(/Files\s+embedded S3 at http:\/\/127\.0\.0\.1:\d+/);
      const png = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 13, 10, 26, 10]);
      const upload = await graphql(
        first.url,
        `mutation { createUpload(input: { purpose: avatar, filename: "me.png", contentType: "image/png", size: "${png.length}" }) { file { rowId } uploadUrl uploadHeaders { name value } } }`,
        accessToken,
      );
      const { file, uploadUrl, uploadHeaders } = upload.body.data.createUpload;
      const headers = Object.fromEntries(uploadHeaders.map((h: { name: string; value: string }) => [h.name, h.value]));
      expect((await fetch(uploadUrl, { method: "PUT", body: png, headers })).status).toBe(200);
      const completed = await graphql(first.url, `mutation { completeUpload(input: { fileId: "${file.rowId}" }) { file { status } } }`, accessToken);
      expect(completed.body.data.completeUpload.file.status).toBe("ready");
      const me = await graphql(first.url, "{ currentUser { avatarUrl } }", accessToken);
      expect(new Uint8Array(await (await fetch(me.body.data.currentUser.avatarUrl)).arrayBuffer())).toEqual(png);
      const socket = new WebSocket(first.url.replace("http", "ws") + "/graphql", "graphql-transport-ws");
      await new Promise((resolve, reject) => {
        socket.once("open", resolve);
        socket.once("error", reject);
      });
      const organization = await graphql(
        first.url,
        `mutation { createOrganization(input: { slug: "e2e", name: "E2E" }) { organization { rowId } } }`,
        accessToken,
      );
      const project = await graphql(
        first.url,
        `mutation { createProject(input: { project: { organizationId: "${organization.body.data.createOrganization.organization.rowId}", name: "Live" } }) { project { rowId } } }`,
        accessToken,
      );
      const projectId = project.body.data.createProject.project.rowId;
      socket.send(JSON.stringify({ type: "connection_init", payload: { authorization: `Bearer ${accessToken}` } }));
      await new Promise((resolve) => socket.once("message", resolve));
      socket.send(
        JSON.stringify({
          id: "1",
          type: "subscribe",
          payload: { query: `subscription { taskChanged(projectId: "${projectId}") { event } }` },
        }),
      );
      const socketClosed = new Promise((resolve) => socket.once("close", resolve));

      // A job due in an hour is queued; a clean shutdown must not lose it.
      const secrets = JSON.parse(readFileSync(path.join(dataDir, "secrets.json"), "utf8"));
      const { port } = JSON.parse(readFileSync(path.join(dataDir, "embedded-postgres.json"), "utf8"));
      const rootUrl = `postgres://postgres:${secrets.superuserPassword}@127.0.0.1:${port}/oddscenes`;
      const client = new pg.Client({ connectionString: rootUrl });
      await client.connect();
      await expect
        .poll(async () => (await client.query("select count(*)::int as n from pg_stat_activity where query like 'LISTEN \"project:%'")).rows[0].n)
        .toBe(1);
      await client.query(
        "select graphile_worker.add_job('send_email', '{}'::json, run_at := now() + interval '1 hour', job_key := 'e2e-kept')",
      );
      await client.end();

      const stopping = Date.now();
      expect(await stopWith(first, "SIGTERM")).toBe(0);
      expect(Date.now() - stopping).toBeLessThan(10_000);
      await socketClosed;
      expect(first.output()).toContain("embedded PostgreSQL stopped");
      expect(first.output()).not.toMatch(/"level":(50|60)/);

      const second = await startBackend(env);
      expect(second.output()).not.toContain("creating the embedded PostgreSQL cluster");
      const again = new pg.Client({ connectionString: rootUrl });
      await again.connect();
      const { rows } = await again.query("select key from graphile_worker.jobs where key = 'e2e-kept'");
      await again.end();
      expect(rows).toEqual([{ key: "e2e-kept" }]);
      expect(await stopWith(second, "SIGINT")).toBe(0);
      dataDirs.pop(); // stopped cleanly: nothing to clean up
    },
    120_000,
  );

  if (external) it(
    "uses the server in DATABASE_URL, migrates it and starts no database of its own",
    async () => {
      db = await createTestDatabase();
      const dataDir = mkdtempSync(path.join(tmpdir(), "oddscenes-e2e-"));
      const started = await startBackend({
        DATA_DIR: dataDir,
        DATABASE_URL: db.urls.owner,
        AUTH_DATABASE_URL: db.urls.authenticator,
        DATABASE_ANONYMOUS: db.urls.roles.anonymous,
        DATABASE_USER: db.urls.roles.user,
      });
      expect(await graphql(started.url, "{ currentUserId }")).toEqual({ status: 200, body: { data: { currentUserId: null } } });
      expect((await fetch(`${started.url}/readyz`)).status).toBe(200);
      expect(started.output()).not.toContain("embedded PostgreSQL started");
      expect(await stopWith(started, "SIGTERM")).toBe(0);
    },
    120_000,
  );
});
