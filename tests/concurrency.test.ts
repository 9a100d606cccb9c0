import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildTestApp, type TestApp } from "./helpers/app.ts";
import { graphql, RELAXED_LIMITS, signUp, type SignedUp } from "./helpers/auth.ts";
import { grantUnlimitedPlan } from "./helpers/billing.ts";
import { createTestDatabase, type TestDatabase } from "./helpers/database.ts";
import { gqlOk } from "./helpers/tenants.ts";
import { pgSettingsFor, userIdentity } from "../src/db/request-role.ts";

let db: TestDatabase;
let api: TestApp;

beforeAll(async () => {
  db = await createTestDatabase();
  // Enough connections that racing requests really run side by side in the database.
  api = await buildTestApp(db, { env: RELAXED_LIMITS, poolSize: 12 });
});

afterAll(async () => {
  await api?.close();
  await db?.drop();
});

const ROUNDS = 5;

/** An organization with `owners` owners (the first created it), each signed in. */
async function organizationWithOwners(owners: number) {
  const people = await Promise.all(Array.from({ length: owners }, () => signUp(api)));
  const creator = people[0]!;
  const org = await gqlOk(api, creator.accessToken, `mutation ($slug: String!) { createOrganization(input: { slug: $slug, name: "Race" }) { organization { rowId } } }`, {
    slug: `race-${creator.id.slice(0, 12)}`,
  });
  const orgId = org.createOrganization.organization.rowId as string;
  await grantUnlimitedPlan(db, orgId);
  for (const person of people.slice(1)) {
    await db.root.query("insert into app_public.organization_memberships (organization_id, user_id, role) values ($1, $2, 'owner')", [orgId, person.id]);
  }
  const { rows } = await db.root.query<{ id: string; user_id: string }>(
    "select id, user_id from app_public.organization_memberships where organization_id = $1",
    [orgId],
  );
  const membershipOf = (user: SignedUp) => rows.find((r) => r.user_id === user.id)!.id;
  return { orgId, people, membershipOf };
}

async function owners(orgId: string): Promise<number> {
  const { rows } = await db.root.query<{ n: number }>(
    "select count(*)::int as n from app_public.organization_memberships where organization_id = $1 and role = 'owner'",
    [orgId],
  );
  return rows[0]!.n;
}

describe("the one-owner invariant under concurrency", () => {
  it("of two owners leaving at the same moment, exactly one succeeds and the other is told why", async () => {
    for (let round = 0; round < ROUNDS; round++) {
      const { orgId, people } = await organizationWithOwners(2);
      const results = await Promise.all(
        people.map((person) =>
          graphql(api, `mutation ($org: UUID!) { leaveOrganization(input: { organizationId: $org }) { membership { rowId } } }`, {
            token: person.accessToken,
            variables: { org: orgId },
          }),
        ),
      );
      const codes = results.map((res) => res.body.errors?.[0]?.extensions?.code ?? "ok").sort();
      expect(codes).toEqual(["last_owner", "ok"]);
      expect(await owners(orgId)).toBe(1);
    }
  });

  it("two owners demoting each other at once leave one owner", async () => {
    for (let round = 0; round < ROUNDS; round++) {
      const { orgId, people, membershipOf } = await organizationWithOwners(2);
      const [a, b] = people as [SignedUp, SignedUp];
      const demote = (who: SignedUp, whom: SignedUp) =>
        graphql(api, `mutation ($id: UUID!) { changeMemberRole(input: { membershipId: $id, role: admin }) { membership { role } } }`, {
          token: who.accessToken,
          variables: { id: membershipOf(whom) },
        });
      const results = await Promise.all([demote(a, b), demote(b, a)]);
      const codes = results.map((res) => res.body.errors?.[0]?.extensions?.code ?? "ok").sort();
      // The second to run is no longer an owner by then, so it may not change an owner's role.
      expect(codes).toEqual(["forbidden", "ok"]);
      expect(await owners(orgId)).toBe(1);
    }
  });

  it("many owners leaving at once always leave at least one owner behind", async () => {
    const { orgId, people } = await organizationWithOwners(6);
    const results = await Promise.all(
      people.map((person) =>
        graphql(api, `mutation ($org: UUID!) { leaveOrganization(input: { organizationId: $org }) { membership { rowId } } }`, {
          token: person.accessToken,
          variables: { org: orgId },
        }),
      ),
    );
    expect(results.filter((res) => !res.body.errors)).toHaveLength(5);
    expect(await owners(orgId)).toBe(1);
  });
});

