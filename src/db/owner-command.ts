import pg from "pg";
import { ConfigError, loadConfig, type Config } from "../config.ts";
import { createLogger } from "../logger.ts";
import { openDatabase } from "./database.ts";

/**
 * Runs an operator command (`npm run jobs`, `npm run stripe:sync`) with a connection as the owner:
 * to DATABASE_URL, or to the embedded database, joined if `npm start` runs it and started for the
 * command otherwise. Exits with the command's code; a failure prints its message, not a stack.
 */
export function runOwnerCommand(
  command: (client: pg.Client, config: Config) => Promise<number>,
  /** Checked before the database is opened; a message means the command cannot run (exit 1). */
  precheck?: (config: Config) => string | undefined,
): void {
  const main = async () => {
    const config = loadConfig(process.env, process.cwd(), "cli");
    const problem = precheck?.(config);
    if (problem) {
      console.error(problem);
      return 1;
    }
    const database = await openDatabase(config, createLogger({ level: "warn" }));
    const client = new pg.Client({ connectionString: database.urls.owner });
    try {
      await client.connect();
      return await command(client, config);
    } finally {
      await client.end().catch(() => {});
      await database.stop();
    }
  };
  main().then(
    (code) => process.exit(code),
    (error: unknown) => {
      console.error(error instanceof ConfigError || error instanceof Error ? error.message : error);
      process.exit(1);
    },
  );
}
