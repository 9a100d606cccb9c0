import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildTestApp, captureLogger, type TestApp } from "./helpers/app.ts";
import { graphql, RELAXED_LIMITS } from "./helpers/auth.ts";
import { createTestDatabase, type TestDatabase } from "./helpers/database.ts";
import { arrangeTenants, gqlError, gqlOk, type Tenants } from "./helpers/tenants.ts";

let db: TestDatabase;
let api: TestApp;
let t: Tenants;

const NOWHERE = "00000000-0000-4000-8000-000000000000";

beforeAll(async () => {
  db = await createTestDatabase();
  api = await buildTestApp(db, { env: RELAXED_LIMITS });
  t = await arrangeTenants(api, db, "refuse");
});

afterAll(async () => {
  await api?.close();
  await db?.drop();
});

/** The error a member of Acme gets, as {code, message}, for an operation with `variables`. */
const refusal = (query: string, variables: Record<string, unknown>) => gqlError(api, t.member.accessToken, query, variables);

describe("refusals answer not_found, the same for a row you cannot see as for one that does not exist", () => {
  const cases: Array<[name: string, query: string, mine: () => string, theirs: () => string]> = [
    ["updateTask", `mutation ($id: UUID!) { updateTask(input: { rowId: $id, patch: { title: "Mine now" } }) { task { rowId } } }`, () => t.acme.taskId, () => t.globex.taskId],
    ["deleteTask", `mutation ($id: UUID!) { deleteTask(input: { rowId: $id }) { task { rowId } } }`, () => t.acme.taskId, () => t.globex.taskId],
    ["updateProject", `mutation ($id: UUID!) { updateProject(input: { rowId: $id, patch: { name: "Mine now" } }) { project { rowId } } }`, () => t.acme.projectId, () => t.globex.projectId],
    ["deleteProject", `mutation ($id: UUID!) { deleteProject(input: { rowId: $id }) { project { rowId } } }`, () => t.acme.projectId, () => t.globex.projectId],
    ["deleteTaskComment", `mutation ($id: UUID!) { deleteTaskComment(input: { rowId: $id }) { taskComment { rowId } } }`, () => t.acme.commentId, () => t.acme.commentId],
    ["updateOrganization", `mutation ($id: UUID!) { updateOrganization(input: { rowId: $id, patch: { name: "Mine now" } }) { organization { rowId } } }`, () => t.acme.id, () => t.globex.id],
    ["moveTask", `mutation ($id: UUID!) { moveTask(input: { taskId: $id, status: done }) { task { rowId } } }`, () => t.acme.taskId, () => t.globex.taskId],
    ["archiveProject", `mutation ($id: UUID!) { archiveProject(input: { projectId: $id }) { project { rowId } } }`, () => t.acme.projectId, () => t.globex.projectId],
    ["createTask", `mutation ($id: UUID!) { createTask(input: { task: { projectId: $id, title: "Sneaky" } }) { task { rowId } } }`, () => t.acme.projectId, () => t.globex.projectId],
    [
      "createTaskComment",
      `mutation ($id: UUID!) { createTaskComment(input: { taskComment: { taskId: $id, body: "Sneaky" } }) { taskComment { rowId } } }`,
      () => t.acme.taskId,
      () => t.globex.taskId,
    ],
  ];

  for (const [name, query, , theirs] of cases.filter(([name]) => name !== "deleteTaskComment")) {
    it(`${name} of another organization's row`, async () => {
      const hidden = await refusal(query, { id: theirs() });
      const missing = await refusal(query, { id: NOWHERE });
      expect(hidden.code).toBe("not_found");
      expect(hidden).toEqual(missing);
    });
  }

  it("deleteTaskComment by an outsider, and by a member who may see but not delete it", async () => {
    const outsider = await gqlError(api, t.outsider.accessToken, cases[4]![1], { id: t.acme.commentId });
    const notTheirs = await gqlError(api, t.admin.accessToken, `mutation ($id: UUID!) { updateTaskComment(input: { rowId: $id, patch: { body: "Edited" } }) { taskComment { rowId } } }`, {
      id: t.acme.commentId,
    });
    const missing = await gqlError(api, t.outsider.accessToken, cases[4]![1], { id: NOWHERE });
    expect(outsider).toEqual(missing);
    expect(outsider).toEqual({ code: "not_found", message: "Task comment not found, or you may not delete it." });
    expect(notTheirs).toEqual({ code: "not_found", message: "Task comment not found, or you may not change it." });
  });

  it("deleteOrganizationInvitation by a non-manager", async () => {
    const { rows } = await db.root.query(
      "insert into app_public.organization_invitations (organization_id, email, invited_by) values ($1, 'someone@example.com', $2) returning id",
      [t.globex.id, t.outsider.id],
    );
    const query = `mutation ($id: UUID!) { deleteOrganizationInvitation(input: { rowId: $id }) { organizationInvitation { rowId } } }`;
    const hidden = await refusal(query, { id: rows[0].id });
    expect(hidden).toEqual(await refusal(query, { id: NOWHERE }));
    expect(hidden.code).toBe("not_found");
  });

  it("an archived project of another organization is not found, not archived", async () => {
    await gqlOk(api, t.outsider.accessToken, `mutation ($id: UUID!) { archiveProject(input: { projectId: $id }) { project { rowId } } }`, { id: t.globex.projectId });
    try {
      const hidden = await refusal(cases[8]![1], { id: t.globex.projectId });
      expect(hidden).toEqual(await refusal(cases[8]![1], { id: NOWHERE }));
      expect(hidden).toEqual({ code: "not_found", message: "Project not found." });
    } finally {
      await gqlOk(api, t.outsider.accessToken, `mutation ($id: UUID!) { unarchiveProject(input: { projectId: $id }) { project { rowId } } }`, { id: t.globex.projectId });
    }
  });

  it("memberships of another organization are as unknown as made-up ones", async () => {
    const { rows } = await db.root.query("select id from app_public.organization_memberships where organization_id = $1", [t.globex.id]);
    for (const query of [
      `mutation ($id: UUID!) { changeMemberRole(input: { membershipId: $id, role: admin }) { membership { rowId } } }`,
      `mutation ($id: UUID!) { removeMember(input: { membershipId: $id }) { membership { rowId } } }`,
    ]) {
      const hidden = await refusal(query, { id: rows[0].id });
      expect(hidden).toEqual(await refusal(query, { id: NOWHERE }));
      expect(hidden).toEqual({ code: "not_found", message: "Membership not found." });
    }
  });

  it("a refused update changes nothing", async () => {
    await refusal(cases[0]![1], { id: t.globex.taskId });
    const { rows } = await db.root.query("select title from app_public.tasks where id = $1", [t.globex.taskId]);
    expect(rows[0].title).toBe("Globex-only task");
  });

  it("allowed updates and deletes still answer with their row", async () => {
    const created = await gqlOk(api, t.member.accessToken, `mutation ($p: UUID!) { createTask(input: { task: { projectId: $p, title: "Short-lived" } }) { task { rowId } } }`, {
      p: t.acme.projectId,
    });
    const id = created.createTask.task.rowId;
    const updated = await gqlOk(api, t.member.accessToken, `mutation ($id: UUID!) { updateTask(input: { rowId: $id, patch: { title: "Renamed" } }) { task { title } } }`, { id });
    expect(updated.updateTask.task.title).toBe("Renamed");
    const deleted = await gqlOk(api, t.member.accessToken, `mutation ($id: UUID!) { deleteTask(input: { rowId: $id }) { task { title } } }`, { id });
    expect(deleted.deleteTask.task.title).toBe("Renamed");
  });
});

