import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildTestApp, type TestApp } from "./helpers/app.ts";
import { RELAXED_LIMITS, recipient, signUp, tokenFrom, uniqueEmail } from "./helpers/auth.ts";
import { createTestDatabase, type TestDatabase } from "./helpers/database.ts";
import { runJobs } from "./helpers/jobs.ts";
import { startSmtpSink, type SmtpSink } from "./helpers/smtp.ts";
import { arrangeTenants, gqlError, gqlOk, type Tenants } from "./helpers/tenants.ts";

let db: TestDatabase;
let api: TestApp;
let smtp: SmtpSink;
let t: Tenants;

beforeAll(async () => {
  [db, smtp] = await Promise.all([createTestDatabase(), startSmtpSink()]);
  process.env.SMTP_URL = smtp.url;
  process.env.PUBLIC_URL = "https://app.example.com";
  api = await buildTestApp(db, { env: RELAXED_LIMITS });
  t = await arrangeTenants(api, db, "orgs");
});

afterAll(async () => {
  delete process.env.PUBLIC_URL;
  await api?.close();
  await smtp?.close();
  await db?.drop();
});

const INVITE = `mutation ($org: UUID!, $email: String!, $role: OrganizationRole) {
  inviteToOrganization(input: { organizationId: $org, email: $email, role: $role }) { invitation { rowId email role expiresAt } } }`;
const ACCEPT = `mutation ($token: String!) { acceptInvitation(input: { token: $token }) { membership { role organizationId userId } } }`;
const CHANGE_ROLE = `mutation ($id: UUID!, $role: OrganizationRole!) { changeMemberRole(input: { membershipId: $id, role: $role }) { membership { role } } }`;
const REMOVE = `mutation ($id: UUID!) { removeMember(input: { membershipId: $id }) { membership { rowId } } }`;
const LEAVE = `mutation ($org: UUID!) { leaveOrganization(input: { organizationId: $org }) { membership { rowId } } }`;
const TRANSFER = `mutation ($org: UUID!, $user: UUID!) { transferOwnership(input: { organizationId: $org, userId: $user }) { membership { role } } }`;
const DELETE_ORG = `mutation ($org: UUID!) { deleteOrganization(input: { organizationId: $org }) { organization { rowId } } }`;
const CREATE_ORG = `mutation ($slug: String!, $name: String!) { createOrganization(input: { slug: $slug, name: $name }) { organization { rowId slug name currentUserRole } } }`;

/** A fresh organization owned by a fresh user, so destructive tests do not disturb the others. */
async function ownOrganization() {
  const owner = await signUp(api, { name: "Fresh Owner" });
  const org = (await gqlOk(api, owner.accessToken, CREATE_ORG, { slug: `fresh-${owner.id.slice(0, 8)}`, name: "Fresh" }))
    .createOrganization.organization;
  return { owner, orgId: org.rowId as string };
}

async function addMember(orgId: string, role: "owner" | "admin" | "member") {
  const user = await signUp(api);
  const { rows } = await db.root.query(
    "insert into app_public.organization_memberships (organization_id, user_id, role) values ($1, $2, $3) returning id",
    [orgId, user.id, role],
  );
  return { user, membershipId: rows[0].id as string };
}

describe("createOrganization", () => {
  it("makes the caller its owner", async () => {
    const user = await signUp(api);
    const data = await gqlOk(api, user.accessToken, CREATE_ORG, { slug: `New-Team-${user.id.slice(0, 6)}`, name: " New Team " });
    expect(data.createOrganization.organization).toMatchObject({ slug: `new-team-${user.id.slice(0, 6)}`, name: "New Team", currentUserRole: "owner" });
  });

  it("refuses a taken slug, a malformed slug and anonymous callers", async () => {
    const user = await signUp(api);
    const slug = `taken-${user.id.slice(0, 8)}`;
    await gqlOk(api, user.accessToken, CREATE_ORG, { slug, name: "First" });
    expect(await gqlError(api, user.accessToken, CREATE_ORG, { slug, name: "Second" })).toEqual({
      code: "slug_taken",
      message: `The slug "${slug}" is taken; choose another.`,
    });
    expect((await gqlError(api, user.accessToken, CREATE_ORG, { slug: "no spaces!", name: "Bad" })).code).toBe("validation_failed");
    expect((await gqlError(api, undefined, CREATE_ORG, { slug: "anon-org", name: "Anon" })).code).toBe("forbidden");
  });
});

