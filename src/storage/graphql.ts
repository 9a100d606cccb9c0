import type { WithPgClient } from "postgraphile/@dataplan/pg";
import { TYPES, type PgSelectSingleStep } from "postgraphile/@dataplan/pg";
import { access, context, lambda, SafeError, sideEffect, type Step } from "postgraphile/grafast";
import { sql } from "postgraphile/pg-sql2";
import { extendSchema, wrapPlans } from "postgraphile/utils";
import sanitizeFilename from "sanitize-filename";
import type { StorageSettings } from "../config.ts";
import { asCaller, type PgSettings } from "../graphql/as-caller.ts";
import type { Logger } from "../logger.ts";
import type { Storage } from "./storage.ts";

/** How long a presigned upload URL accepts its PUT. */
export const UPLOAD_URL_SECONDS = 10 * 60;
/** How long a download URL (File.downloadUrl, User.avatarUrl, Organization.logoUrl) works. */
export const DOWNLOAD_URL_SECONDS = 5 * 60;

interface Deps {
  /** Undefined: storage is not configured; uploads and download URLs answer storage_unavailable. */
  storage: Storage | undefined;
  limits: Pick<StorageSettings, "maxUploadBytes" | "allowedTypes">;
  logger: Logger;
}

interface FileRow {
  id: string;
  object_key: string;
  filename: string;
  content_type: string;
  declared_size: string;
  status: "pending" | "ready";
}

const signInFirst = () => new SafeError("Sign in to do this.", { code: "unauthenticated" });

const unavailable = () => new SafeError("File storage is not available on this server right now.", { code: "storage_unavailable" });