describe("bad input answers validation_failed, not an internal error", () => {
  const bad: Array<[string, string, RegExp]> = [
    ["a negative first", "{ tasks(first: -1) { nodes { rowId } } }", /`first` must not be negative/],
    ["a negative offset", "{ tasks(offset: -5) { nodes { rowId } } }", /offset must not be negative/],
    ["an invalid datetime", `{ tasks(filter: { dueAt: { lessThan: "not a date" } }) { nodes { rowId } } }`, /timestamp with time zone: "not a date"/],
    ["a forged cursor", `{ tasks(after: "Zm9yZ2Vk") { nodes { rowId } } }`, /Invalid cursor/],
  ];
  for (const [label, query, message] of bad) {
    it(label, async () => {
      const error = await gqlError(api, t.member.accessToken, query);
      expect(error.code).toBe("validation_failed");
      expect(error.message).toMatch(message);
    });
  }

  it("a variable that does not fit its type, without an error in the server log", async () => {
    const log = captureLogger("info");
    const logged = await buildTestApp(db, { env: RELAXED_LIMITS, logger: log.logger });
    try {
      const res = await graphql(logged, `mutation ($id: UUID!) { updateTask(input: { rowId: $id, patch: { title: "x" } }) { task { rowId } } }`, {
        token: t.member.accessToken,
        variables: { id: "not-a-uuid" },
      });
      expect(res.body.errors[0]).toMatchObject({ message: expect.stringMatching(/^Variable "\$id" got invalid value "not-a-uuid"/), extensions: { code: "validation_failed" } });
      expect(log.lines().filter((line) => (line.level as number) >= 50)).toEqual([]);
    } finally {
      await logged.close();
    }
  });
});

describe("every GraphQL error carries extensions.code", () => {
  it("a document that does not validate or parse", async () => {
    const invalid = await request(api.app).post("/graphql").send({ query: "{ noSuchField }" });
    expect(invalid.status).toBe(400);
    expect(invalid.body.errors[0].extensions.code).toBe("graphql_validation_failed");
    const legacy = await request(api.app).post("/graphql").set("accept", "application/json").send({ query: "{ noSuchField }" });
    expect(legacy.body.errors[0].extensions.code).toBe("graphql_validation_failed");
    const unparsable = await request(api.app).post("/graphql").send({ query: "{ tasks(" });
    expect(unparsable.status).toBe(400);
    expect(unparsable.body.errors[0].extensions.code).toBe("graphql_parse_failed");
  });

  it("a body over BODY_LIMIT, a body that is not an object, a GET", async () => {
    const small = await buildTestApp(db, { env: { ...RELAXED_LIMITS, BODY_LIMIT: "1kb" } });
    try {
      const large = await request(small.app).post("/graphql").send({ query: `{ currentUserId } # ${"x".repeat(4096)}` });
      expect(large.status).toBe(413);
      expect(large.body.errors[0].extensions.code).toBe("payload_too_large");
    } finally {
      await small.close();
    }
    const notAnObject = await request(api.app).post("/graphql").set("content-type", "application/json").send("[1, 2]");
    expect(notAnObject.status).toBe(400);
    expect(notAnObject.body.errors[0].extensions.code).toBe("bad_request");
    const get = await request(api.app).get("/graphql");
    expect(get.status).toBe(405);
    expect(get.body.errors[0].extensions.code).toBe("method_not_allowed");
  });

  it("an error in the Express layer in front of GraphQL speaks GraphQL too", async () => {
    const res = await graphql(api, "{ currentUserId }", { token: "not.a.jwt" });
    expect(res.status).toBe(401);
    expect(res.body).toEqual({ errors: [{ message: "The access token is not valid.", extensions: { code: "invalid_token" } }] });
  });
});
