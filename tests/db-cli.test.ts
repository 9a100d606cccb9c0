import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readdir } from "node:fs/promises";
import path from "node:path";
import pg from "pg";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { bootstrapDatabase, PROJECT_ROOT } from "../src/db/setup.ts";
import { urlsFor } from "./helpers/cluster.ts";

// `npm run db:*` against a server given by DATABASE_URL, as a DBA runs it: a database made by
// db:bootstrap and never migrated yet.

const cluster = inject("testCluster");
const name = `${cluster.template.replace("_template_", "_cli_")}_${randomBytes(4).toString("hex")}`;
const urls = urlsFor(cluster, name);

beforeAll(async () => {
  await bootstrapDatabase({ rootUrl: cluster.rootUrl, urls, passwords: cluster.passwords, logger: pino({ level: "warn" }) });
});

afterAll(async () => {
  const client = new pg.Client({ connectionString: cluster.rootUrl });
  await client.connect();
  try {
    await client.query(`drop database if exists ${client.escapeIdentifier(name)} with (force)`);
  } finally {
    await client.end();
  }
});

function dbCli(...args: string[]): Promise<{ status: number | null; output: string }> {
  const shadow = new URL(urls.owner);
  shadow.pathname = `/${name}_shadow`;
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ["src/db/cli.ts", ...args], {
      cwd: PROJECT_ROOT,
      env: {
        PATH: process.env.PATH,
        DATABASE_URL: urls.owner,
        AUTH_DATABASE_URL: urls.authenticator,
        SHADOW_DATABASE_URL: shadow.toString(),
        DATABASE_ANONYMOUS: urls.roles.anonymous,
        DATABASE_USER: urls.roles.user,
      },
    });
    let output = "";
    child.stdout.on("data", (chunk) => (output += chunk));
    child.stderr.on("data", (chunk) => (output += chunk));
    child.on("close", (status) => resolve({ status, output }));
  });
}

describe("db:watch on a database never migrated", () => {
  it("installs graphile-worker's schema before the committed migrations (some of them read jobs), then applies them all", async () => {
    const { status, output } = await dbCli("watch", "--once");
    expect(output).not.toMatch(/error/i);
    expect(status).toBe(0);
    const committed = (await readdir(path.join(PROJECT_ROOT, "migrations/committed"))).filter((file) => file.endsWith(".sql"));
    const client = new pg.Client({ connectionString: urls.owner });
    await client.connect();
    try {
      const { rows } = await client.query<{ applied: number; jobs: string | null }>(
        "select (select count(*)::int from graphile_migrate.migrations) as applied, pg_catalog.to_regclass('graphile_worker.jobs')::text as jobs",
      );
      expect(rows[0]).toEqual({ applied: committed.length, jobs: "graphile_worker.jobs" });
    } finally {
      await client.end();
    }
  });
});
