import { chmod, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import pg from "pg";
import { pino } from "pino";
import type { TestProject } from "vitest/node";
import { startEmbeddedPostgres, type EmbeddedServer } from "../src/db/embedded.ts";
import { bootstrapDatabase, migrateDatabase } from "../src/db/setup.ts";
import { TEST_PASSWORDS, TEST_ROLES, urlsFor, type TestCluster } from "./helpers/cluster.ts";

/**
 * Starts a throwaway embedded PostgreSQL (or uses TEST_DATABASE_URL, e.g. the machine's
 * PostgreSQL 15), migrates one template database, and hands it to the test files, each of which
 * clones its own copy so files run in parallel without sharing state.
 */
export default async function setup(project: TestProject) {
  const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? "warn" });
  let embedded: EmbeddedServer | undefined;
  let dataDir: string | undefined;
  let rootUrl = process.env.TEST_DATABASE_URL;
  if (!rootUrl) {
    dataDir = await mkdtemp(path.join(tmpdir(), "oddscenes-test-"));
    await chmod(dataDir, 0o755);
    const superuserPassword = "superuser-test-password";
    embedded = await startEmbeddedPostgres({ dataDir, superuserPassword, logger });
    rootUrl = `postgres://postgres:${superuserPassword}@127.0.0.1:${embedded.port}/postgres`;
  }

  const template = `oddscenes_test_template_${process.pid}`;
  const cluster: TestCluster = { rootUrl, template, roles: TEST_ROLES, passwords: TEST_PASSWORDS };
  const urls = urlsFor(cluster, template);
  await bootstrapDatabase({ rootUrl, urls, passwords: TEST_PASSWORDS, logger });
  await migrateDatabase(urls, logger);
  project.provide("testCluster", cluster);

  return async () => {
    const client = new pg.Client({ connectionString: rootUrl });
    await client.connect();
    const { rows } = await client.query<{ datname: string }>(
      "select datname from pg_catalog.pg_database where datname like $1",
      [`oddscenes_test_%${process.pid}%`],
    );
    for (const { datname } of rows) {
      await client.query(`drop database if exists ${client.escapeIdentifier(datname)} with (force)`);
    }
    await client.end();
    if (embedded) await embedded.stop();
    if (dataDir) await rm(dataDir, { recursive: true, force: true });
  };
}