const MEDIA_TYPE = /^[a-z0-9][a-z0-9!#$&^_.+-]*\/[a-z0-9][a-z0-9!#$&^_.+-]*$/;

const megabytes = (bytes: number) => `${Math.round((bytes / (1024 * 1024)) * 10) / 10} MB`;

/** The longest filename kept, in UTF-8 bytes (file systems count bytes); a longer one is shortened before its extension. */
const MAX_FILENAME_BYTES = 240;

const utf8Length = (text: string) => Buffer.byteLength(text, "utf8");

/**
 * A filename as stored and offered on download: no directories, nothing a file system or a
 * header would choke on, no invisible formatting (a right-to-left override could make
 * "invoice\u202Etxt.exe" read as "invoiceexe.txt"), and short enough, with its extension kept.
 */
export function cleanFilename(raw: string): string {
  const base = (raw.split(/[\\/]/).pop() ?? "").normalize("NFC").replace(/[\p{Cf}\p{Cc}]/gu, "").replace(/\s+/g, " ").trim();
  const dot = base.lastIndexOf(".");
  const hasExtension = dot > 0 && base.length - dot <= 16;
  const extension = hasExtension ? sanitizeFilename(base.slice(dot)) : "";
  let stem = sanitizeFilename(hasExtension ? base.slice(0, dot) : base).trim();
  while (stem !== "" && utf8Length(stem) + utf8Length(extension) > MAX_FILENAME_BYTES) stem = [...stem].slice(0, -1).join("").trimEnd();
  return stem === "" ? "" : stem + extension;
}

/**
 * The checks that depend on this server's settings (what SQL cannot know): the allow-list, the
 * size limit, a clean name. Everything else (who may attach where, quotas, avatars and logos
 * being images) is app_hidden.create_upload's.
 */
function checkUpload(limits: Deps["limits"], input: { filename: string; contentType: string; size: number }) {
  const contentType = input.contentType.trim().toLowerCase();
  if (!MEDIA_TYPE.test(contentType)) {
    throw new SafeError(`contentType must be a media type like image/png (no parameters), not "${input.contentType.slice(0, 100)}".`, {
      code: "file_type_not_allowed",
    });
  }
  const family = `${contentType.split("/")[0]}/*`;
  if (!limits.allowedTypes.includes(contentType) && !limits.allowedTypes.includes(family)) {
    throw new SafeError(`Files of type ${contentType} cannot be uploaded here. Allowed: ${limits.allowedTypes.join(", ")}.`, { code: "file_type_not_allowed" });
  }
  if (!Number.isSafeInteger(input.size) || input.size < 1) {
    throw new SafeError("size must be the file's size in bytes, at least 1.", { code: "validation_failed" });
  }
  if (input.size > limits.maxUploadBytes) {
    throw new SafeError(`This file is ${megabytes(input.size)}; files may be at most ${megabytes(limits.maxUploadBytes)}.`, { code: "file_too_large" });
  }
  if (input.filename.length > 1024) {
    throw new SafeError("filename must be at most 1024 characters.", { code: "validation_failed" });
  }
  const filename = cleanFilename(input.filename);
  if (filename === "" || filename === "." || filename === "..") {
    throw new SafeError("filename must name the file (letters, digits, and the like).", { code: "validation_failed" });
  }
  return { contentType, filename, size: input.size };
}

/**
 * Files in GraphQL: createUpload and completeUpload (who may attach what where, and how much an
 * organization may store, is decided in SQL: app_hidden.create_upload and friends), and
 * short-lived presigned URLs for the rows row-level security lets the caller read:
 * File.downloadUrl, User.avatarUrl (an uploaded avatar, else the URL set on the profile) and
 * Organization.logoUrl. The bytes never pass through this server.
 */
export function makeStoragePlugins(deps: Deps): GraphileConfig.Plugin[] {
  const { storage, limits, logger } = deps;

  /** A storage call; a failure of the storage service itself is storage_unavailable, logged for operators. */
  const callStorage = async <T>(what: string, call: (storage: Storage) => Promise<T>): Promise<T> => {
    if (!storage) throw unavailable();
    try {
      return await call(storage);
    } catch (error) {
      logger.error({ err: error }, `storage failed ${what}`);
      throw unavailable();
    }
  };

  /** Null without a key, or on a server without storage (a list of files then shows no URLs rather than an error per row). */
  const presignedDownload = ([key, filename]: readonly [string | null | undefined, string | null | undefined], inline = false) =>
    key && storage ? callStorage("signing a download", (s) => s.presignDownload(key, filename ?? "file", DOWNLOAD_URL_SECONDS, { inline })) : null;

  const extension = extendSchema((build) => {
    const files = build.input.pgRegistry.pgResources.files;
    if (!files) throw new Error("the files table is missing from the schema");
    return {
      typeDefs: /* GraphQL */ `
        input CreateUploadInput {
          """What the file is for; it decides what targetId is."""
          purpose: FilePurpose!
          """The task (task_attachment), comment (comment_attachment) or organization (organization_logo); for an avatar, omit it (or give your own user id)."""
          targetId: UUID
          """The file's name; any directories are dropped, and characters file systems refuse are removed."""
          filename: String!
          """Its media type, e.g. image/png; the server's allow-list decides (STORAGE_ALLOWED_TYPES)."""
          contentType: String!
          """Its exact size in bytes: the upload URL accepts exactly this many."""
          size: BigInt!
        }
        """A header the upload request must carry, exactly as given."""
        type UploadHeader {
          name: String!
          value: String!
        }
        type CreateUploadPayload {
          """The pending file; completeUpload makes it ready."""
          file: File
          """Send the bytes here with uploadMethod and uploadHeaders, before expiresAt."""
          uploadUrl: String!
          uploadMethod: String!
          uploadHeaders: [UploadHeader!]!
          expiresAt: Datetime!
        }
        input CompleteUploadInput {
          fileId: UUID!
        }
        type CompleteUploadPayload {
          file: File
        }
        extend type Mutation {
          """
          Starts an upload: checks that you may attach a file for this purpose to the target and
          that it fits the organization's storage, then answers a URL to PUT the bytes to (valid
          10 minutes, for exactly this size and type). Then call completeUpload.
          """
          createUpload(input: CreateUploadInput!): CreateUploadPayload
          """
          Confirms an upload: the object must be in storage with the declared size and type. A
          mismatch removes it and answers upload_incomplete; calling it again for a ready file
          answers the file.
          """
          completeUpload(input: CompleteUploadInput!): CompleteUploadPayload
        }
        extend type File {
          """A URL that downloads the file (as an attachment with its filename) for 5 minutes; null while pending, or on a server without storage."""
          downloadUrl: String
        }
        extend type Organization {
          """A URL of the organization's logo, valid for 5 minutes; null without one."""
          logoUrl: String
        }
      `,
      objects: {
        Mutation: {
          plans: {
            createUpload(_$root, fieldArgs) {
              return sideEffect(
                [fieldArgs.getRaw(["input"]), context().get("withPgClient"), context().get("pgSettings")],
                async ([rawInput, withPgClient, pgSettings]) => {
                  if (!pgSettings?.["jwt.claims.user_id"]) throw signInFirst();
                  if (!storage) throw unavailable();
                  const input = rawInput as { purpose: string; targetId?: string | null; filename: string; contentType: string; size: string };
                  // BigInt arrives as a string: only plain digits ("0x10", "1e3" and " 10" are not sizes).
                  const size = /^[1-9][0-9]{0,15}$/.test(input.size) ? Number(input.size) : Number.NaN;
                  const upload = checkUpload(limits, { filename: input.filename, contentType: input.contentType, size });
                  const file = await asCaller<FileRow>(withPgClient, pgSettings ?? null, "select * from app_hidden.create_upload($1, $2, $3, $4, $5)", [
                    input.purpose,
                    input.targetId ?? null,
                    upload.filename,
                    upload.contentType,
                    upload.size,
                  ]);
                  const expiresAt = new Date(Date.now() + UPLOAD_URL_SECONDS * 1000);
                  try {
                    const signed = await callStorage("signing an upload", (s) => s.presignUpload(file.object_key, upload.contentType, upload.size, UPLOAD_URL_SECONDS));
                    return {
                      fileId: file.id,
                      uploadUrl: signed.url,
                      uploadMethod: "PUT",
                      uploadHeaders: Object.entries(signed.headers).map(([name, value]) => ({ name, value })),
                      expiresAt: expiresAt.toISOString(),
                    };
                  } catch (error) {
                    await asCaller(withPgClient, pgSettings ?? null, "select app_hidden.discard_upload($1)", [file.id]);
                    throw error;
                  }
                },
              );
            },
            completeUpload(_$root, fieldArgs) {
              return sideEffect(
                [fieldArgs.getRaw(["input", "fileId"]), context().get("withPgClient"), context().get("pgSettings")],
                async ([fileId, withPgClient, pgSettings]) => {
                  if (!pgSettings?.["jwt.claims.user_id"]) throw signInFirst();
                  if (!storage) throw unavailable();
                  const file = await asCaller<FileRow>(withPgClient, pgSettings ?? null, "select * from app_hidden.upload_to_complete($1)", [fileId]);
                  if (file.status === "ready") return { fileId: file.id };
                  const found = await callStorage("checking an upload", (s) => s.head(file.object_key));
                  if (!found) {
                    throw new SafeError("Nothing has been uploaded for this file yet: PUT the bytes to its uploadUrl first (or start again if the URL expired).", {
                      code: "upload_incomplete",
                    });
                  }
                  const declared = Number(file.declared_size);
                  const problem =
                    found.size !== declared
                      ? `it has ${found.size} bytes, not the ${declared} declared`
                      : (found.contentType ?? "").toLowerCase() !== file.content_type
                        ? `its type is ${found.contentType ?? "unknown"}, not the ${file.content_type} declared`
                        : undefined;
                  if (problem) {
                    // The object is not what was checked and allowed: it goes, and so does the row.
                    await callStorage("removing a mismatched upload", (s) => s.deleteObjects([file.object_key]));
                    await asCaller(withPgClient, pgSettings ?? null, "select app_hidden.discard_upload($1)", [file.id]);
                    throw new SafeError(`The upload was removed: ${problem}. Start again with createUpload.`, {
                      code: found.size > limits.maxUploadBytes ? "file_too_large" : "upload_incomplete",
                    });
                  }
                  await asCaller(withPgClient, pgSettings ?? null, "select id from app_hidden.complete_upload($1, $2, $3)", [file.id, found.size, found.etag ?? null]);
                  return { fileId: file.id };
                },
              );
            },
          },
        },
        CreateUploadPayload: {
          plans: {
            file: ($result: Step) => files.get({ id: access($result, "fileId") }),
          },
        },
        CompleteUploadPayload: {
          plans: {
            file: ($result: Step) => files.get({ id: access($result, "fileId") }),
          },
        },
        File: {
          plans: {
            downloadUrl($file: PgSelectSingleStep) {
              return lambda([$file.get("object_key"), $file.get("filename"), $file.get("status")], ([key, filename, status]) =>
                status === "ready" ? presignedDownload([key as string, filename as string]) : null,
              );
            },
          },
        },
        Organization: {
          plans: {
            logoUrl($organization: PgSelectSingleStep) {
              const $key = $organization.select(sql`app_hidden.logo_key(${$organization.getClassStep().alias}.id)`, TYPES.text);
              return lambda($key, (key) => (key ? presignedDownload([key, "logo"], true) : null));
            },
          },
        },
      },
    };
  }, "StoragePlugin");

  // User.avatarUrl: the uploaded avatar when there is one (row-level security on files decides,
  // as the caller), else the URL set on the profile.
  const avatar = wrapPlans({
    User: {
      avatarUrl(plan, $user) {
        const $profileUrl = plan();
        const $row = $user as PgSelectSingleStep;
        const $key = $row.select(sql`app_hidden.avatar_key(${$row.getClassStep().alias}.id)`, TYPES.text);
        return lambda([$key, $profileUrl], async ([key, profileUrl]) => {
          if (!key || !storage) return profileUrl ?? null;
          return presignedDownload([key as string, "avatar"], true);
        });
      },
    },
  });
  return [extension, { ...avatar, name: "StorageAvatarPlugin" }];
}
