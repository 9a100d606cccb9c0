import { createHash } from "node:crypto";
import { PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cleanFilename } from "../src/storage/graphql.ts";
import { buildTestApp, type TestApp } from "./helpers/app.ts";
import { graphql, RELAXED_LIMITS, signUp } from "./helpers/auth.ts";
import { createTestDatabase, type TestDatabase } from "./helpers/database.ts";
import { runJobs } from "./helpers/jobs.ts";
import { startTestStorage, type TestStorage } from "./helpers/storage.ts";
import { arrangeTenants, gqlError, gqlOk, type Tenants } from "./helpers/tenants.ts";

// Files against a real local S3-compatible server (started here, no mocks): presigned uploads
// with plain fetch, completion checked with HEAD, presigned downloads, and the jobs that keep the
// bucket and the files table in step.

let db: TestDatabase;
let s3: TestStorage;
let api: TestApp;
let t: Tenants;

const MAX_UPLOAD = 64 * 1024;

beforeAll(async () => {
  db = await createTestDatabase();
  s3 = await startTestStorage();
  // Jobs (run in this process by runJobs) find the storage the way npm run worker does: the environment.
  Object.assign(process.env, s3.env);
  api = await buildTestApp(db, { env: { ...RELAXED_LIMITS, ...s3.env, STORAGE_MAX_UPLOAD: `${MAX_UPLOAD}b` }, storage: s3.storage });
  t = await arrangeTenants(api, db, "files");
});

afterAll(async () => {
  await api?.close();
  await s3?.stop();
  await db?.drop();
});

const CREATE_UPLOAD = `mutation ($input: CreateUploadInput!) {
  createUpload(input: $input) { file { rowId status filename contentType declaredSize downloadUrl } uploadUrl uploadMethod uploadHeaders { name value } expiresAt }
}`;
const COMPLETE_UPLOAD = `mutation ($id: UUID!) { completeUpload(input: { fileId: $id }) { file { rowId status size checksum downloadUrl } } }`;

interface Upload {
  file: { rowId: string; status: string; filename: string; contentType: string; declaredSize: string; downloadUrl: string | null };
  uploadUrl: string;
  uploadMethod: string;
  uploadHeaders: Array<{ name: string; value: string }>;
  expiresAt: string;
}

async function createUpload(token: string, input: Record<string, unknown>): Promise<Upload> {
  return (await gqlOk<{ createUpload: Upload }>(api, token, CREATE_UPLOAD, { input })).createUpload;
}

function put(upload: Upload, body: Uint8Array, headers: Record<string, string> = {}) {
  return fetch(upload.uploadUrl, {
    method: upload.uploadMethod,
    body,
    headers: { ...Object.fromEntries(upload.uploadHeaders.map((h) => [h.name, h.value])), ...headers },
  });
}

async function attach(token: string, taskId: string, bytes: Uint8Array, filename = "notes.txt") {
  const upload = await createUpload(token, { purpose: "task_attachment", targetId: taskId, filename, contentType: "text/plain", size: String(bytes.length) });
  expect((await put(upload, bytes)).status).toBe(200);
  const done = await gqlOk(api, token, COMPLETE_UPLOAD, { id: upload.file.rowId });
  return done.completeUpload.file as { rowId: string; status: string; size: string; checksum: string; downloadUrl: string };
}

const objectKeyOf = async (fileId: string) => (await db.root.query("select object_key from app_public.files where id = $1", [fileId])).rows[0]?.object_key as string | undefined;

/** A verified user who owns a new organization (on the free plan) with a project and a task. */
async function ownOrganization(slug: string) {
  const owner = await signUp(api);
  await db.root.query("update app_public.users set email_verified_at = now() where id = $1", [owner.id]);
  const org = await gqlOk(api, owner.accessToken, `mutation ($slug: String!) { createOrganization(input: { name: $slug, slug: $slug }) { organization { rowId } } }`, { slug });
  const orgId: string = org.createOrganization.organization.rowId;
  const project = await gqlOk(api, owner.accessToken, `mutation ($o: UUID!) { createProject(input: { project: { organizationId: $o, name: "P" } }) { project { rowId } } }`, { o: orgId });
  const task = await gqlOk(api, owner.accessToken, `mutation ($p: UUID!) { createTask(input: { task: { projectId: $p, title: "T" } }) { task { rowId } } }`, {
    p: project.createProject.project.rowId,
  });
  return { owner, orgId, taskId: task.createTask.task.rowId as string };
}

