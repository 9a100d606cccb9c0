import { expect } from "vitest";
import type { TestApp } from "./app.ts";
import { graphql, signUp, type SignedUp } from "./auth.ts";
import { grantUnlimitedPlan } from "./billing.ts";
import type { TestDatabase } from "./database.ts";

/** Runs a GraphQL operation and returns `data`, failing the test on any error. */
export async function gqlOk<T = Record<string, any>>(
  api: TestApp,
  token: string | undefined,
  query: string,
  variables?: Record<string, unknown>,
): Promise<T> {
  const res = await graphql(api, query, { token, variables });
  expect(res.body.errors, JSON.stringify(res.body.errors)).toBeUndefined();
  return res.body.data as T;
}

/** Runs a GraphQL operation expected to fail; returns its first error's code and message. */
export async function gqlError(api: TestApp, token: string | undefined, query: string, variables?: Record<string, unknown>) {
  const res = await graphql(api, query, { token, variables });
  expect(res.body.errors, JSON.stringify(res.body)).toBeDefined();
  return { code: res.body.errors[0].extensions?.code as string | undefined, message: res.body.errors[0].message as string };
}

/**
 * Two organizations seen from every role: Acme (owner, admin, member) with a project, a task
 * created and assigned by the member and a comment; Globex (outsider) with its own project and task;
 * and a site administrator who belongs to neither. Both are on a plan without limits.
 */
export interface Tenants {
  owner: SignedUp;
  admin: SignedUp;
  member: SignedUp;
  outsider: SignedUp;
  siteAdmin: SignedUp;
  acme: { id: string; membership: Record<"owner" | "admin" | "member", string>; projectId: string; taskId: string; commentId: string };
  globex: { id: string; projectId: string; taskId: string };
}

export async function arrangeTenants(api: TestApp, db: TestDatabase, label = "t"): Promise<Tenants> {
  const [owner, admin, member, outsider, siteAdmin] = await Promise.all(
    ["Olivia Owner", "Adam Admin", "Mia Member", "Otto Outsider", "Sam Siteadmin"].map((name) => signUp(api, { name })),
  );
  await db.root.query("update app_public.users set is_admin = true where id = $1", [siteAdmin!.id]);
  const slug = `${label}-${owner!.id.slice(0, 8)}`;

  const create = `mutation ($slug: String!, $name: String!) { createOrganization(input: { slug: $slug, name: $name }) { organization { rowId } } }`;
  const acmeId = (await gqlOk(api, owner!.accessToken, create, { slug: `acme-${slug}`, name: "Acme" })).createOrganization.organization.rowId;
  const globexId = (await gqlOk(api, outsider!.accessToken, create, { slug: `globex-${slug}`, name: "Globex" })).createOrganization.organization.rowId;
  // These suites are about roles and tenancy, not plan limits.
  await Promise.all([grantUnlimitedPlan(db, acmeId), grantUnlimitedPlan(db, globexId)]);
  const { rows } = await db.root.query<{ id: string; role: string }>(
    `insert into app_public.organization_memberships (organization_id, user_id, role)
     values ($1, $2, 'admin'), ($1, $3, 'member') returning id, role`,
    [acmeId, admin!.id, member!.id],
  );
  const ownerMembership = await db.root.query<{ id: string }>(
    "select id from app_public.organization_memberships where organization_id = $1 and user_id = $2",
    [acmeId, owner!.id],
  );

  const createProject = `mutation ($org: UUID!, $name: String!) { createProject(input: { project: { organizationId: $org, name: $name } }) { project { rowId } } }`;
  const createTask = `mutation ($project: UUID!, $title: String!, $assignee: UUID) {
    createTask(input: { task: { projectId: $project, title: $title, assigneeId: $assignee } }) { task { rowId } } }`;
  const projectId = (await gqlOk(api, member!.accessToken, createProject, { org: acmeId, name: "Launch" })).createProject.project.rowId;
  const taskId = (await gqlOk(api, member!.accessToken, createTask, { project: projectId, title: "Write the press release", assignee: member!.id }))
    .createTask.task.rowId;
  const commentId = (
    await gqlOk(api, member!.accessToken, `mutation ($task: UUID!) { createTaskComment(input: { taskComment: { taskId: $task, body: "First draft is up" } }) { taskComment { rowId } } }`, {
      task: taskId,
    })
  ).createTaskComment.taskComment.rowId;
  const globexProject = (await gqlOk(api, outsider!.accessToken, createProject, { org: globexId, name: "Secret plans" })).createProject.project.rowId;
  const globexTask = (await gqlOk(api, outsider!.accessToken, createTask, { project: globexProject, title: "Globex-only task" })).createTask.task.rowId;

  return {
    owner: owner!,
    admin: admin!,
    member: member!,
    outsider: outsider!,
    siteAdmin: siteAdmin!,
    acme: {
      id: acmeId,
      membership: {
        owner: ownerMembership.rows[0]!.id,
        admin: rows.find((r) => r.role === "admin")!.id,
        member: rows.find((r) => r.role === "member")!.id,
      },
      projectId,
      taskId,
      commentId,
    },
    globex: { id: globexId, projectId: globexProject, taskId: globexTask },
  };
}
