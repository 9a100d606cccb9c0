import { spawn } from "node:child_process";
import { readdir, readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { runMigrations } from "graphile-worker";
import type { Logger } from "../logger.ts";
import type { DatabaseUrls } from "./urls.ts";

export const PROJECT_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const IDENTIFIER = /^[a-z_][a-z0-9_]{0,62}$/;

/** Replaces graphile-migrate style `:PLACEHOLDERS`; every value must be a plain identifier. */
export function fillPlaceholders(sql: string, values: Record<string, string>): string {
  return sql.replace(/:([A-Z][A-Z0-9_]+)\b/g, (match, name: string) => {
    const value = values[name];
    if (value === undefined) return match;
    if (!IDENTIFIER.test(value)) throw new Error(`Placeholder ${name} must be a lower-case identifier, got "${value}"`);
    return value;
  });
}

function databaseName(url: string): string {
  return decodeURIComponent(new URL(url).pathname.slice(1));
}

function placeholderValues(urls: DatabaseUrls): Record<string, string> {
  return {
    DATABASE_NAME: databaseName(urls.owner),
    DATABASE_OWNER: urls.roles.owner,
    DATABASE_AUTHENTICATOR: urls.roles.authenticator,
    DATABASE_ANONYMOUS: urls.roles.anonymous,
    DATABASE_USER: urls.roles.user,
  };
}

async function withClient<T>(connectionString: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

/**
 * Creates the roles (db/bootstrap.sql), the database and its extensions, as a superuser.
 * Idempotent: safe on every start. A role's password is set only when one is given.
 */
export async function bootstrapDatabase(options: {
  rootUrl: string;
  urls: DatabaseUrls;
  passwords?: { owner: string; authenticator: string };
  logger: Logger;
}): Promise<void> {
  const { rootUrl, urls, passwords, logger } = options;
  const values = placeholderValues(urls);
  const rolesSql = fillPlaceholders(await readFile(path.join(PROJECT_ROOT, "db/bootstrap.sql"), "utf8"), values);
  const databaseSql = fillPlaceholders(
    await readFile(path.join(PROJECT_ROOT, "migrations/afterReset.sql"), "utf8"),
    values,
  );

  const created = await withClient(rootUrl, async (client) => {
    await client.query(rolesSql);
    if (passwords) {
      for (const [role, password] of [
        [urls.roles.owner, passwords.owner],
        [urls.roles.authenticator, passwords.authenticator],
      ] as const) {
        if (password) await client.query(`alter role ${client.escapeIdentifier(role)} with password ${client.escapeLiteral(password)}`);
      }
    }
    const { rowCount } = await client.query("select 1 from pg_catalog.pg_database where datname = $1", [values.DATABASE_NAME]);
    if (rowCount) return false;
    await client.query(
      `create database ${client.escapeIdentifier(values.DATABASE_NAME!)} owner ${client.escapeIdentifier(urls.roles.owner)}`,
    );
    return true;
  });
  if (created) logger.info({ database: values.DATABASE_NAME }, "database created");

  const rootInDatabase = new URL(rootUrl);
  rootInDatabase.pathname = `/${values.DATABASE_NAME}`;
  await withClient(rootInDatabase.toString(), (client) => client.query(databaseSql));
}

/** Installs or upgrades graphile-worker's own schema (graphile_worker.*) as the owner. */
export async function installWorkerSchema(ownerUrl: string): Promise<void> {
  await runMigrations({ connectionString: ownerUrl });
}

/** Environment for the graphile-migrate CLI: connection strings and .gmrc placeholders. */
export function migrateEnv(urls: DatabaseUrls): NodeJS.ProcessEnv {
  return {
    ...process.env,
    // .gmrc hooks run `node …`: make that this same Node 24, however we were started.
    PATH: [path.dirname(process.execPath), process.env.PATH].filter(Boolean).join(path.delimiter),
    DATABASE_URL: urls.owner,
    SHADOW_DATABASE_URL: urls.shadow,
    ROOT_DATABASE_URL: urls.root,
    DATABASE_AUTHENTICATOR: urls.roles.authenticator,
    DATABASE_ANONYMOUS: urls.roles.anonymous,
    DATABASE_USER: urls.roles.user,
  };
}

/** Path of graphile-migrate's CLI, run with this same Node. */
export function graphileMigrateBin(): string {
  const require = createRequire(import.meta.url);
  return path.join(path.dirname(require.resolve("graphile-migrate/package.json")), "dist/cli.js");
}

/**
 * Runs `graphile-migrate <args>` in the project root, forwarding its output to the logger.
 * .gmrc stays the single source of migration settings.
 */
export function runGraphileMigrate(args: string[], urls: DatabaseUrls, logger: Logger): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [graphileMigrateBin(), ...args], {
      cwd: PROJECT_ROOT,
      env: migrateEnv(urls),
      stdio: ["ignore", "pipe", "pipe"],
    });
    let output = "";
    const collect = (chunk: Buffer) => {
      output += chunk.toString();
    };
    child.stdout.on("data", collect);
    child.stderr.on("data", collect);
    child.on("error", reject);
    child.on("close", (code) => {
      const lines = output.trim();
      if (code === 0) {
        if (lines) logger.info({ migrate: lines }, `graphile-migrate ${args[0]}`);
        resolve();
      } else {
        reject(new Error(`graphile-migrate ${args.join(" ")} exited with code ${code}:\n${lines}`));
      }
    });
  });
}

/** Brings a database up to date: worker schema first (migrations may enqueue jobs), then ours. */
export async function migrateDatabase(urls: DatabaseUrls, logger: Logger): Promise<void> {
  await installWorkerSchema(urls.owner);
  await runGraphileMigrate(["migrate"], urls, logger);
}

/**
 * Hash of the newest committed migration (its `--! Hash:` header), which /readyz compares with
 * the newest hash recorded in graphile_migrate.migrations.
 */
export async function latestCommittedMigration(): Promise<string | undefined> {
  const folder = path.join(PROJECT_ROOT, "migrations/committed");
  const newest = (await readdir(folder)).filter((f) => f.endsWith(".sql")).sort().at(-1);
  if (!newest) return undefined;
  return /^--! Hash: (\S+)$/m.exec(await readFile(path.join(folder, newest), "utf8"))?.[1];
}