describe("uploading and downloading through presigned URLs", () => {
  it("uploads straight to storage, completes, and downloads the same bytes under the original filename", async () => {
    const bytes = new TextEncoder().encode("The press release, second draft.\n");
    const upload = await createUpload(t.member.accessToken, {
      purpose: "task_attachment",
      targetId: t.acme.taskId,
      filename: "Press release.txt",
      contentType: "text/plain",
      size: String(bytes.length),
    });
    expect(upload.file).toMatchObject({ status: "pending", filename: "Press release.txt", contentType: "text/plain", declaredSize: String(bytes.length), downloadUrl: null });
    expect(upload.uploadMethod).toBe("PUT");
    expect(upload.uploadHeaders).toEqual([{ name: "content-type", value: "text/plain" }]);
    const validFor = new Date(upload.expiresAt).getTime() - Date.now();
    expect(validFor).toBeGreaterThan(9 * 60_000);
    expect(validFor).toBeLessThanOrEqual(10 * 60_000);
    // The key is the server's: the organization, then a fresh id; never shown in GraphQL.
    expect(await objectKeyOf(upload.file.rowId)).toMatch(new RegExp(`^${t.acme.id}/[0-9a-f-]{36}$`));

    // Not uploaded yet: completing says so, and the file stays pending.
    expect((await gqlError(api, t.member.accessToken, COMPLETE_UPLOAD, { id: upload.file.rowId })).code).toBe("upload_incomplete");

    expect((await put(upload, bytes)).status).toBe(200);
    const done = (await gqlOk(api, t.member.accessToken, COMPLETE_UPLOAD, { id: upload.file.rowId })).completeUpload.file;
    expect(done).toMatchObject({ rowId: upload.file.rowId, status: "ready", size: String(bytes.length) });
    expect(done.checksum).toBe(createHash("md5").update(bytes).digest("hex"));
    // Completing again answers the same file.
    expect((await gqlOk(api, t.member.accessToken, COMPLETE_UPLOAD, { id: upload.file.rowId })).completeUpload.file.status).toBe("ready");

    const download = await fetch(done.downloadUrl);
    expect(download.status).toBe(200);
    expect(new Uint8Array(await download.arrayBuffer())).toEqual(bytes);
    expect(download.headers.get("content-disposition")).toBe('attachment; filename="Press release.txt"');

    // Coworkers find it on the task.
    const seen = await gqlOk(api, t.owner.accessToken, `query ($id: UUID!) { task(rowId: $id) { attachments { nodes { rowId filename downloadUrl } } } }`, { id: t.acme.taskId });
    expect(seen.task.attachments.nodes.map((f: { rowId: string }) => f.rowId)).toContain(upload.file.rowId);
    expect(seen.task.attachments.nodes.every((f: { downloadUrl: string }) => f.downloadUrl.startsWith(s3.env.S3_ENDPOINT!))).toBe(true);
  });

  it("refuses, in the storage itself, a body larger or of another type than was declared", async () => {
    const upload = await createUpload(t.member.accessToken, { purpose: "task_attachment", targetId: t.acme.taskId, filename: "small.txt", contentType: "text/plain", size: "10" });
    expect((await put(upload, new Uint8Array(11))).status).toBe(403);
    expect((await put(upload, new Uint8Array(10), { "content-type": "text/html" })).status).toBe(403);
    expect((await gqlError(api, t.member.accessToken, COMPLETE_UPLOAD, { id: upload.file.rowId })).code).toBe("upload_incomplete");
  });

  it("an expired URL is refused by the storage", async () => {
    const url = await s3.storage.presignUpload(`${t.acme.id}/expired-check`, "text/plain", 3, 1);
    await new Promise((resolve) => setTimeout(resolve, 2500));
    const res = await fetch(url.url, { method: "PUT", body: "abc", headers: url.headers });
    expect(res.status).toBe(403);
    expect(await res.text()).toContain("Request has expired");
  });

  it("an object that is not what was declared is removed at completion, row and all", async () => {
    const upload = await createUpload(t.member.accessToken, { purpose: "task_attachment", targetId: t.acme.taskId, filename: "swap.txt", contentType: "text/plain", size: "5" });
    const key = (await objectKeyOf(upload.file.rowId))!;
    // Written around the URL (as a misbehaving client with the bucket's keys could): 9 bytes, not 5.
    const client = new S3Client({ endpoint: s3.env.S3_ENDPOINT, region: "us-east-1", forcePathStyle: true, credentials: { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" } });
    await client.send(new PutObjectCommand({ Bucket: s3.env.S3_BUCKET, Key: key, Body: "too long!", ContentType: "text/plain" }));
    client.destroy();
    const refused = await gqlError(api, t.member.accessToken, COMPLETE_UPLOAD, { id: upload.file.rowId });
    expect(refused.code).toBe("upload_incomplete");
    expect(refused.message).toContain("9 bytes, not the 5 declared");
    expect(await s3.storage.head(key)).toBeUndefined();
    expect(await objectKeyOf(upload.file.rowId)).toBeUndefined();
  });
});

describe("what may be uploaded", () => {
  const input = (overrides: Record<string, unknown>) => ({
    input: { purpose: "task_attachment", targetId: t.acme.taskId, filename: "a.txt", contentType: "text/plain", size: "10", ...overrides },
  });

  it("refuses types off the allow-list, sizes over the limit or under one byte, with stable codes", async () => {
    expect((await gqlError(api, t.member.accessToken, CREATE_UPLOAD, input({ contentType: "application/x-msdownload" }))).code).toBe("file_type_not_allowed");
    expect((await gqlError(api, t.member.accessToken, CREATE_UPLOAD, input({ contentType: "text/plain; charset=utf-8" }))).code).toBe("file_type_not_allowed");
    const tooLarge = await gqlError(api, t.member.accessToken, CREATE_UPLOAD, input({ size: String(MAX_UPLOAD + 1) }));
    expect(tooLarge.code).toBe("file_too_large");
    expect(tooLarge.message).toContain("at most 0.1 MB");
    expect((await gqlError(api, t.member.accessToken, CREATE_UPLOAD, input({ size: "0" }))).code).toBe("validation_failed");
    for (const size of ["0x10", "1e3", " 10", "-1", "1.5"]) {
      expect((await gqlError(api, t.member.accessToken, CREATE_UPLOAD, input({ size }))).code, size).toBe("validation_failed");
    }
    expect((await gqlError(api, t.member.accessToken, CREATE_UPLOAD, input({ filename: `${"x".repeat(2000)}.txt` }))).code).toBe("validation_failed");
    expect((await gqlError(api, t.member.accessToken, CREATE_UPLOAD, input({ filename: "../" }))).code).toBe("validation_failed");
    const { rows } = await db.root.query("select count(*)::int as n from app_public.files where filename = 'a.txt'");
    expect(rows[0].n).toBe(0);
  });

  it("keeps only a safe name: no directories, no characters file systems or headers choke on", async () => {
    expect(cleanFilename("../../etc/passwd")).toBe("passwd");
    expect(cleanFilename("C:\\Users\\ada\\Q3 report?.pdf")).toBe("Q3 report.pdf");
    expect(cleanFilename("bad\u0000name\r\n.txt")).toBe("badname.txt");
    const upload = await createUpload(t.member.accessToken, input({ filename: "../../secret/été:plan.txt" }).input);
    expect(upload.file.filename).toBe("étéplan.txt");
  });

  it("only where the caller may attach: a task of their organization, their own comment, their own avatar, a logo they manage", async () => {
    const task = input({}).input;
    expect((await gqlError(api, t.outsider.accessToken, CREATE_UPLOAD, { input: task })).code).toBe("not_found");
    expect((await gqlError(api, t.member.accessToken, CREATE_UPLOAD, input({ targetId: t.globex.taskId }))).code).toBe("not_found");
    expect((await gqlError(api, undefined, CREATE_UPLOAD, { input: task })).code).toBe("unauthenticated");
    expect((await gqlError(api, t.admin.accessToken, CREATE_UPLOAD, input({ purpose: "comment_attachment", targetId: t.acme.commentId }))).code).toBe("forbidden");
    await createUpload(t.member.accessToken, input({ purpose: "comment_attachment", targetId: t.acme.commentId }).input);
    expect((await gqlError(api, t.member.accessToken, CREATE_UPLOAD, input({ purpose: "organization_logo", targetId: t.acme.id, contentType: "image/png" }))).code).toBe(
      "forbidden",
    );
    expect((await gqlError(api, t.member.accessToken, CREATE_UPLOAD, input({ purpose: "avatar", targetId: t.owner.id, contentType: "image/png" }))).code).toBe("forbidden");
  });
});

describe("who sees files and their URLs", () => {
  let fileId: string;
  beforeAll(async () => {
    fileId = (await attach(t.member.accessToken, t.acme.taskId, new TextEncoder().encode("members only"))).rowId;
  });

  it("members of the organization and site admins get a download URL; outsiders and anonymous see no file at all", async () => {
    const query = `query ($id: UUID!) { file(rowId: $id) { filename downloadUrl } }`;
    for (const viewer of ["owner", "admin", "member", "siteAdmin"] as const) {
      const seen = await gqlOk(api, t[viewer].accessToken, query, { id: fileId });
      expect(seen.file.downloadUrl, viewer).toMatch(/X-Amz-Signature=/);
    }
    for (const token of [t.outsider.accessToken, undefined]) {
      const res = await graphql(api, query, { token, variables: { id: fileId } });
      expect(res.body.data?.file ?? null).toBeNull();
    }
    const listed = await gqlOk(api, t.outsider.accessToken, "{ files { totalCount } }");
    expect(listed.files.totalCount).toBe(0);
  });

  it("a pending upload deleted by its uploader loses its object once its URL could no longer be used, not before", async () => {
    const upload = await createUpload(t.member.accessToken, { purpose: "task_attachment", targetId: t.acme.taskId, filename: "gone.txt", contentType: "text/plain", size: "4" });
    const key = (await objectKeyOf(upload.file.rowId))!;
    await gqlOk(api, t.member.accessToken, `mutation ($id: UUID!) { deleteFile(input: { rowId: $id }) { clientMutationId } }`, { id: upload.file.rowId });
    // The URL still works for a while: a PUT after the row is gone lands...
    expect((await put(upload, new TextEncoder().encode("late"))).status).toBe(200);
    await runJobs(db);
    // ...and its deletion waits until the upload could no longer have been completed.
    const { rows } = await db.root.query(
      "select run_at > now() + interval '55 minutes' as later from graphile_worker._private_jobs where payload::jsonb->'keys' ? $1",
      [key],
    );
    expect(rows).toEqual([{ later: true }]);
    await db.root.query("update graphile_worker._private_jobs set run_at = now() where payload::jsonb->'keys' ? $1", [key]);
    await runJobs(db);
    expect(await s3.storage.head(key)).toBeUndefined();
  });

  it("a pending upload is the uploader's alone", async () => {
    const upload = await createUpload(t.member.accessToken, { purpose: "task_attachment", targetId: t.acme.taskId, filename: "wip.txt", contentType: "text/plain", size: "3" });
    const query = `query ($id: UUID!) { file(rowId: $id) { status } }`;
    expect((await gqlOk(api, t.member.accessToken, query, { id: upload.file.rowId })).file.status).toBe("pending");
    const res = await graphql(api, query, { token: t.owner.accessToken, variables: { id: upload.file.rowId } });
    expect(res.body.data?.file ?? null).toBeNull();
    // Nobody else can complete it either.
    expect((await gqlError(api, t.owner.accessToken, COMPLETE_UPLOAD, { id: upload.file.rowId })).code).toBe("file_not_found");
  });

  it("the object key, and the rows' writes, are not in the API", async () => {
    const fields = await gqlOk(api, t.member.accessToken, `{ __type(name: "File") { fields { name } } }`);
    expect(fields.__type.fields.map((f: { name: string }) => f.name)).not.toContain("objectKey");
    const mutations = await gqlOk(api, t.member.accessToken, `{ __schema { mutationType { fields { name } } } }`);
    const names = mutations.__schema.mutationType.fields.map((f: { name: string }) => f.name);
    expect(names).toEqual(expect.arrayContaining(["createUpload", "completeUpload", "deleteFile"]));
    expect(names.filter((name: string) => /^(create|update)File/.test(name))).toEqual([]);
  });

  it("avatars go to coworkers as short-lived URLs; logos to members; a new one replaces the old", async () => {
    const png = new Uint8Array([0x89, 0x50, 0x4e, 0x47, 1, 2, 3, 4]);
    const avatarUrlOf = async (viewer: "owner" | "member", userId: string) =>
      (await gqlOk(api, t[viewer].accessToken, `query ($id: UUID!) { user(rowId: $id) { avatarUrl } }`, { id: userId })).user?.avatarUrl as string | null;
    const uploadAvatar = async () => {
      const upload = await createUpload(t.member.accessToken, { purpose: "avatar", filename: "me.png", contentType: "image/png", size: String(png.length) });
      expect((await put(upload, png)).status).toBe(200);
      await gqlOk(api, t.member.accessToken, COMPLETE_UPLOAD, { id: upload.file.rowId });
      return upload.file.rowId;
    };
    const first = await uploadAvatar();
    const url = await avatarUrlOf("owner", t.member.id);
    expect(url).toMatch(/X-Amz-Expires=300/);
    const image = await fetch(url!);
    expect(image.status).toBe(200);
    expect(image.headers.get("content-disposition")).toMatch(/^inline/);
    expect(new Uint8Array(await image.arrayBuffer())).toEqual(png);
    const outsider = await graphql(api, `query ($id: UUID!) { user(rowId: $id) { avatarUrl } }`, { token: t.outsider.accessToken, variables: { id: t.member.id } });
    expect(outsider.body.data?.user ?? null).toBeNull();

    const firstKey = (await objectKeyOf(first))!;
    await uploadAvatar();
    expect(await objectKeyOf(first)).toBeUndefined();
    await runJobs(db);
    expect(await s3.storage.head(firstKey)).toBeUndefined();

    const logo = await createUpload(t.admin.accessToken, { purpose: "organization_logo", targetId: t.acme.id, filename: "logo.png", contentType: "image/png", size: String(png.length) });
    expect((await put(logo, png)).status).toBe(200);
    await gqlOk(api, t.admin.accessToken, COMPLETE_UPLOAD, { id: logo.file.rowId });
    const org = await gqlOk(api, t.member.accessToken, `query ($id: UUID!) { organization(rowId: $id) { logoUrl } }`, { id: t.acme.id });
    expect((await fetch(org.organization.logoUrl)).status).toBe(200);
  });
});

describe("deleting", () => {
  it("the uploader or a manager deletes a file, and its object goes with it; other members cannot", async () => {
    const file = await attach(t.member.accessToken, t.acme.taskId, new TextEncoder().encode("to be deleted"));
    const key = (await objectKeyOf(file.rowId))!;
    const remove = `mutation ($id: UUID!) { deleteFile(input: { rowId: $id }) { file { rowId } } }`;
    const other = await attach(t.owner.accessToken, t.acme.taskId, new TextEncoder().encode("the owner's"));
    expect((await gqlError(api, t.member.accessToken, remove, { id: other.rowId })).code).toBe("not_found");
    expect((await gqlOk(api, t.admin.accessToken, remove, { id: file.rowId })).deleteFile.file.rowId).toBe(file.rowId);
    expect(await s3.storage.head(key)).toBeDefined();
    await runJobs(db);
    expect(await s3.storage.head(key)).toBeUndefined();
  });

  it("deleting a task removes its attachments' objects; deleting an organization removes all of its objects", async () => {
    const { createTask } = await gqlOk(
      api,
      t.member.accessToken,
      `mutation ($p: UUID!) { createTask(input: { task: { projectId: $p, title: "Short-lived" } }) { task { rowId } } }`,
      { p: t.acme.projectId },
    );
    const files = [
      await attach(t.member.accessToken, createTask.task.rowId, new TextEncoder().encode("one")),
      await attach(t.member.accessToken, createTask.task.rowId, new TextEncoder().encode("two")),
    ];
    const keys = await Promise.all(files.map((f) => objectKeyOf(f.rowId)));
    await gqlOk(api, t.member.accessToken, `mutation ($id: UUID!) { deleteTask(input: { rowId: $id }) { task { rowId } } }`, { id: createTask.task.rowId });
    await runJobs(db);
    for (const key of keys) expect(await s3.storage.head(key!)).toBeUndefined();

    // A whole organization: its owner deletes it (on the free plan, nothing to cancel).
    const { owner, orgId, taskId } = await ownOrganization("gone-soon-files");
    const attached = await attach(owner.accessToken, taskId, new TextEncoder().encode("org file"));
    const orgKey = (await objectKeyOf(attached.rowId))!;
    await gqlOk(api, owner.accessToken, `mutation ($o: UUID!) { deleteOrganization(input: { organizationId: $o }) { organization { rowId } } }`, { o: orgId });
    await runJobs(db);
    expect(await s3.storage.head(orgKey)).toBeUndefined();
  });
});

describe("limits and usage", () => {
  it("an organization's plan caps its storage, uploads in progress included; entitlements and the usage report show it", async () => {
    const { owner, orgId, taskId } = await ownOrganization("quota-co-files");
    // The free plan with a 100-byte limit, for this test only.
    await db.root.query("update app_public.plans set max_storage_bytes = 100 where is_default");
    try {
      await attach(owner.accessToken, taskId, new Uint8Array(60));
      await createUpload(owner.accessToken, { purpose: "task_attachment", targetId: taskId, filename: "pending.txt", contentType: "text/plain", size: "30" });
      const refused = await gqlError(api, owner.accessToken, CREATE_UPLOAD, {
        input: { purpose: "task_attachment", targetId: taskId, filename: "more.txt", contentType: "text/plain", size: "11" },
      });
      expect(refused.code).toBe("storage_quota_exceeded");
      expect(refused.message).toMatch(/Free plan stores up to 100 bytes; 90 bytes is used/);
      const entitlements = await gqlOk(api, owner.accessToken, `query ($o: UUID!) { organization(rowId: $o) { entitlements { maxStorageBytes storageBytes canUpload } } }`, {
        o: orgId,
      });
      expect(entitlements.organization.entitlements).toEqual({ maxStorageBytes: "100", storageBytes: "90", canUpload: true });
      // An upload in progress holds its space for an hour (its URL lives 10 minutes), then neither holds nor completes.
      const { rows: pending } = await db.root.query(
        "update app_public.files set created_at = now() - interval '61 minutes' where organization_id = $1 and status = 'pending' returning id",
        [orgId],
      );
      const expired = await gqlError(api, owner.accessToken, COMPLETE_UPLOAD, { id: pending[0].id });
      expect(expired).toEqual({ code: "upload_incomplete", message: "This upload expired an hour after it started; start again with createUpload." });
      await createUpload(owner.accessToken, { purpose: "task_attachment", targetId: taskId, filename: "fits.txt", contentType: "text/plain", size: "11" });
    } finally {
      await db.root.query("update app_public.plans set max_storage_bytes = 1024 * 1024 * 1024 where is_default");
    }
    const { rows } = await db.root.query("select storage_bytes from app_private.compute_usage_report($1, current_date)", [orgId]);
    expect(rows[0].storage_bytes).toBe("60");
  });
});

describe("abuse", () => {
  it("twenty uploads in progress per person at most, avatars included; avatars and logos are images", async () => {
    const someone = await signUp(api);
    const avatar = (contentType = "image/png") => ({ purpose: "avatar", filename: "me.png", contentType, size: "100" });
    expect((await gqlError(api, someone.accessToken, CREATE_UPLOAD, { input: avatar("application/zip") })).code).toBe("file_type_not_allowed");
    expect((await gqlError(api, someone.accessToken, CREATE_UPLOAD, { input: avatar("text/plain") })).code).toBe("file_type_not_allowed");
    for (let i = 0; i < 20; i++) await createUpload(someone.accessToken, avatar());
    const refused = await gqlError(api, someone.accessToken, CREATE_UPLOAD, { input: avatar() });
    expect(refused.code).toBe("too_many_pending_uploads");
    expect(refused.message).toContain("20 uploads in progress");
  });

  it("an archived project's attachments are read-only: none added (to its tasks or comments), none deleted", async () => {
    const file = await attach(t.member.accessToken, t.acme.taskId, new TextEncoder().encode("archived with the project"));
    await gqlOk(api, t.owner.accessToken, `mutation ($id: UUID!) { archiveProject(input: { projectId: $id }) { project { archivedAt } } }`, { id: t.acme.projectId });
    try {
      const input = { purpose: "comment_attachment", targetId: t.acme.commentId, filename: "late.txt", contentType: "text/plain", size: "4" };
      expect((await gqlError(api, t.member.accessToken, CREATE_UPLOAD, { input })).code).toBe("project_archived");
      expect((await gqlError(api, t.member.accessToken, CREATE_UPLOAD, { input: { ...input, purpose: "task_attachment", targetId: t.acme.taskId } })).code).toBe(
        "project_archived",
      );
      const removed = await gqlError(api, t.owner.accessToken, `mutation ($id: UUID!) { deleteFile(input: { rowId: $id }) { file { rowId } } }`, { id: file.rowId });
      expect(removed.code).toBe("project_archived");
    } finally {
      await gqlOk(api, t.owner.accessToken, `mutation ($id: UUID!) { unarchiveProject(input: { projectId: $id }) { project { archivedAt } } }`, { id: t.acme.projectId });
    }
    expect(await objectKeyOf(file.rowId)).toBeDefined();
  });

  it("completing checks again: a manager demoted since, or a member removed since, cannot complete", async () => {
    const { owner, orgId, taskId } = await ownOrganization("recheck-files");
    const helper = await signUp(api);
    const { rows } = await db.root.query("insert into app_public.organization_memberships (organization_id, user_id, role) values ($1, $2, 'admin') returning id", [
      orgId,
      helper.id,
    ]);
    const membershipId = rows[0].id;
    const png = new Uint8Array([1, 2, 3]);
    const logo = await createUpload(helper.accessToken, { purpose: "organization_logo", targetId: orgId, filename: "logo.png", contentType: "image/png", size: "3" });
    const attachment = await createUpload(helper.accessToken, { purpose: "task_attachment", targetId: taskId, filename: "a.txt", contentType: "text/plain", size: "3" });
    expect((await put(logo, png)).status).toBe(200);
    expect((await put(attachment, png)).status).toBe(200);

    await gqlOk(api, owner.accessToken, `mutation ($m: UUID!) { changeMemberRole(input: { membershipId: $m, role: member }) { clientMutationId } }`, { m: membershipId });
    expect((await gqlError(api, helper.accessToken, COMPLETE_UPLOAD, { id: logo.file.rowId })).code).toBe("forbidden");
    await gqlOk(api, owner.accessToken, `mutation ($m: UUID!) { removeMember(input: { membershipId: $m }) { clientMutationId } }`, { m: membershipId });
    expect((await gqlError(api, helper.accessToken, COMPLETE_UPLOAD, { id: attachment.file.rowId })).code).toBe("not_found");
    const { rows: left } = await db.root.query("select status from app_public.files where id = any($1)", [[logo.file.rowId, attachment.file.rowId]]);
    expect(left.map((row) => row.status)).toEqual(["pending", "pending"]);
  });

  it("names cannot hide their real extension, and long names keep theirs", async () => {
    expect(cleanFilename("invoice\u202Etxt.exe")).toBe("invoicetxt.exe");
    expect(cleanFilename("a\u007fb.txt")).toBe("ab.txt");
    const long = `${"x".repeat(300)}.pdf`;
    expect(cleanFilename(long)).toBe(`${"x".repeat(236)}.pdf`);
    // Bytes, not characters: "é" is two.
    expect(Buffer.byteLength(cleanFilename(`${"é".repeat(300)}.pdf`))).toBeLessThanOrEqual(240);
    expect(cleanFilename(`${"é".repeat(300)}.pdf`)).toMatch(/^é+\.pdf$/);
  });
});

describe("cleanup", () => {
  it("removes uploads never completed once expired, and objects no row refers to, with their objects", async () => {
    const upload = await createUpload(t.member.accessToken, { purpose: "task_attachment", targetId: t.acme.taskId, filename: "abandoned.txt", contentType: "text/plain", size: "4" });
    expect((await put(upload, new TextEncoder().encode("left"))).status).toBe(200);
    const key = (await objectKeyOf(upload.file.rowId))!;
    const stray = `${t.acme.id}/00000000-0000-4000-8000-00000000dead`;
    await s3.storage.presignUpload(stray, "text/plain", 5, 60).then((u) => fetch(u.url, { method: "PUT", body: "stray", headers: u.headers }));
    const kept = await attach(t.member.accessToken, t.acme.taskId, new TextEncoder().encode("kept"));
    const keptKey = (await objectKeyOf(kept.rowId))!;

    // An expired upload's row goes (and its object with it); the sweep looks a day ahead.
    const tomorrow = new Date(Date.now() + 25 * 3600_000).toISOString();
    await db.root.query("select graphile_worker.add_job('cleanup', json_build_object('now', $1::text))", [tomorrow]);
    await db.root.query("update app_public.files set created_at = now() - interval '61 minutes' where id = $1", [upload.file.rowId]);
    await runJobs(db);
    expect(await objectKeyOf(upload.file.rowId)).toBeUndefined();
    expect(await s3.storage.head(key)).toBeUndefined();

    // Something else in the bucket, not of the form the API gives its objects.
    const foreign = "backups/2026-01-01.dump";
    await s3.storage.presignUpload(foreign, "text/plain", 3, 60).then((u) => fetch(u.url, { method: "PUT", body: "db!", headers: u.headers }));

    // The sweep: the stray object has no row; the kept one does; the foreign one is not ours.
    await db.root.query("select graphile_worker.add_job('storage__sweep', json_build_object('now', $1::text))", [tomorrow]);
    await runJobs(db);
    expect(await s3.storage.head(stray)).toBeUndefined();
    expect(await s3.storage.head(keptKey)).toBeDefined();
    expect(await s3.storage.head(foreign)).toBeDefined();
    const failed = await db.root.query("select task_identifier, last_error from graphile_worker.jobs where last_error is not null");
    expect(failed.rows).toEqual([]);
  });
});

describe("without storage", () => {
  it("uploads answer storage_unavailable, nothing is written, and files show no URLs", async () => {
    const bare = await buildTestApp(db, { env: RELAXED_LIMITS });
    try {
      const before = (await db.root.query("select count(*)::int as n from app_public.files")).rows[0].n;
      const res = await graphql(bare, CREATE_UPLOAD, {
        token: t.member.accessToken,
        variables: { input: { purpose: "task_attachment", targetId: t.acme.taskId, filename: "a.txt", contentType: "text/plain", size: "1" } },
      });
      expect(res.body.errors[0].extensions.code).toBe("storage_unavailable");
      expect((await db.root.query("select count(*)::int as n from app_public.files")).rows[0].n).toBe(before);
      // Lists of files still answer, without URLs.
      const listed = await graphql(bare, "{ files(first: 5) { nodes { filename downloadUrl } } }", { token: t.member.accessToken });
      expect(listed.body.errors).toBeUndefined();
      expect(listed.body.data.files.nodes.length).toBeGreaterThan(0);
      expect(listed.body.data.files.nodes.every((f: { downloadUrl: unknown }) => f.downloadUrl === null)).toBe(true);
    } finally {
      await bare.close();
    }
  });
});
