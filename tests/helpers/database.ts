import { randomBytes } from "node:crypto";
import pg from "pg";
import { inject } from "vitest";
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
 * Runs `fn` in a transaction as a request would: switched to the request role with the given
 * claims as `jwt.claims.*`. Rolls back unless `commit` is set.
 */
export async function asRole<T>(
  db: TestDatabase,
  role: Role,
  claims: Record<string, string>,
  fn: (client: pg.PoolClient) => Promise<T>,
  options: { commit?: boolean } = {},
): Promise<T> {
  const client = await db.root.connect();
  try {
    await client.query("begin");
    for (const [name, value] of Object.entries(claims)) {
      await client.query("select pg_catalog.set_config($1, $2, true)", [`jwt.claims.${name}`, value]);
    }
    await client.query(`set local role ${client.escapeIdentifier(db.urls.roles[role])}`);
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