describe("task positions under concurrency", () => {
  let owner: SignedUp;
  let projectId: string;

  beforeAll(async () => {
    owner = await signUp(api);
    const org = await gqlOk(api, owner.accessToken, `mutation ($slug: String!) { createOrganization(input: { slug: $slug, name: "Board" }) { organization { rowId } } }`, {
      slug: `board-${owner.id.slice(0, 12)}`,
    });
    const project = await gqlOk(api, owner.accessToken, `mutation ($org: UUID!) { createProject(input: { project: { organizationId: $org, name: "Busy" } }) { project { rowId } } }`, {
      org: org.createOrganization.organization.rowId,
    });
    projectId = project.createProject.project.rowId;
  });

  const positions = async (status: string) => {
    const { rows } = await db.root.query<{ position: string }>(
      "select position from app_public.tasks where project_id = $1 and status = $2 order by position",
      [projectId, status],
    );
    return rows.map((row) => row.position);
  };

  it("tasks created at the same moment get distinct positions, in one column", async () => {
    const results = await Promise.all(
      Array.from({ length: 24 }, (_, i) =>
        graphql(api, `mutation ($p: UUID!, $title: String!) { createTask(input: { task: { projectId: $p, title: $title } }) { task { rowId } } }`, {
          token: owner.accessToken,
          variables: { p: projectId, title: `Parallel ${i}` },
        }),
      ),
    );
    expect(results.filter((res) => res.body.errors)).toEqual([]);
    const todo = await positions("todo");
    expect(todo).toHaveLength(24);
    expect(new Set(todo).size).toBe(24);
  });

  it("tasks moved to the top of a column at the same moment stay distinct and all arrive", async () => {
    const { rows } = await db.root.query<{ id: string }>("select id from app_public.tasks where project_id = $1 and status = 'todo' limit 12", [projectId]);
    const results = await Promise.all(
      rows.map((row) =>
        graphql(api, `mutation ($id: UUID!) { moveTask(input: { taskId: $id, status: in_progress }) { task { rowId } } }`, {
          token: owner.accessToken,
          variables: { id: row.id },
        }),
      ),
    );
    expect(results.filter((res) => res.body.errors)).toEqual([]);
    const inProgress = await positions("in_progress");
    expect(inProgress).toHaveLength(12);
    expect(new Set(inProgress).size).toBe(12);
  });

  it("status changes racing into a column append to its end without colliding", async () => {
    const { rows } = await db.root.query<{ id: string }>("select id from app_public.tasks where project_id = $1 and status = 'todo'", [projectId]);
    const results = await Promise.all(
      rows.map((row) =>
        graphql(api, `mutation ($id: UUID!) { updateTask(input: { rowId: $id, patch: { status: done } }) { task { rowId } } }`, {
          token: owner.accessToken,
          variables: { id: row.id },
        }),
      ),
    );
    expect(results.filter((res) => res.body.errors)).toEqual([]);
    const done = await positions("done");
    expect(done).toHaveLength(rows.length);
    expect(new Set(done).size).toBe(rows.length);
  });

  it("moving a task while someone edits its status never deadlocks, whichever locks first", async () => {
    // Force the interleaving that deadlocked when moveTask locked the project before the task:
    // an edit holds the task's row, a move starts, then the edit needs the project's position lock.
    const { rows } = await db.root.query<{ id: string }>("select id from app_public.tasks where project_id = $1 limit 1", [projectId]);
    const taskId = rows[0]!.id;
    const session = await db.root.query<{ id: string }>("select id from app_private.sessions where user_id = $1 limit 1", [owner.id]);
    const settings = JSON.stringify(pgSettingsFor(userIdentity({ userId: owner.id, sessionId: session.rows[0]!.id }), { roles: db.urls.roles, requireVerifiedEmail: false, pastDueGraceSeconds: 7 * 86400 }));
    const [edit, move] = await Promise.all([db.root.connect(), db.root.connect()]);
    try {
      for (const client of [edit, move]) {
        await client.query("begin");
        await client.query("select pg_catalog.set_config(key, value, true) from json_each_text($1::json)", [settings]);
      }
      await edit.query("select 1 from app_public.tasks where id = $1 for no key update", [taskId]);
      const movePid = (await move.query<{ pid: number }>("select pg_backend_pid() as pid")).rows[0]!.pid;
      const moving = move.query("select app_public.move_task($1, 'in_progress')", [taskId]).then(() => move.query("commit"));
      await expect.poll(async () => (await db.root.query("select wait_event_type from pg_stat_activity where pid = $1", [movePid])).rows[0]?.wait_event_type).toBe("Lock");
      await edit.query("update app_public.tasks set status = 'done' where id = $1", [taskId]);
      await edit.query("commit");
      await moving;
    } finally {
      for (const client of [edit, move]) {
        await client.query("rollback").catch(() => {});
        client.release();
      }
    }
    const { rows: after } = await db.root.query("select status from app_public.tasks where id = $1", [taskId]);
    expect(after).toEqual([{ status: "in_progress" }]);
  });

  it("the database itself refuses two tasks at one position in a column", async () => {
    const { rows } = await db.root.query<{ id: string; position: string }>(
      "select id, position from app_public.tasks where project_id = $1 and status = 'done' order by position limit 2",
      [projectId],
    );
    await expect(
      db.root.query("update app_public.tasks set position = $2 where id = $1", [rows[1]!.id, rows[0]!.position]),
    ).rejects.toMatchObject({ code: "23505" });
  });

  it("moving between the same two neighbours again and again makes room instead of colliding", async () => {
    const column = async () =>
      (await db.root.query<{ id: string; title: string }>(
        "select id, title from app_public.tasks where project_id = $1 and status = 'canceled' order by position",
        [projectId],
      )).rows;
    const { rows } = await db.root.query<{ id: string }>("select id from app_public.tasks where project_id = $1 and status = 'done' limit 3", [projectId]);
    const [first, second, mover] = rows.map((row) => row.id) as [string, string, string];
    const move = (id: string, after?: string) =>
      gqlOk(api, owner.accessToken, `mutation ($id: UUID!, $after: UUID) { moveTask(input: { taskId: $id, status: canceled, afterTaskId: $after }) { task { rowId } } }`, {
        id,
        after,
      });
    await move(second);
    await move(first);
    await move(mover, second);
    // Each move lands halfway between `first` and its neighbour, halving the gap; past 12
    // decimals the column is numbered afresh, so positions stay short and the order holds.
    for (let i = 0; i < 80; i++) {
      await move(mover, first);
      await move(second, first);
    }
    expect((await column()).map((row) => row.id)).toEqual([first, second, mover]);
    const { rows: digits } = await db.root.query<{ scale: number }>(
      "select max(scale(position)) as scale from app_public.tasks where project_id = $1 and status = 'canceled'",
      [projectId],
    );
    expect(digits[0]!.scale).toBeLessThanOrEqual(12);
  });
});
