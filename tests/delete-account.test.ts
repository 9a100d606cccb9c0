import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildTestApp, type TestApp } from "./helpers/app.ts";
import { graphql, RELAXED_LIMITS, recipient, signUp, type SignedUp } from "./helpers/auth.ts";
import { createTestDatabase, type TestDatabase } from "./helpers/database.ts";
import { runJobs } from "./helpers/jobs.ts";
import { startSmtpSink, type SmtpSink } from "./helpers/smtp.ts";
import { gqlOk } from "./helpers/tenants.ts";

// Deleting one's account, end to end through HTTP, the jobs and a real SMTP server, in each
// organization situation: alone, with others as a co-owner, as the last owner of others.

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

const deleteAccount = (account: SignedUp, password = account.password) =>
  request(api.app).post("/auth/delete-account").set("Authorization", `Bearer ${account.accessToken}`).send({ password });

/** A verified user owning a new organization with a project, a task and a comment of theirs. */
async function organizationOf(owner: SignedUp, slug: string) {
  await db.root.query("update app_public.users set email_verified_at = now() where id = $1", [owner.id]);
  const org = await gqlOk(api, owner.accessToken, `mutation ($s: String!) { createOrganization(input: { name: $s, slug: $s }) { organization { rowId } } }`, { s: slug });
  const id: string = org.createOrganization.organization.rowId;
  const project = await gqlOk(api, owner.accessToken, `mutation ($o: UUID!) { createProject(input: { project: { organizationId: $o, name: "P" } }) { project { rowId } } }`, { o: id });
  const task = await gqlOk(api, owner.accessToken, `mutation ($p: UUID!) { createTask(input: { task: { projectId: $p, title: "Theirs" } }) { task { rowId } } }`, {
    p: project.createProject.project.rowId,
  });
  const taskId: string = task.createTask.task.rowId;
  await gqlOk(api, owner.accessToken, `mutation ($t: UUID!) { createTaskComment(input: { taskComment: { taskId: $t, body: "Mine" } }) { taskComment { rowId } } }`, { t: taskId });
  return { id, taskId };
}

const join = (organizationId: string, user: SignedUp, role = "member") =>
  db.root.query("insert into app_public.organization_memberships (organization_id, user_id, role) values ($1, $2, $3)", [organizationId, user.id, role]);
const exists = async (table: string, id: string) => (await db.root.query(`select 1 from app_public.${table} where id = $1`, [id])).rowCount === 1;

