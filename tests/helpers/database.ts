import { randomBytes } from "node:crypto";
import pg from "pg";
import { inject } from "vitest";
import { pgSettingsFor } from "../../src/db/request-role.ts";
import type { DatabaseUrls } from "../../src/db/urls.ts";
import { urlsFor } from "./cluster.ts";

export interface TestDatabase {
  name: string;
  urls: DatabaseUrls;
  /** A superuser pool on this database, for arranging data and for `asRole`. */
  root: pg.Pool;
  drop(): Promise<void>;
}

/** A fresh copy of the migrated template, private to the calling test file. */
export async function createTestDatabase(): Promise<TestDatabase> {
  const cluster = inject("testCluster");
  const name = `${cluster.template.replace("_template_", "_")}_${randomBytes(4).toString("hex")}`;
  const admin = new pg.Client({ connectionString: cluster.rootUrl });
  await admin.connect();
  try {
    await admin.query(
      `create database ${admin.escapeIdentifier(name)} template ${admin.escapeIdentifier(cluster.template)} owner ${admin.escapeIdentifier(cluster.roles.owner)}`,
    );
  } finally {
    await admin.end();
  }
  const urls = urlsFor(cluster, name);
  const root = new pg.Pool({ connectionString: urls.root, max: 4 });
  // A connection dropped while idle (e.g. the database being dropped) is not a test failure.
  root.on("error", () => {});
  root.on("connect", (client) => client.on("error", () => {}));
  return {
    name,
    urls,
    root,
    drop: async () => {
      await root.end();
      const client = new pg.Client({ connectionString: cluster.rootUrl });
      await client.connect();
      await client.query(`drop database if exists ${client.escapeIdentifier(name)} with (force)`);
      await client.end();
    },
  };
}

export type Role = "anonymous" | "user";

/**
 * Runs `fn` in a transaction as a request would, with the API's own settings (role, claims as
 * `jwt.claims.*`, statement timeout). Rolls back unless `commit` is set.
 */
export async function asRole<T>(
  db: TestDatabase,
  role: Role,
  claims: Record<string, string>,
  fn: (client: pg.PoolClient) => Promise<T>,
  options: { commit?: boolean; requireVerifiedEmail?: boolean } = {},
): Promise<T> {
  const client = await db.root.connect();
  try {
    await client.query("begin");
    const settings = pgSettingsFor({ role, claims }, { roles: db.urls.roles, requireVerifiedEmail: options.requireVerifiedEmail ?? false, pastDueGraceSeconds: 7 * 86400 });
    await client.query("select pg_catalog.set_config(key, value, true) from json_each_text($1::json)", [JSON.stringify(settings)]);
    const result = await fn(client);
    await client.query(options.commit ? "commit" : "rollback");
    return result;
  } catch (error) {
    await client.query("rollback").catch(() => {});
    throw error;
  } finally {
    client.release();
  }
}

/**
 * Runs a statement as root with triggers off (session_replication_role = replica), to rewrite
 * history in a test: the timestamp and activity triggers would otherwise keep created_at as it was.
 */
export async function rewriteHistory(db: TestDatabase, sql: string, params: unknown[] = []): Promise<void> {
  const client = await db.root.connect();
  try {
    await client.query("begin");
    await client.query("set local session_replication_role = replica");
    await client.query(sql, params);
    await client.query("commit");
  } catch (error) {
    await client.query("rollback").catch(() => {});
    throw error;
  } finally {
    client.release();
  }
}
