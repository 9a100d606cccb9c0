import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer as createHttpServer } from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import type { Logger } from "../logger.ts";

/** The credentials the local S3-compatible server accepts (its built-in account). */
export const EMBEDDED_CREDENTIALS = { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" } as const;

/** Where the embedded storage server listens, so `npm run worker` finds it in development. */
export interface EmbeddedStorageState {
  endpoint: string;
  bucket: string;
}

export interface EmbeddedStorage extends EmbeddedStorageState {
  stop(): Promise<void>;
}

/** The same port each time when it is free, so upload and download URLs survive a restart. */
const PREFERRED_PORT = 54330;

/** Browsers upload and download cross-origin (the frontend is elsewhere): any origin may, in development. */
const DEVELOPMENT_CORS = `<CORSConfiguration>
  <CORSRule>
    <AllowedOrigin>*</AllowedOrigin>
    <AllowedMethod>GET</AllowedMethod>
    <AllowedMethod>PUT</AllowedMethod>
    <AllowedMethod>HEAD</AllowedMethod>
    <AllowedHeader>*</AllowedHeader>
    <ExposeHeader>ETag</ExposeHeader>
    <MaxAgeSeconds>3000</MaxAgeSeconds>
  </CORSRule>
</CORSConfiguration>`;

const statePath = (directory: string) => path.join(directory, "server.json");

export function readEmbeddedStorageState(directory: string): EmbeddedStorageState | undefined {
  const file = statePath(directory);
  return existsSync(file) ? (JSON.parse(readFileSync(file, "utf8")) as EmbeddedStorageState) : undefined;
}

/**
 * Development's S3: a local S3-compatible server (s3rver, a development dependency) on
 * 127.0.0.1 with its objects under `directory`, and the bucket made. It checks signatures and
 * expiry like S3, so presigned URLs behave as they will in production.
 */
export async function startEmbeddedStorage(options: { directory: string; bucket: string; logger: Logger; port?: number }): Promise<EmbeddedStorage> {
  const { default: S3rver } = await import("@20minutes/s3rver");
  mkdirSync(options.directory, { recursive: true });
  const s3rver = new S3rver({ silent: true, directory: path.join(options.directory, "objects"), configureBuckets: [{ name: options.bucket, configs: [DEVELOPMENT_CORS] }] });
  await s3rver.configureBuckets();
  // Our own HTTP server around s3rver's request handler, so a taken port is an error we handle
  // (s3rver's own run() leaves it as an unhandled 'error' event): the preferred port, else any.
  const httpServer = createHttpServer(s3rver.callback());
  const listen = (port: number) =>
    new Promise<number>((resolve, reject) => {
      httpServer.once("error", reject);
      httpServer.listen(port, "127.0.0.1", () => {
        httpServer.off("error", reject);
        resolve((httpServer.address() as AddressInfo).port);
      });
    });
  let port: number;
  try {
    port = await listen(options.port ?? PREFERRED_PORT);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EADDRINUSE" || options.port !== undefined) throw error;
    options.logger.info(`port ${PREFERRED_PORT} is taken; the embedded storage takes a free one`);
    port = await listen(0);
  }
  const state: EmbeddedStorageState = { endpoint: `http://127.0.0.1:${port}`, bucket: options.bucket };
  writeFileSync(statePath(options.directory), JSON.stringify(state, null, 2) + "\n");
  options.logger.info({ endpoint: state.endpoint, directory: options.directory }, "embedded storage started");
  return {
    ...state,
    async stop() {
      httpServer.closeAllConnections();
      await new Promise<void>((resolve) => httpServer.close(() => resolve()));
    },
  };
}