describe("invitations", () => {
  it("end to end: an admin invites, the invitee registers later and accepts from the email", async () => {
    const email = uniqueEmail("invitee");
    const invited = await gqlOk(api, t.admin.accessToken, INVITE, { org: t.acme.id, email, role: "member" });
    expect(invited.inviteToOrganization.invitation).toMatchObject({ email, role: "member" });

    await runJobs(db);
    const mail = await smtp.waitFor((m) => recipient(m) === email);
    expect(mail.subject).toBe("Adam Admin invited you to Acme");
    expect(mail.text).toMatch(/https:\/\/app\.example\.com\/accept-invitation\?token=/);

    const invitee = await signUp(api, { email, name: "Ivy Invitee" });
    const accepted = await gqlOk(api, invitee.accessToken, ACCEPT, { token: tokenFrom(mail) });
    expect(accepted.acceptInvitation.membership).toEqual({ role: "member", organizationId: t.acme.id, userId: invitee.id });

    const orgs = await gqlOk(api, invitee.accessToken, "{ organizations { nodes { name currentUserRole } } }");
    expect(orgs.organizations.nodes).toEqual([{ name: "Acme", currentUserRole: "member" }]);
    expect((await gqlError(api, invitee.accessToken, ACCEPT, { token: tokenFrom(mail) })).code).toBe("invitation_used");
  });

  it("refuses a link meant for another address, an expired link and a made-up one", async () => {
    const email = uniqueEmail("target");
    await gqlOk(api, t.owner.accessToken, INVITE, { org: t.acme.id, email });
    await runJobs(db);
    const token = tokenFrom(await smtp.waitFor((m) => recipient(m) === email));

    expect((await gqlError(api, t.outsider.accessToken, ACCEPT, { token })).code).toBe("invitation_for_another_email");
    await db.root.query("update app_public.organization_invitations set expires_at = now() - interval '1 minute' where email = $1", [email]);
    const late = await signUp(api, { email });
    expect((await gqlError(api, late.accessToken, ACCEPT, { token })).code).toBe("invitation_expired");
    expect((await gqlError(api, late.accessToken, ACCEPT, { token: "nope".repeat(11) })).code).toBe("invitation_not_found");
  });

  it("only owners and admins invite, and only owners invite owners", async () => {
    expect((await gqlError(api, t.member.accessToken, INVITE, { org: t.acme.id, email: uniqueEmail() })).code).toBe("forbidden");
    expect((await gqlError(api, t.admin.accessToken, INVITE, { org: t.acme.id, email: uniqueEmail(), role: "owner" })).code).toBe("forbidden");
    await gqlOk(api, t.owner.accessToken, INVITE, { org: t.acme.id, email: uniqueEmail(), role: "owner" });
    expect((await gqlError(api, t.outsider.accessToken, INVITE, { org: t.acme.id, email: uniqueEmail() })).code).toBe("not_found");
  });

  it("refuses inviting someone who is already a member", async () => {
    const error = await gqlError(api, t.owner.accessToken, INVITE, { org: t.acme.id, email: t.member.email });
    expect(error.code).toBe("already_member");
  });

  it("inviting again replaces the pending invitation", async () => {
    const email = uniqueEmail("twice");
    await gqlOk(api, t.owner.accessToken, INVITE, { org: t.acme.id, email });
    await gqlOk(api, t.owner.accessToken, INVITE, { org: t.acme.id, email, role: "admin" });
    const { rows } = await db.root.query("select role from app_public.organization_invitations where email = $1 and accepted_at is null", [email]);
    expect(rows).toEqual([{ role: "admin" }]);
  });

  it("admins see and revoke invitations; members do not see them", async () => {
    const email = uniqueEmail("revoked");
    const id = (await gqlOk(api, t.admin.accessToken, INVITE, { org: t.acme.id, email })).inviteToOrganization.invitation.rowId;
    const asMember = await gqlOk(api, t.member.accessToken, "{ organizationInvitations { totalCount } }");
    expect(asMember.organizationInvitations.totalCount).toBe(0);
    const deleted = await gqlOk(api, t.admin.accessToken, `mutation ($id: UUID!) { deleteOrganizationInvitation(input: { rowId: $id }) { organizationInvitation { email } } }`, { id });
    expect(deleted.deleteOrganizationInvitation.organizationInvitation.email).toBe(email);
  });
});

