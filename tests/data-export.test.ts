import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildTestApp, type TestApp } from "./helpers/app.ts";
import { RELAXED_LIMITS, recipient, signUp, tokenFrom, type SignedUp } from "./helpers/auth.ts";
import { createTestDatabase, type TestDatabase } from "./helpers/database.ts";
import { runJobs } from "./helpers/jobs.ts";
import { startSmtpSink, type SmtpSink } from "./helpers/smtp.ts";
import { gqlError, gqlOk } from "./helpers/tenants.ts";

// Exporting one's data (GDPR article 20), end to end: the mutation, the job, the emailed link and
// the download, for a user with data in two organizations, and nothing of anyone else's.

let db: TestDatabase;
let api: TestApp;
let smtp: SmtpSink;

beforeAll(async () => {
  [db, smtp] = await Promise.all([createTestDatabase(), startSmtpSink()]);
  process.env.SMTP_URL = smtp.url;
  api = await buildTestApp(db, { env: RELAXED_LIMITS });
});

afterAll(async () => {
  await api?.close();
  await smtp?.close();
  await db?.drop();
});

const REQUEST = "mutation { requestDataExport(input: {}) { requestedAt } }";
const download = (token: string) => request(api.app).post("/auth/data-export").send({ token });

/** An organization owned by `owner` with `others` as members, and a task of `owner`'s in it. */
async function organization(owner: SignedUp, slug: string, others: SignedUp[]) {
  await db.root.query("update app_public.users set email_verified_at = now() where id = $1", [owner.id]);
  const org = await gqlOk(api, owner.accessToken, `mutation ($s: String!) { createOrganization(input: { name: $s, slug: $s }) { organization { rowId } } }`, { s: slug });
  const id: string = org.createOrganization.organization.rowId;
  for (const other of others) await db.root.query("insert into app_public.organization_memberships (organization_id, user_id) values ($1, $2)", [id, other.id]);
  const project = await gqlOk(api, owner.accessToken, `mutation ($o: UUID!) { createProject(input: { project: { organizationId: $o, name: "Shared" } }) { project { rowId } } }`, { o: id });
  return { id, projectId: project.createProject.project.rowId as string };
}

const createTask = async (account: SignedUp, projectId: string, title: string) =>
  (await gqlOk(api, account.accessToken, `mutation ($p: UUID!, $t: String!) { createTask(input: { task: { projectId: $p, title: $t } }) { task { rowId } } }`, { p: projectId, t: title }))
    .createTask.task.rowId as string;
const comment = (account: SignedUp, taskId: string, body: string) =>
  gqlOk(api, account.accessToken, `mutation ($t: UUID!, $b: String!) { createTaskComment(input: { taskComment: { taskId: $t, body: $b } }) { taskComment { rowId } } }`, { t: taskId, b: body });

