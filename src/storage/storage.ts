import {
  CreateBucketCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsCommand,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
} from "@aws-sdk/client-s3";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";
import { create as contentDisposition } from "content-disposition";
import type { StorageSettings } from "../config.ts";

/** What completeUpload finds in the bucket. */
export interface StoredObject {
  size: number;
  contentType: string | undefined;
  etag: string | undefined;
}

/**
 * The bucket, as this backend uses it: presigned URLs for the client's own uploads and downloads
 * (the bytes never pass through the API), HEAD to confirm an upload, and deletions and listings
 * for the jobs that keep the bucket and the `files` table in step.
 */
export interface Storage {
  readonly bucket: string;
  readonly endpoint: string | undefined;
  /**
   * A URL that accepts one PUT of exactly `size` bytes of `contentType` at `key` until it expires:
   * both are signed headers, so another size or type is refused by the storage itself.
   */
  presignUpload(key: string, contentType: string, size: number, expiresInSeconds: number): Promise<{ url: string; headers: Record<string, string> }>;
  /** A URL that downloads `key` as an attachment named `filename` until it expires. */
  presignDownload(key: string, filename: string, expiresInSeconds: number, options?: { inline?: boolean }): Promise<string>;
  /** The object at `key`, or undefined when there is none. */
  head(key: string): Promise<StoredObject | undefined>;
  /** Deletes the objects (missing ones are not an error). */
  deleteObjects(keys: string[]): Promise<void>;
  /** Every object's key and upload time, a page at a time. */
  listObjects(): AsyncGenerator<Array<{ key: string; lastModified: Date | undefined }>>;
  /** Creates the bucket unless it exists (the embedded server and tests). */
  ensureBucket(): Promise<void>;
  close(): void;
}

export function createStorage(settings: Pick<StorageSettings, "endpoint" | "region" | "bucket" | "credentials" | "forcePathStyle">): Storage {
  const client = new S3Client({
    endpoint: settings.endpoint,
    region: settings.region,
    credentials: settings.credentials,
    forcePathStyle: settings.forcePathStyle,
    // Checksums only where S3 requires them: an optional checksum would be one more thing a
    // presigned upload must send, and S3-compatible services differ in what they accept.
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
    maxAttempts: 3,
  });
  // Bucket-level requests (list, delete many, create) go to "/bucket" rather than "/bucket/":
  // the same resource to S3, but some S3-compatible servers (s3rver among them) verify the
  // signature against the path without the slash.
  client.middlewareStack.add(
    (next) => async (args) => {
      const request = args.request as { path?: unknown };
      if (typeof request?.path === "string" && /^\/[^/]+\/$/.test(request.path)) request.path = request.path.slice(0, -1);
      return next(args);
    },
    { step: "build", name: "bucketPathWithoutTrailingSlash" },
  );
  const bucket = settings.bucket;

  return {
    bucket,
    endpoint: settings.endpoint,
    async presignUpload(key, contentType, size, expiresInSeconds) {
      const command = new PutObjectCommand({ Bucket: bucket, Key: key, ContentType: contentType, ContentLength: size });
      const url = await getSignedUrl(client, command, {
        expiresIn: expiresInSeconds,
        signableHeaders: new Set(["content-type", "content-length"]),
      });
      return { url, headers: { "content-type": contentType } };
    },
    async presignDownload(key, filename, expiresInSeconds, options = {}) {
      const command = new GetObjectCommand({
        Bucket: bucket,
        Key: key,
        ResponseContentDisposition: contentDisposition(filename, { type: options.inline ? "inline" : "attachment" }),
      });
      return getSignedUrl(client, command, { expiresIn: expiresInSeconds });
    },
    async head(key) {
      try {
        const found = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
        return { size: found.ContentLength ?? 0, contentType: found.ContentType, etag: found.ETag?.replaceAll('"', "") };
      } catch (error) {
        if (error instanceof S3ServiceException && (error.$metadata.httpStatusCode === 404 || error.name === "NotFound")) return undefined;
        throw error;
      }
    },
    async deleteObjects(keys) {
      for (let i = 0; i < keys.length; i += 1000) {
        const chunk = keys.slice(i, i + 1000);
        const result = await client.send(new DeleteObjectsCommand({ Bucket: bucket, Delete: { Objects: chunk.map((Key) => ({ Key })), Quiet: true } }));
        const failed = (result.Errors ?? []).filter((error) => error.Code !== "NoSuchKey");
        if (failed.length > 0) {
          throw new Error(`storage refused to delete ${failed.length} object(s): ${failed.slice(0, 3).map((e) => `${e.Key}: ${e.Code} ${e.Message}`).join("; ")}`);
        }
      }
    },
    async *listObjects() {
      // Pages follow on from the last key (Marker): continuation tokens are opaque, and the local
      // server's cannot be made on Node 24.
      let marker: string | undefined;
      for (;;) {
        const page = await client.send(new ListObjectsCommand({ Bucket: bucket, Marker: marker, MaxKeys: 1000 }));
        const objects = (page.Contents ?? []).flatMap((object) => (object.Key ? [{ key: object.Key, lastModified: object.LastModified }] : []));
        yield objects;
        if (!page.IsTruncated || objects.length === 0) return;
        marker = objects.at(-1)!.key;
      }
    },
    async ensureBucket() {
      try {
        await client.send(new HeadBucketCommand({ Bucket: bucket }));
      } catch (error) {
        if (!(error instanceof S3ServiceException) || error.$metadata.httpStatusCode !== 404) throw error;
        await client.send(new CreateBucketCommand({ Bucket: bucket }));
      }
    },
    close() {
      client.destroy();
    },
  };
}
