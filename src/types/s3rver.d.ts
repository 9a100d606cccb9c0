// The part of @20minutes/s3rver (a local S3-compatible server, development and tests only) used
// here; the package ships no types.
declare module "@20minutes/s3rver" {
  import type { AddressInfo } from "node:net";
  import type { RequestListener, Server } from "node:http";

  interface S3rverOptions {
    address?: string;
    port?: number;
    silent?: boolean;
    directory?: string;
    resetOnClose?: boolean;
    configureBuckets?: Array<{ name: string; configs?: Array<string | Buffer> }>;
  }

  export default class S3rver {
    constructor(options?: S3rverOptions);
    httpServer: Server;
    run(): Promise<AddressInfo>;
    /** Creates the configured buckets (run() does this first). */
    configureBuckets(): Promise<void>;
    /** The request handler (s3rver is a Koa application). */
    callback(): RequestListener;
    close(): Promise<void>;
  }
}
