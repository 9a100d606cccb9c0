// Deterministic benchmark data: organizations, users, memberships, projects, tasks and comments,
// generated in SQL (md5 of the row number, so every run loads the same rows) with the triggers
// off (the activity log and positions are not what is measured), in a few seconds. Each
// organization gets every kind of title, so the searches find rows in every tenant.
import type pg from "pg";

export interface BenchSize {
  name: string;
  organizations: number;
  usersPerOrganization: number;
  projectsPerOrganization: number;
  tasks: number;
  commentsPerTask: number;
}

export const SIZES: Record<"small" | "large", BenchSize> = {
  small: { name: "20k tasks", organizations: 50, usersPerOrganization: 10, projectsPerOrganization: 4, tasks: 20_000, commentsPerTask: 2 },
  large: { name: "200k tasks", organizations: 50, usersPerOrganization: 10, projectsPerOrganization: 4, tasks: 200_000, commentsPerTask: 2 },
};

/** A uuid that is the same on every run for the same (kind, n). */
const id = (kind: string, n: string) => `md5('${kind}' || ${n})::uuid`;

export async function loadData(root: pg.Pool, size: BenchSize): Promise<void> {
  const client = await root.connect();
  try {
    await client.query("begin");
    await client.query("set local session_replication_role = replica");
    await client.query("truncate app_public.organizations, app_public.users cascade");
    const { organizations: orgs, usersPerOrganization: upo, projectsPerOrganization: ppo, tasks, commentsPerTask: cpt } = size;
    const users = orgs * upo;
    await client.query(
      `insert into app_public.users (id, email, name, email_verified_at)
       select ${id("user", "u")}, 'user' || u || '@bench.example', 'User ' || u, now() from generate_series(1, ${users}) u`,
    );
    await client.query(
      `insert into app_public.organizations (id, slug, name) select ${id("org", "o")}, 'org-' || o, 'Organization ' || o from generate_series(1, ${orgs}) o`,
    );
    await client.query(
      `insert into app_public.organization_memberships (organization_id, user_id, role)
       select ${id("org", "((u - 1) / " + upo + " + 1)")}, ${id("user", "u")},
              (case when (u - 1) % ${upo} = 0 then 'owner' when (u - 1) % ${upo} = 1 then 'admin' else 'member' end)::app_public.organization_role
       from generate_series(1, ${users}) u`,
    );
    await client.query(
      `insert into app_public.projects (id, organization_id, name)
       select ${id("project", "p")}, ${id("org", "((p - 1) / " + ppo + " + 1)")}, 'Project ' || p from generate_series(1, ${orgs * ppo}) p`,
    );
    // Tasks spread over the projects; each column's positions distinct.
    await client.query(
      `insert into app_public.tasks (id, organization_id, project_id, title, description, status, priority, assignee_id, due_at, position, created_by)
       select ${id("task", "t")}, ${id("org", "((p - 1) / " + ppo + " + 1)")}, ${id("project", "p")},
              'Task ' || t || ' ' || (array['landing page', 'release notes', 'invoice', 'onboarding', 'bug'])[(t / ${orgs * ppo}) % 5 + 1],
              'Description of task ' || t, (array['todo', 'in_progress', 'done', 'canceled'])[t % 4 + 1]::app_public.task_status,
              (array['low', 'medium', 'high', 'urgent'])[t % 4 + 1]::app_public.task_priority,
              ${id("user", "(((p - 1) / " + ppo + ") * " + upo + " + t % " + upo + " + 1)")},
              now() + ((t % 60) - 30) * interval '1 day', t, ${id("user", "(((p - 1) / " + ppo + ") * " + upo + " + 1)")}
       from (select t, (t - 1) % ${orgs * ppo} + 1 as p from generate_series(1, ${tasks}) t) s`,
    );
    await client.query(
      `insert into app_public.task_comments (organization_id, task_id, author_id, body)
       select t.organization_id, t.id, t.assignee_id, 'Comment ' || c || ' on ' || t.title
       from app_public.tasks t, generate_series(1, ${cpt}) c`,
    );
    await client.query("commit");
    // As autovacuum would leave a table that has settled: statistics and the visibility map.
    await client.query("vacuum analyze");
  } catch (error) {
    await client.query("rollback").catch(() => undefined);
    throw error;
  } finally {
    client.release();
  }
}

/** The ids a workload needs: a member of the first organization, its first project and task. */
export const FIXTURE = {
  member: "md5('user' || 3)::uuid",
  project: "md5('project' || 1)::uuid",
  task: "md5('task' || 1)::uuid",
};
