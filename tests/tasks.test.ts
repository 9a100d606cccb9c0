import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildTestApp, type TestApp } from "./helpers/app.ts";
import { RELAXED_LIMITS } from "./helpers/auth.ts";
import { createTestDatabase, type TestDatabase } from "./helpers/database.ts";
import { arrangeTenants, gqlError, gqlOk, type Tenants } from "./helpers/tenants.ts";

let db: TestDatabase;
let api: TestApp;
let t: Tenants;

beforeAll(async () => {
  db = await createTestDatabase();
  api = await buildTestApp(db, { env: RELAXED_LIMITS });
  t = await arrangeTenants(api, db, "tasks");
});

afterAll(async () => {
  await api?.close();
  await db?.drop();
});

const CREATE_PROJECT = `mutation ($org: UUID!, $name: String!) { createProject(input: { project: { organizationId: $org, name: $name } }) { project { rowId } } }`;
const CREATE_TASK = `mutation ($task: TaskInput!) { createTask(input: { task: $task }) { task { rowId title status priority position completedAt assigneeId organizationId creator { name } } } }`;
const UPDATE_TASK = `mutation ($id: UUID!, $patch: TaskPatch!) { updateTask(input: { rowId: $id, patch: $patch }) { task { status completedAt title } } }`;
const MOVE = `mutation ($id: UUID!, $status: TaskStatus!, $after: UUID) { moveTask(input: { taskId: $id, status: $status, afterTaskId: $after }) { task { rowId status } } }`;

async function newProject(name: string) {
  return (await gqlOk(api, t.member.accessToken, CREATE_PROJECT, { org: t.acme.id, name })).createProject.project.rowId as string;
}

async function newTask(projectId: string, title: string, extra: Record<string, unknown> = {}) {
  return (await gqlOk(api, t.member.accessToken, CREATE_TASK, { task: { projectId, title, ...extra } })).createTask.task;
}

async function column(projectId: string, status: string): Promise<string[]> {
  const data = await gqlOk(
    api,
    t.member.accessToken,
    `query ($p: UUID!, $s: TaskStatus!) { tasks(condition: { projectId: $p, status: $s }, orderBy: POSITION_ASC) { nodes { title } } }`,
    { p: projectId, s: status },
  );
  return data.tasks.nodes.map((n: { title: string }) => n.title);
}

describe("creating and editing tasks", () => {
  it("takes the organization from the project, records the creator and appends to the column", async () => {
    const projectId = await newProject("Board");
    const first = await newTask(projectId, "First");
    const second = await newTask(projectId, "Second", { priority: "high" });
    expect(first).toMatchObject({ organizationId: t.acme.id, status: "todo", priority: "medium", creator: { name: "Mia Member" } });
    expect(Number(second.position)).toBeGreaterThan(Number(first.position));
    expect(second.priority).toBe("high");
  });

  it("only assigns members of the task's organization", async () => {
    const error = await gqlError(api, t.member.accessToken, CREATE_TASK, {
      task: { projectId: t.acme.projectId, title: "For an outsider", assigneeId: t.outsider.id },
    });
    expect(error.code).toBe("conflict");
    const ok = await newTask(t.acme.projectId, "For the admin", { assigneeId: t.admin.id });
    expect(ok.assigneeId).toBe(t.admin.id);
  });

  it("refuses a task in a project the caller cannot see, and explains bad input", async () => {
    expect((await gqlError(api, t.member.accessToken, CREATE_TASK, { task: { projectId: t.globex.projectId, title: "Sneaky" } })).code).toBe("not_found");
    expect((await gqlError(api, t.member.accessToken, CREATE_TASK, { task: { projectId: t.acme.projectId, title: "   " } })).code).toBe("validation_failed");
    expect(
      (await gqlError(api, t.member.accessToken, CREATE_TASK, { task: { projectId: "00000000-0000-4000-8000-000000000000", title: "Nowhere" } })).code,
    ).toBe("not_found");
  });

  it("sets completedAt when a task is done and clears it when reopened", async () => {
    const task = await newTask(t.acme.projectId, "Finish me");
    const done = await gqlOk(api, t.member.accessToken, UPDATE_TASK, { id: task.rowId, patch: { status: "done" } });
    expect(done.updateTask.task.completedAt).toEqual(expect.any(String));
    const reopened = await gqlOk(api, t.member.accessToken, UPDATE_TASK, { id: task.rowId, patch: { status: "in_progress" } });
    expect(reopened.updateTask.task.completedAt).toBeNull();
  });
});