describe("deleting one's account", () => {
  it("closes it at once, emails a confirmation, and a job deletes it with the organizations it was alone in", async () => {
    const user = await signUp(api, { name: "Leaving Soon" });
    const phone = await request(api.app).post("/auth/login").send({ email: user.email, password: user.password });
    const alone = await organizationOf(user, "alone-deleted");

    const res = await deleteAccount(user);
    expect(res.status).toBe(202);
    // At once: every session ends and sign-in is refused, before the job has run.
    for (const token of [user.accessToken, phone.body.accessToken]) {
      expect((await graphql(api, "{ currentUserId }", { token })).status).toBe(401);
    }
    expect((await request(api.app).post("/auth/login").send({ email: user.email, password: user.password })).body.error.code).toBe("invalid_credentials");

    await runJobs(db);
    expect(await exists("users", user.id)).toBe(false);
    expect(await exists("organizations", alone.id)).toBe(false);
    expect(await exists("tasks", alone.taskId)).toBe(false);
    const confirmation = await smtp.waitFor((m) => recipient(m) === user.email && m.subject === "Your account has been deleted");
    expect(confirmation.text).toContain("Hi Leaving Soon");
    // The address is free again.
    expect((await request(api.app).post("/auth/register").send({ email: user.email, password: "another password here", name: "New" })).status).toBe(201);
  });

  it("leaves its tasks and comments in organizations with others, shown as from a deleted user", async () => {
    const [owner, leaving] = [await signUp(api), await signUp(api)];
    const shared = await organizationOf(owner, "shared-deleted");
    await join(shared.id, leaving, "owner");
    const task = await gqlOk(api, leaving.accessToken, `mutation ($t: UUID!) { createTaskComment(input: { taskComment: { taskId: $t, body: "Bye" } }) { taskComment { rowId } } }`, {
      t: shared.taskId,
    });
    const commentId = task.createTaskComment.taskComment.rowId;

    expect((await deleteAccount(leaving)).status).toBe(202);
    await runJobs(db);
    expect(await exists("users", leaving.id)).toBe(false);
    expect(await exists("organizations", shared.id)).toBe(true);
    const seen = await gqlOk(api, owner.accessToken, `query ($t: UUID!) { task(rowId: $t) { creatorName comments { nodes { rowId body author { name } authorName } } } }`, {
      t: shared.taskId,
    });
    expect(seen.task.creatorName).toBe(owner.name);
    expect(seen.task.comments.nodes.find((c: { rowId: string }) => c.rowId === commentId)).toEqual({ rowId: commentId, body: "Bye", author: null, authorName: "Deleted user" });
  });

  it("is refused while the user is the last owner of an organization with other members, and nothing changes", async () => {
    const [owner, member] = [await signUp(api), await signUp(api)];
    const org = await organizationOf(owner, "last-owner-deleted");
    await join(org.id, member);
    const refused = await deleteAccount(owner);
    expect(refused.status).toBe(409);
    expect(refused.body.error.code).toBe("last_owner");
    expect(refused.body.error.message).toContain("last-owner-deleted");
    expect((await graphql(api, "{ currentUserId }", { token: owner.accessToken })).status).toBe(200);

    // Made someone else owner: now it goes, and the organization stays with its new owner.
    await db.root.query("update app_public.organization_memberships set role = 'owner' where organization_id = $1 and user_id = $2", [org.id, member.id]);
    expect((await deleteAccount(owner)).status).toBe(202);
    await runJobs(db);
    expect(await exists("users", owner.id)).toBe(false);
    expect(await exists("organizations", org.id)).toBe(true);
  });

  it("two owners leaving at once cannot leave the other members without an owner", async () => {
    const [first, second, member] = [await signUp(api), await signUp(api), await signUp(api)];
    const org = await organizationOf(first, "co-owners-deleted");
    await join(org.id, second, "owner");
    await join(org.id, member);
    expect((await deleteAccount(first)).status).toBe(202);
    const refused = await deleteAccount(second);
    expect(refused.status).toBe(409);
    expect(refused.body.error.code).toBe("last_owner");
    await runJobs(db);
    expect(await exists("users", first.id)).toBe(false);
    const { rows } = await db.root.query("select role from app_public.organization_memberships where organization_id = $1 order by role", [org.id]);
    expect(rows.map((r) => r.role)).toEqual(["owner", "member"]);
  });

  it("while a co-owner's account is closing, the last active owner cannot leave, so the job is never stranded", async () => {
    const [closing, staying, member] = [await signUp(api), await signUp(api), await signUp(api)];
    const org = await organizationOf(closing, "stranded-deleted");
    await join(org.id, staying, "owner");
    await join(org.id, member);
    expect((await deleteAccount(closing)).status).toBe(202);
    const leave = await graphql(api, `mutation ($o: UUID!) { leaveOrganization(input: { organizationId: $o }) { clientMutationId } }`, {
      token: staying.accessToken,
      variables: { o: org.id },
    });
    expect(leave.body.errors[0].extensions.code).toBe("last_owner");
    await runJobs(db);
    expect(await exists("users", closing.id)).toBe(false);
    expect(await exists("organizations", org.id)).toBe(true);
  });

  it("a site administrator cannot re-enable a closing account, and disabling its co-owner does not strand the deletion", async () => {
    const [closing, coOwner, member, admin] = [await signUp(api), await signUp(api), await signUp(api), await signUp(api)];
    await db.root.query("update app_public.users set is_admin = true where id = $1", [admin.id]);
    const org = await organizationOf(closing, "admin-closing-deleted");
    await join(org.id, coOwner, "owner");
    await join(org.id, member);
    expect((await deleteAccount(closing)).status).toBe(202);

    const enable = await graphql(api, `mutation ($id: UUID!) { adminEnableUser(input: { userId: $id }) { user { rowId } } }`, {
      token: admin.accessToken,
      variables: { id: closing.id },
    });
    expect(enable.body.errors[0].extensions.code).toBe("account_closing");
    expect((await request(api.app).post("/auth/login").send({ email: closing.email, password: closing.password })).status).toBe(401);

    // The co-owner disabled by an administrator is still an owner (they can be enabled again): the deletion goes ahead.
    await gqlOk(api, admin.accessToken, `mutation ($id: UUID!) { adminDisableUser(input: { userId: $id }) { user { rowId } } }`, { id: coOwner.id });
    await runJobs(db);
    expect(await exists("users", closing.id)).toBe(false);
    const { rows } = await db.root.query("select user_id, role from app_public.organization_memberships where organization_id = $1 and role = 'owner'", [org.id]);
    expect(rows).toEqual([{ user_id: coOwner.id, role: "owner" }]);
    const failed = await db.root.query("select last_error from graphile_worker.jobs where task_identifier = 'accounts__delete_user' and last_error is not null");
    expect(failed.rows).toEqual([]);
  });

  it("withdraws invitations to the organizations going with the account, so nobody joins one on its way out", async () => {
    const user = await signUp(api);
    const org = await organizationOf(user, "invited-deleted");
    await gqlOk(api, user.accessToken, `mutation ($o: UUID!) { inviteToOrganization(input: { organizationId: $o, email: "late@example.com" }) { invitation { rowId } } }`, { o: org.id });
    expect((await deleteAccount(user)).status).toBe(202);
    const { rows } = await db.root.query("select count(*)::int as n from app_public.organization_invitations where organization_id = $1", [org.id]);
    expect(rows[0].n).toBe(0);
    await runJobs(db);
    expect(await exists("organizations", org.id)).toBe(false);
    expect(await exists("users", user.id)).toBe(false);
  });

  it("is refused while an organization of the user's alone would still be billed", async () => {
    const user = await signUp(api);
    const org = await organizationOf(user, "billed-deleted");
    await db.root.query(
      "insert into app_public.subscriptions (organization_id, stripe_subscription_id, status, last_synced_at) values ($1, 'sub_deleted_account', 'active', now())",
      [org.id],
    );
    const refused = await deleteAccount(user);
    expect(refused.status).toBe(409);
    expect(refused.body.error.code).toBe("subscription_active");
    expect(refused.body.error.message).toBe("billed-deleted's active subscription would renew; cancel it in the billing portal (createBillingPortalSession) first, then delete your account.");

    // A second live subscription Stripe still bills (held back) counts too, as for deleteOrganization.
    await db.root.query("update app_public.subscriptions set cancel_at_period_end = true where organization_id = $1", [org.id]);
    await db.root.query(
      "insert into app_private.stripe_held_subscriptions (stripe_subscription_id, organization_id, current_stripe_subscription_id) values ('sub_held_deleted', $1, 'sub_deleted_account')",
      [org.id],
    );
    const held = await deleteAccount(user);
    expect(held.status).toBe(409);
    expect(held.body.error.message).toMatch(/^billed-deleted has a second live subscription that Stripe still bills/);
  });

  it("asks for the password", async () => {
    const user = await signUp(api);
    const wrong = await deleteAccount(user, "not my password at all");
    expect(wrong.status).toBe(403);
    expect(wrong.body.error.code).toBe("invalid_credentials");
    expect((await request(api.app).post("/auth/delete-account").send({ password: user.password })).status).toBe(401);
    expect(await exists("users", user.id)).toBe(true);
  });
});