describe("roles and the one-owner invariant", () => {
  it("a member cannot change roles or raise their own", async () => {
    const { orgId } = await ownOrganization();
    const m = await addMember(orgId, "member");
    expect((await gqlError(api, m.user.accessToken, CHANGE_ROLE, { id: m.membershipId, role: "admin" })).code).toBe("forbidden");
  });

  it("an admin manages members and admins, but not owners, and cannot raise themself to owner", async () => {
    const { orgId } = await ownOrganization();
    const a = await addMember(orgId, "admin");
    const m = await addMember(orgId, "member");
    expect((await gqlOk(api, a.user.accessToken, CHANGE_ROLE, { id: m.membershipId, role: "admin" })).changeMemberRole.membership.role).toBe("admin");
    expect((await gqlError(api, a.user.accessToken, CHANGE_ROLE, { id: m.membershipId, role: "owner" })).code).toBe("forbidden");
    expect((await gqlError(api, a.user.accessToken, CHANGE_ROLE, { id: a.membershipId, role: "owner" })).code).toBe("forbidden");
  });

  it("owners make owners; the last owner can neither step down, leave nor be removed", async () => {
    const { owner, orgId } = await ownOrganization();
    const { rows } = await db.root.query("select id from app_public.organization_memberships where organization_id = $1 and user_id = $2", [orgId, owner.id]);
    const ownerMembership = rows[0].id;
    expect((await gqlError(api, owner.accessToken, CHANGE_ROLE, { id: ownerMembership, role: "admin" })).code).toBe("last_owner");
    expect((await gqlError(api, owner.accessToken, LEAVE, { org: orgId })).code).toBe("last_owner");
    expect((await gqlError(api, owner.accessToken, REMOVE, { id: ownerMembership })).code).toBe("last_owner");

    const second = await addMember(orgId, "member");
    await gqlOk(api, owner.accessToken, CHANGE_ROLE, { id: second.membershipId, role: "owner" });
    await gqlOk(api, owner.accessToken, LEAVE, { org: orgId });
    const left = await db.root.query("select user_id, role from app_public.organization_memberships where organization_id = $1", [orgId]);
    expect(left.rows).toEqual([{ user_id: second.user.id, role: "owner" }]);
  });

  it("only owners remove owners; removing a member unassigns their tasks", async () => {
    const { owner, orgId } = await ownOrganization();
    const a = await addMember(orgId, "admin");
    const m = await addMember(orgId, "member");
    const project = (await gqlOk(api, owner.accessToken, `mutation ($org: UUID!) { createProject(input: { project: { organizationId: $org, name: "P" } }) { project { rowId } } }`, { org: orgId })).createProject.project.rowId;
    const task = (await gqlOk(api, owner.accessToken, `mutation ($p: UUID!, $a: UUID) { createTask(input: { task: { projectId: $p, title: "Do it", assigneeId: $a } }) { task { rowId assigneeId } } }`, { p: project, a: m.user.id })).createTask.task;
    expect(task.assigneeId).toBe(m.user.id);

    const { rows } = await db.root.query("select id from app_public.organization_memberships where organization_id = $1 and user_id = $2", [orgId, owner.id]);
    expect((await gqlError(api, a.user.accessToken, REMOVE, { id: rows[0].id })).code).toBe("forbidden");
    await gqlOk(api, a.user.accessToken, REMOVE, { id: m.membershipId });
    const after = await db.root.query("select assignee_id from app_public.tasks where id = $1", [task.rowId]);
    expect(after.rows[0].assignee_id).toBeNull();
  });

  it("a member assigned to tasks in an archived project can still be removed, or leave; the tasks are unassigned", async () => {
    const { owner, orgId } = await ownOrganization();
    const removed = await addMember(orgId, "member");
    const leaving = await addMember(orgId, "member");
    const project = (await gqlOk(api, owner.accessToken, `mutation ($org: UUID!) { createProject(input: { project: { organizationId: $org, name: "Done and dusted" } }) { project { rowId } } }`, { org: orgId })).createProject.project.rowId;
    const assign = `mutation ($p: UUID!, $a: UUID) { createTask(input: { task: { projectId: $p, title: "Old work", assigneeId: $a } }) { task { rowId } } }`;
    const tasks = [
      (await gqlOk(api, owner.accessToken, assign, { p: project, a: removed.user.id })).createTask.task.rowId,
      (await gqlOk(api, owner.accessToken, assign, { p: project, a: leaving.user.id })).createTask.task.rowId,
    ];
    await gqlOk(api, owner.accessToken, `mutation ($id: UUID!) { archiveProject(input: { projectId: $id }) { project { archivedAt } } }`, { id: project });

    await gqlOk(api, owner.accessToken, REMOVE, { id: removed.membershipId });
    await gqlOk(api, leaving.user.accessToken, LEAVE, { org: orgId });
    const { rows } = await db.root.query("select assignee_id from app_public.tasks where id = any($1)", [tasks]);
    expect(rows).toEqual([{ assignee_id: null }, { assignee_id: null }]);
    // People's edits stay refused in the archived project.
    expect(
      (await gqlError(api, owner.accessToken, `mutation ($id: UUID!) { updateTask(input: { rowId: $id, patch: { title: "Edited" } }) { task { rowId } } }`, { id: tasks[0] })).code,
    ).toBe("project_archived");
  });

  it("transferOwnership hands over and makes the old owner an admin", async () => {
    const { owner, orgId } = await ownOrganization();
    const m = await addMember(orgId, "member");
    expect((await gqlError(api, m.user.accessToken, TRANSFER, { org: orgId, user: m.user.id })).code).toBe("forbidden");
    const stranger = await signUp(api);
    expect((await gqlError(api, owner.accessToken, TRANSFER, { org: orgId, user: stranger.id })).code).toBe("not_a_member");
    expect((await gqlOk(api, owner.accessToken, TRANSFER, { org: orgId, user: m.user.id })).transferOwnership.membership.role).toBe("owner");
    const { rows } = await db.root.query("select role from app_public.organization_memberships where organization_id = $1 and user_id = $2", [orgId, owner.id]);
    expect(rows[0].role).toBe("admin");
  });

  it("only an owner deletes the organization, with everything in it", async () => {
    const { owner, orgId } = await ownOrganization();
    const a = await addMember(orgId, "admin");
    await gqlOk(api, owner.accessToken, `mutation ($org: UUID!) { createProject(input: { project: { organizationId: $org, name: "Doomed" } }) { project { rowId } } }`, { org: orgId });
    expect((await gqlError(api, a.user.accessToken, DELETE_ORG, { org: orgId })).code).toBe("forbidden");
    await gqlOk(api, owner.accessToken, DELETE_ORG, { org: orgId });
    const { rows } = await db.root.query(
      "select (select count(*)::int from app_public.projects where organization_id = $1) as projects, (select count(*)::int from app_public.activity where organization_id = $1) as activity",
      [orgId],
    );
    expect(rows[0]).toEqual({ projects: 0, activity: 0 });
  });
});