describe("exporting one's data", () => {
  it("emails a link to a JSON document of everything the user owns or wrote, in both organizations, and nothing of anyone else's", async () => {
    const [user, coworker, stranger] = [await signUp(api, { name: "Exporting Ex" }), await signUp(api, { name: "Coworker Cora" }), await signUp(api, { name: "Stranger Sam" })];
    const first = await organization(user, "export-first", [coworker]);
    const second = await organization(coworker, "export-second", [user]);
    await organization(stranger, "export-stranger", []);
    const mine = [await createTask(user, first.projectId, "My first task"), await createTask(user, second.projectId, "My second task")];
    const theirs = await createTask(coworker, first.projectId, "Cora's task");
    await comment(user, theirs, "My comment on their task");
    await comment(coworker, mine[0]!, "Cora's comment on my task");

    const asked = await gqlOk(api, user.accessToken, REQUEST);
    expect(new Date(asked.requestDataExport.requestedAt).getTime()).toBeLessThanOrEqual(Date.now() + 1000);
    await runJobs(db);
    const email = await smtp.waitFor((m) => recipient(m) === user.email && m.subject === "Your data export is ready");
    expect(email.text).toContain("/data-export?token=");

    const res = await download(tokenFrom(email));
    expect(res.status).toBe(200);
    expect(res.headers["content-disposition"]).toBe("attachment; filename=oddscenes-export.json");
    const doc = res.body;
    expect(doc.format).toBe("oddscenes-user-export/1");
    expect(doc.profile).toMatchObject({ id: user.id, email: user.email, name: "Exporting Ex" });
    expect(doc.memberships.map((m: { slug: string; role: string }) => [m.slug, m.role])).toEqual([
      ["export-first", "owner"],
      ["export-second", "member"],
    ]);
    expect(doc.tasksCreated.map((t: { id: string }) => t.id)).toEqual(mine);
    expect(doc.comments.map((c: { body: string }) => c.body)).toEqual(["My comment on their task"]);
    expect(doc.securityEvents.map((e: { kind: string }) => e.kind)).toContain("signed_in");
    // Nothing of anyone else's: not their names, addresses, tasks or comments, nor the stranger's organization.
    const text = JSON.stringify(doc);
    for (const foreign of [coworker.email, "Coworker Cora", stranger.email, "Stranger Sam", "Cora's task", "Cora's comment", "export-stranger"]) {
      expect(text, foreign).not.toContain(foreign);
    }
    // The link can be used again within its 24 hours, and not after.
    expect((await download(tokenFrom(email))).status).toBe(200);
    await db.root.query("update app_private.data_exports set expires_at = now() - interval '1 second' where user_id = $1", [user.id]);
    const expired = await download(tokenFrom(email));
    expect(expired.status).toBe(400);
    expect(expired.body.error.code).toBe("invalid_token");
  });

  it("leaves out tasks the user created in organizations they have left (others may have rewritten them since)", async () => {
    const [owner, leaver] = [await signUp(api), await signUp(api)];
    const org = await organization(owner, "export-left", [leaver]);
    const task = await createTask(leaver, org.projectId, "Written before leaving");
    await db.root.query("delete from app_public.organization_memberships where organization_id = $1 and user_id = $2", [org.id, leaver.id]);
    await db.root.query("update app_public.tasks set description = 'Written by the owner after' where id = $1", [task]);
    await gqlOk(api, leaver.accessToken, REQUEST);
    await runJobs(db);
    const email = await smtp.waitFor((m) => recipient(m) === leaver.email && m.subject === "Your data export is ready");
    const doc = (await download(tokenFrom(email))).body;
    expect(doc.tasksCreated).toEqual([]);
    expect(JSON.stringify(doc)).not.toContain("Written by the owner after");
  });

  it("a link already emailed dies when the account is secured (sign out everywhere) or closed", async () => {
    const user = await signUp(api);
    await gqlOk(api, user.accessToken, REQUEST);
    await runJobs(db);
    const link = tokenFrom(await smtp.waitFor((m) => recipient(m) === user.email && m.subject === "Your data export is ready"));
    expect((await download(link)).status).toBe(200);
    expect((await request(api.app).post("/auth/logout-all").set("Authorization", `Bearer ${user.accessToken}`)).status).toBe(204);
    expect((await download(link)).body.error.code).toBe("invalid_token");
  });

  it("an export asked for but not emailed yet is dropped when the account is secured: no live link goes out", async () => {
    const user = await signUp(api);
    await gqlOk(api, user.accessToken, REQUEST);
    // A new password from another session (an owner locking out an intruder) before the job ran.
    const phone = await request(api.app).post("/auth/login").send({ email: user.email, password: user.password });
    const changed = await request(api.app)
      .post("/auth/change-password")
      .set("Authorization", `Bearer ${phone.body.accessToken}`)
      .send({ currentPassword: user.password, newPassword: "a brand new passphrase 2026" });
    expect(changed.status).toBeLessThan(300);
    await runJobs(db);
    const { rows } = await db.root.query("select count(*)::int as n from app_private.data_exports where user_id = $1", [user.id]);
    expect(rows[0].n).toBe(0);
    expect(smtp.messages.filter((m) => recipient(m) === user.email && m.subject === "Your data export is ready")).toEqual([]);
    const failed = await db.root.query("select last_error from graphile_worker.jobs where task_identifier = 'accounts__export_data' and last_error is not null");
    expect(failed.rows).toEqual([]);
  });

  it("one a day, for signed-in users; a made-up link is refused", async () => {
    const user = await signUp(api);
    await gqlOk(api, user.accessToken, REQUEST);
    const again = await gqlError(api, user.accessToken, REQUEST);
    expect(again.code).toBe("export_already_requested");
    expect(again.message).toMatch(/a day after that/);
    await db.root.query("update app_private.data_exports set requested_at = now() - interval '25 hours' where user_id = $1", [user.id]);
    await gqlOk(api, user.accessToken, REQUEST);
    expect((await gqlError(api, undefined, REQUEST)).code).toBe("unauthenticated");
    expect((await download("a-made-up-token-that-is-long-enough")).body.error.code).toBe("invalid_token");
    expect((await download("short")).body.error.code).toBe("validation_failed");
  });
});