describe("moveTask", () => {
  it("moves within and between columns in one call", async () => {
    const projectId = await newProject("Kanban");
    const a = await newTask(projectId, "A");
    const b = await newTask(projectId, "B");
    const c = await newTask(projectId, "C");
    expect(await column(projectId, "todo")).toEqual(["A", "B", "C"]);

    await gqlOk(api, t.member.accessToken, MOVE, { id: c.rowId, status: "todo", after: a.rowId });
    expect(await column(projectId, "todo")).toEqual(["A", "C", "B"]);
    await gqlOk(api, t.member.accessToken, MOVE, { id: b.rowId, status: "todo" });
    expect(await column(projectId, "todo")).toEqual(["B", "A", "C"]);

    await gqlOk(api, t.member.accessToken, MOVE, { id: a.rowId, status: "in_progress" });
    await gqlOk(api, t.member.accessToken, MOVE, { id: c.rowId, status: "in_progress", after: a.rowId });
    expect(await column(projectId, "todo")).toEqual(["B"]);
    expect(await column(projectId, "in_progress")).toEqual(["A", "C"]);
  });

  it("refuses an anchor from another column and tasks the caller cannot see", async () => {
    const projectId = await newProject("Anchors");
    const a = await newTask(projectId, "A");
    const b = await newTask(projectId, "B");
    expect((await gqlError(api, t.member.accessToken, MOVE, { id: a.rowId, status: "done", after: b.rowId })).code).toBe("validation_failed");
    expect((await gqlError(api, t.member.accessToken, MOVE, { id: t.globex.taskId, status: "done" })).code).toBe("not_found");
  });
});

describe("archived projects", () => {
  it("are read-only until unarchived, and only managers archive", async () => {
    const projectId = await newProject("Old stuff");
    const task = await newTask(projectId, "Leftover");
    const archive = `mutation ($id: UUID!) { archiveProject(input: { projectId: $id }) { project { archivedAt } } }`;
    expect((await gqlError(api, t.member.accessToken, archive, { id: projectId })).code).toBe("forbidden");
    expect((await gqlOk(api, t.admin.accessToken, archive, { id: projectId })).archiveProject.project.archivedAt).toEqual(expect.any(String));

    expect((await gqlError(api, t.member.accessToken, UPDATE_TASK, { id: task.rowId, patch: { title: "Edited" } })).code).toBe("project_archived");
    expect((await gqlError(api, t.member.accessToken, CREATE_TASK, { task: { projectId, title: "New" } })).code).toBe("project_archived");
    expect(
      (await gqlError(api, t.member.accessToken, `mutation ($id: UUID!) { createTaskComment(input: { taskComment: { taskId: $id, body: "hi" } }) { taskComment { rowId } } }`, { id: task.rowId })).code,
    ).toBe("project_archived");
    expect(
      (await gqlError(api, t.member.accessToken, `mutation ($id: UUID!) { updateProject(input: { rowId: $id, patch: { name: "Renamed" } }) { project { name } } }`, { id: projectId })).code,
    ).toBe("project_archived");

    await gqlOk(api, t.owner.accessToken, `mutation ($id: UUID!) { unarchiveProject(input: { projectId: $id }) { project { archivedAt } } }`, { id: projectId });
    expect((await gqlOk(api, t.member.accessToken, UPDATE_TASK, { id: task.rowId, patch: { title: "Edited" } })).updateTask.task.title).toBe("Edited");
  });
});

