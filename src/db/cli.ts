import { spawn } from "node:child_process";
import { ConfigError, loadConfig } from "../config.ts";
import { createLogger } from "../logger.ts";
import { openDatabase } from "./database.ts";
import { bootstrapDatabase, graphileMigrateBin, installWorkerSchema, migrateEnv, PROJECT_ROOT } from "./setup.ts";
import { externalUrls } from "./urls.ts";

const USAGE = `Usage: npm run db:<command> [-- graphile-migrate options]

  db:migrate     apply committed migrations (worker schema first)
  db:watch       re-run migrations/current.sql on every save (development)
  db:commit      commit current.sql as the next migration (-- -m "message")
  db:uncommit    move the newest committed migration back into current.sql (development only)
  db:reset       drop and rebuild the database from the migrations (-- --erase)
  db:status      show pending migrations (exit code: 1 = unapplied, 2 = current.sql not empty)
  db:bootstrap   create the roles and database as a superuser (needs ROOT_DATABASE_URL)

Without DATABASE_URL these use the embedded development database (started if needed).`;

const MIGRATE_COMMANDS = new Set(["migrate", "watch", "commit", "uncommit", "reset", "status", "compile", "run"]);
/** Commands that run migrations on the shadow database (the embedded setup has one of its own). */
const NEEDS_SHADOW = new Set(["watch", "commit", "uncommit"]);
/**
 * Commands that may run committed migrations on the database itself: graphile-worker's schema
 * goes in first, since migrations may enqueue or read jobs (a fresh database's first db:watch
 * applies every committed migration before current.sql).
 */
const WORKER_SCHEMA_FIRST = new Set(["migrate", "reset", "watch", "commit", "uncommit"]);

function graphileMigrate(args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [graphileMigrateBin(), ...args], { cwd: PROJECT_ROOT, env, stdio: "inherit" });
    child.on("error", reject);
    child.on("close", (code) => resolve(code ?? 1));
  });
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;

  // graphile-migrate's afterReset hook: it passes the fresh database as GM_DBURL.
  if (command === "install-worker-schema") {
    const url = process.env.GM_DBURL;
    if (!url) throw new Error("install-worker-schema runs from graphile-migrate hooks, which set GM_DBURL");
    await installWorkerSchema(url);
    return 0;
  }
  if (!command || (!MIGRATE_COMMANDS.has(command) && command !== "bootstrap")) {
    console.error(USAGE);
    return command ? 64 : 0;
  }

  const config = loadConfig(process.env, process.cwd(), "cli");
  const logger = createLogger({ level: config.logLevel === "info" ? "warn" : config.logLevel, pretty: config.env !== "production" && process.stdout.isTTY });

  if (command === "bootstrap") {
    if (!config.database.ownerUrl) {
      console.log("The embedded database bootstraps itself on `npm start`; db:bootstrap is for DATABASE_URL servers.");
      return 0;
    }
    const urls = externalUrls(config);
    if (!urls.root) throw new ConfigError(["ROOT_DATABASE_URL: db:bootstrap needs a superuser connection"]);
    // The role passwords are the ones in DATABASE_URL and AUTH_DATABASE_URL, when they carry one.
    const password = (url: string) => decodeURIComponent(new URL(url).password);
    const passwords = { owner: password(urls.owner), authenticator: password(urls.authenticator) };
    await bootstrapDatabase({ rootUrl: urls.root, urls, passwords, logger });
    console.log(`Roles ${Object.values(urls.roles).join(", ")} and database ready.`);
    return 0;
  }

  if (config.database.ownerUrl && !config.database.shadowUrl && NEEDS_SHADOW.has(command)) {
    throw new ConfigError([
      `SHADOW_DATABASE_URL: db:${command} checks migrations on a scratch database first; set it to one graphile-migrate may drop and recreate (e.g. …/oddscenes_shadow)`,
    ]);
  }
  const database = await openDatabase(config, logger);
  try {
    if (WORKER_SCHEMA_FIRST.has(command)) await installWorkerSchema(database.urls.owner);
    const env = migrateEnv(database.urls);
    if (!env.SHADOW_DATABASE_URL && (command === "status" || command === "migrate")) {
      // status and migrate never open the shadow database, but graphile-migrate's settings want one named.
      const unused = new URL(database.urls.owner);
      unused.pathname = `${unused.pathname}_shadow`;
      env.SHADOW_DATABASE_URL = unused.toString();
    }
    return await graphileMigrate([command, ...rest], env);
  } finally {
    await database.stop();
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error instanceof ConfigError ? error.message : error instanceof Error ? error.message : error);
    process.exit(1);
  },
);