describe("user profiles", () => {
  it("co-members see each other's name and avatar but not email or admin flag", async () => {
    const data = await gqlOk(api, t.member.accessToken, "{ users(orderBy: NAME_ASC) { nodes { rowId name email isAdmin } } }");
    const byId = new Map(data.users.nodes.map((u: { rowId: string }) => [u.rowId, u]));
    expect(byId.get(t.member.id)).toEqual({ rowId: t.member.id, name: "Mia Member", email: t.member.email, isAdmin: false });
    expect(byId.get(t.owner.id)).toEqual({ rowId: t.owner.id, name: "Olivia Owner", email: null, isAdmin: null });
    expect(byId.get(t.admin.id)).toEqual({ rowId: t.admin.id, name: "Adam Admin", email: null, isAdmin: null });
    expect(byId.has(t.outsider.id)).toBe(false);
    expect(byId.has(t.siteAdmin.id)).toBe(false);
    const names = data.users.nodes.map((u: { name: string }) => u.name);
    expect(names).toEqual([...names].sort());
  });

  it("a site administrator sees everyone's private fields", async () => {
    const data = await gqlOk(api, t.siteAdmin.accessToken, `query ($id: UUID!) { user(rowId: $id) { email isAdmin } }`, { id: t.owner.id });
    expect(data.user).toEqual({ email: t.owner.email, isAdmin: false });
  });

  it("people without a shared organization stay invisible", async () => {
    const data = await gqlOk(api, t.outsider.accessToken, "{ users { nodes { name } } }");
    expect(data.users.nodes).toEqual([{ name: "Otto Outsider" }]);
  });

  it("REST /auth/me still shows the caller everything about themself", async () => {
    const res = await request(api.app).get("/auth/me").set("Authorization", `Bearer ${t.member.accessToken}`);
    expect(res.body.user).toMatchObject({ email: t.member.email, isAdmin: false });
  });
});