describe("reading tasks", () => {
  let projectId: string;
  beforeAll(async () => {
    projectId = await newProject("Catalog");
    const specs = [
      { title: "Design the landing page", priority: "high", status: "in_progress", description: "Hero section with the product screenshot" },
      { title: "Write onboarding emails", priority: "low", status: "todo", description: "Welcome, activation and nudge emails" },
      { title: "Fix login redirect", priority: "urgent", status: "todo", assigneeId: t.member.id, dueAt: "2026-12-01T09:00:00Z" },
      { title: "Ship pricing page", priority: "medium", status: "done", dueAt: "2026-11-20T09:00:00Z" },
      { title: "Landing page copy review", priority: "high", status: "todo", assigneeId: t.admin.id },
    ];
    for (const { title, ...rest } of specs) await newTask(projectId, title, rest);
  });

  it("filters by status, priority, assignee and due date", async () => {
    const data = await gqlOk(
      api,
      t.member.accessToken,
      `query ($p: UUID!) {
        open: tasks(filter: { projectId: { equalTo: $p }, status: { in: [todo, in_progress] } }) { totalCount }
        urgentOrHigh: tasks(filter: { projectId: { equalTo: $p }, priority: { in: [urgent, high] } }, orderBy: TITLE_ASC) { nodes { title } }
        mine: tasks(filter: { projectId: { equalTo: $p }, assigneeId: { equalTo: "${t.member.id}" } }) { nodes { title } }
        dueSoon: tasks(filter: { projectId: { equalTo: $p }, dueAt: { lessThan: "2026-11-25T00:00:00Z" } }) { nodes { title } }
        titled: tasks(filter: { projectId: { equalTo: $p }, title: { includesInsensitive: "landing" } }) { totalCount }
      }`,
      { p: projectId },
    );
    expect(data.open.totalCount).toBe(4);
    expect(data.urgentOrHigh.nodes.map((n: { title: string }) => n.title)).toEqual([
      "Design the landing page",
      "Fix login redirect",
      "Landing page copy review",
    ]);
    expect(data.mine.nodes).toEqual([{ title: "Fix login redirect" }]);
    expect(data.dueSoon.nodes).toEqual([{ title: "Ship pricing page" }]);
    expect(data.titled.totalCount).toBe(2);
  });

  it("pages through with cursors and a total count", async () => {
    const page = `query ($p: UUID!, $after: Cursor) {
      tasks(condition: { projectId: $p }, orderBy: [TITLE_ASC], first: 2, after: $after) {
        totalCount pageInfo { hasNextPage endCursor } nodes { title } } }`;
    const titles: string[] = [];
    let after: string | null = null;
    let pages = 0;
    do {
      const data: any = await gqlOk(api, t.member.accessToken, page, { p: projectId, after });
      expect(data.tasks.totalCount).toBe(5);
      titles.push(...data.tasks.nodes.map((n: { title: string }) => n.title));
      after = data.tasks.pageInfo.hasNextPage ? data.tasks.pageInfo.endCursor : null;
      pages++;
    } while (after);
    expect(pages).toBe(3);
    expect(titles).toEqual([...titles].sort());
    expect(titles).toHaveLength(5);
  });

  it("searches titles and descriptions, best match first, only among visible tasks", async () => {
    const data = await gqlOk(api, t.member.accessToken, `{ searchTasks(query: "landing page") { totalCount nodes { title } } }`);
    expect(data.searchTasks.nodes.map((n: { title: string }) => n.title)).toEqual(
      expect.arrayContaining(["Design the landing page", "Landing page copy review"]),
    );
    expect(data.searchTasks.totalCount).toBe(2);
    const emails = await gqlOk(api, t.member.accessToken, `{ searchTasks(query: "activation") { nodes { title } } }`);
    expect(emails.searchTasks.nodes).toEqual([{ title: "Write onboarding emails" }]);
    const outsider = await gqlOk(api, t.outsider.accessToken, `{ searchTasks(query: "landing") { totalCount } }`);
    expect(outsider.searchTasks.totalCount).toBe(0);
  });

  it("a search is at most 1,000 characters, and text the parser cannot take is a validation error, not an internal one", async () => {
    const search = `query ($q: String!) { searchTasks(query: $q) { totalCount nodes { title } } }`;
    const long = await gqlError(api, t.member.accessToken, search, { q: "landing ".repeat(126) });
    expect(long).toMatchObject({ code: "validation_failed", message: "A search is at most 1,000 characters (this one has 1008)." });
    const dashes = await gqlError(api, t.member.accessToken, search, { q: `${"-".repeat(33)}landing` });
    expect(dashes).toMatchObject({ code: "validation_failed", message: expect.stringMatching(/^This search cannot be understood/) });
    const anonymous = await gqlError(api, undefined, search, { q: `${"-".repeat(40)}x` });
    expect(anonymous.code).toBe("validation_failed");
    expect((await gqlOk(api, t.member.accessToken, search, { q: "landing ".repeat(125) })).searchTasks.totalCount).toBe(2);
  });

  it("loads a project's tasks with assignee and comment count in a single database round trip", async () => {
    const statements: string[] = [];
    const pool = api.pools.authenticator;
    const record = (client: { query: (...args: any[]) => any }) => {
      const original = client.query.bind(client);
      client.query = (...args: any[]) => {
        const text = typeof args[0] === "string" ? args[0] : args[0]?.text;
        if (typeof text === "string") statements.push(text);
        return original(...args);
      };
    };
    const clients: any[] = (pool as any)._clients ?? [];
    clients.forEach(record);
    pool.on("connect", record);
    try {
      const data = await gqlOk(
        api,
        t.member.accessToken,
        `query ($p: UUID!) { project(rowId: $p) { name tasks(orderBy: CREATED_AT_ASC) { nodes { title assignee { name } comments { totalCount } } } } }`,
        { p: t.acme.projectId },
      );
      expect(data.project.tasks.nodes[0]).toEqual({ title: "Write the press release", assignee: { name: "Mia Member" }, comments: { totalCount: 1 } });
    } finally {
      pool.removeListener("connect", record);
    }
    const dataQueries = statements.filter((sql) => /\bfrom\s+"app_public"\./i.test(sql));
    expect(dataQueries).toHaveLength(1);
  });
});

describe("activity", () => {
  it("records who did what, with a small diff, readable by members only", async () => {
    const task = await newTask(t.acme.projectId, "Tracked task");
    await gqlOk(api, t.member.accessToken, UPDATE_TASK, { id: task.rowId, patch: { title: "Tracked task, renamed", status: "in_progress" } });
    const data = await gqlOk(
      api,
      t.owner.accessToken,
      `query ($id: UUID!) { activities(condition: { entityId: $id }, orderBy: CREATED_AT_ASC) { nodes { action entityType diff actor { name } } } }`,
      { id: task.rowId },
    );
    expect(data.activities.nodes).toEqual([
      { action: "created", entityType: "task", diff: { title: "Tracked task", status: "todo" }, actor: { name: "Mia Member" } },
      {
        action: "updated",
        entityType: "task",
        diff: { title: ["Tracked task", "Tracked task, renamed"], status: ["todo", "in_progress"] },
        actor: { name: "Mia Member" },
      },
    ]);
    const outsider = await gqlOk(api, t.outsider.accessToken, `query ($id: UUID!) { activities(condition: { entityId: $id }) { totalCount } }`, { id: task.rowId });
    expect(outsider.activities.totalCount).toBe(0);
  });
});
