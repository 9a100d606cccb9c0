import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { pino } from "pino";
import { EMBEDDED_CREDENTIALS, startEmbeddedStorage } from "../../src/storage/embedded.ts";
import { createStorage, type Storage } from "../../src/storage/storage.ts";

export interface TestStorage {
  /** S3_* variables pointing at this server, for testConfig and for jobs (process.env). */
  env: Record<string, string>;
  storage: Storage;
  stop(): Promise<void>;
}

/**
 * A real local S3-compatible server (the one `npm start` embeds) on a free port, with a bucket,
 * private to the calling test file. It checks signatures and expiry as S3 does.
 */
export async function startTestStorage(bucket = "test-files"): Promise<TestStorage> {
  const directory = await mkdtemp(path.join(tmpdir(), "oddscenes-storage-"));
  const server = await startEmbeddedStorage({ directory, bucket, logger: pino({ level: "silent" }), port: 0 });
  const env = {
    S3_ENDPOINT: server.endpoint,
    S3_BUCKET: bucket,
    S3_ACCESS_KEY_ID: EMBEDDED_CREDENTIALS.accessKeyId,
    S3_SECRET_ACCESS_KEY: EMBEDDED_CREDENTIALS.secretAccessKey,
    S3_FORCE_PATH_STYLE: "true",
  };
  const storage = createStorage({ endpoint: server.endpoint, region: "us-east-1", bucket, credentials: EMBEDDED_CREDENTIALS, forcePathStyle: true });
  return {
    env,
    storage,
    stop: async () => {
      storage.close();
      await server.stop();
      await rm(directory, { recursive: true, force: true });
    },
  };
}
