import path from "node:path";
import { loadConfig, type Config } from "../config.ts";
import type { Logger } from "../logger.ts";
import { EMBEDDED_CREDENTIALS, readEmbeddedStorageState, startEmbeddedStorage } from "./embedded.ts";
import { createStorage, type Storage } from "./storage.ts";

export interface OpenedStorage {
  /** Undefined when storage is off (uploads answer storage_unavailable). */
  storage: Storage | undefined;
  /** One line for the startup banner. */
  description: string;
  stop(): Promise<void>;
}

/**
 * The storage `npm start` uses: the configured S3-compatible service; in development without
 * one, a local server started here (data under DATA_DIR/storage); otherwise none, said loudly.
 */
export async function openStorage(config: Config, logger: Logger): Promise<OpenedStorage> {
  const settings = config.storage;
  if (settings.mode === "disabled") {
    logger.warn("file storage is off: set S3_BUCKET (with S3_ENDPOINT for a service other than AWS, and its keys) to allow uploads");
    return { storage: undefined, description: "off (set S3_BUCKET to allow uploads)", stop: async () => {} };
  }
  if (settings.mode === "s3") {
    const storage = createStorage(settings);
    // Not fatal: the API serves everything else, and uploads say storage_unavailable until it works.
    await storage.ensureBucket().catch((error: unknown) =>
      logger.error({ err: error, bucket: settings.bucket }, "the storage bucket cannot be reached or created; uploads will fail until it can"),
    );
    return {
      storage,
      description: `bucket ${settings.bucket}${settings.endpoint ? ` at ${new URL(settings.endpoint).host}` : ` (AWS ${settings.region})`}`,
      stop: async () => storage.close(),
    };
  }
  const embedded = await startEmbeddedStorage({ directory: settings.embeddedDir, bucket: settings.bucket, logger });
  const storage = createStorage({ ...settings, endpoint: embedded.endpoint, credentials: EMBEDDED_CREDENTIALS, forcePathStyle: true });
  return {
    storage,
    description: `embedded S3 at ${embedded.endpoint}, objects in ${path.relative(process.cwd(), settings.embeddedDir) || "."}/`,
    stop: async () => {
      storage.close();
      await embedded.stop();
    },
  };
}

let shared: Storage | undefined;

/** The in-process worker's jobs use the API's storage (in development, the embedded server it started). */
export function shareStorageWithJobs(storage: Storage | undefined): void {
  shared = storage;
}

/**
 * The storage a job uses: the one shared by this process, else the configured service, else (in
 * development, under `npm run worker`) the embedded server `npm start` runs. Undefined on a
 * server without storage. Throws when the embedded server is not running, so the job fails and
 * is retried later instead of forgetting its objects.
 */
export function jobStorage(): Storage | undefined {
  if (shared) return shared;
  const config = loadConfig(process.env, process.cwd(), "worker");
  if (config.storage.mode === "disabled") return undefined;
  if (config.storage.mode === "s3") return (shared = createStorage(config.storage));
  const state = readEmbeddedStorageState(config.storage.embeddedDir);
  if (!state) throw new Error("the embedded storage is not running (npm start runs it); the job will be retried");
  return (shared = createStorage({ ...config.storage, ...state, credentials: EMBEDDED_CREDENTIALS, forcePathStyle: true }));
}
