import { loadDevSecrets, type Config } from "../config.ts";
import type { Logger } from "../logger.ts";
import { startEmbeddedPostgres } from "./embedded.ts";
import { bootstrapDatabase } from "./setup.ts";
import { embeddedUrls, externalUrls, type DatabaseUrls } from "./urls.ts";

export interface Database {
  urls: DatabaseUrls;
  embedded: boolean;
  /** Stops the embedded server when this process started it; a no-op otherwise. */
  stop(): Promise<void>;
}

/**
 * The database this process uses: the one DATABASE_URL points at (started by someone else), or
 * the embedded development server under DATA_DIR, started and bootstrapped on demand.
 */
export async function openDatabase(config: Config, logger: Logger): Promise<Database> {
  if (config.database.ownerUrl) {
    return { urls: externalUrls(config), embedded: false, stop: async () => {} };
  }
  const secrets = loadDevSecrets(config.dataDir);
  const server = await startEmbeddedPostgres({
    dataDir: config.dataDir,
    superuserPassword: secrets.superuserPassword,
    port: config.database.embeddedPort,
    logger,
  });
  const urls = embeddedUrls(config, server.port);
  try {
    await bootstrapDatabase({
      rootUrl: urls.root!,
      urls,
      passwords: { owner: secrets.ownerPassword, authenticator: secrets.authenticatorPassword },
      logger,
    });
  } catch (error) {
    await server.stop();
    throw error;
  }
  return { urls, embedded: true, stop: () => server.stop() };
}
