import type { AddressInfo } from "node:net";
import { createClient, type Client } from "graphql-ws";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { buildTestApp, type TestApp } from "./helpers/app.ts";
import { RELAXED_LIMITS } from "./helpers/auth.ts";
import { createTestDatabase, type TestDatabase } from "./helpers/database.ts";
import { arrangeTenants, gqlOk, type Tenants } from "./helpers/tenants.ts";

let db: TestDatabase;
let api: TestApp;
let t: Tenants;
let url: string;
const clients: Client[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
  api = await buildTestApp(db, { env: RELAXED_LIMITS });
  t = await arrangeTenants(api, db, "live");
  api.server.listen(0, "127.0.0.1");
  await new Promise((resolve) => api.server.once("listening", resolve));
  url = `ws://127.0.0.1:${(api.server.address() as AddressInfo).port}/graphql`;
});

afterAll(async () => {
  console.log("A", Date.now());
  await Promise.all(clients.map((client) => client.dispose()));
  console.log("B", Date.now());
  await api?.release();
  console.log("C", Date.now(), api.pools.authenticator.totalCount, api.pools.authenticator.idleCount);
  await api.pools.end();
  console.log("D", Date.now());
  api?.server.closeAllConnections();
  await new Promise((resolve) => api.server.close(resolve));
  await db?.drop();
});

interface Received {
  events: any[];
  errors: any[];
  /** Resolves once `count` events have arrived. */
  waitFor(count: number): Promise<any[]>;
  /** Resolves once the server has accepted the subscription (it is listening). */
  ready: Promise<void>;
}

/** Subscribes over a real WebSocket as `token`, collecting what arrives. */
function subscribe(token: string, query: string, variables: Record<string, unknown>): Received {
  let acknowledged!: () => void;
  const ready = new Promise<void>((resolve) => (acknowledged = resolve));
  const client = createClient({ url, webSocketImpl: WebSocket, connectionParams: { authorization: `Bearer ${token}` }, retryAttempts: 0 });
  clients.push(client);
  const received: Received = {
    events: [],
    errors: [],
    ready,
    waitFor: (count) =>
      new Promise((resolve, reject) => {
        const started = Date.now();
        const check = () => {
          if (received.events.length >= count) return resolve(received.events);
          if (received.errors.length > 0) return reject(new Error(JSON.stringify(received.errors)));
          if (Date.now() - started > 10_000) return reject(new Error(`only ${received.events.length} of ${count} events arrived`));
          setTimeout(check, 20);
        };
        check();
      }),
  };
  client.subscribe(
    { query, variables },
    {
      next: (value) => (value.errors ? received.errors.push(...value.errors) : received.events.push(value.data)),
      error: (errors) => received.errors.push(...(Array.isArray(errors) ? errors : [errors])),
      complete: () => {},
    },
  );
  // The server acknowledges a subscription by starting to listen; a no-op query on the same
  // socket after it returns only once the subscribe message has been processed.
  client.subscribe({ query: "{ __typename }" }, { next: () => {}, error: () => {}, complete: () => setTimeout(acknowledged, 200) });
  return received;
}

const TASK_CHANGED = `subscription ($p: UUID!) { taskChanged(projectId: $p) { event taskRowId task { title status } } }`;
const COMMENT_ADDED = `subscription ($id: UUID!) { taskCommentAdded(taskId: $id) { comment { body author { name } } } }`;

describe("taskChanged", () => {
  it("tells a member about created, updated, moved and deleted tasks; tells a non-member nothing", async () => {
    const member = subscribe(t.member.accessToken, TASK_CHANGED, { p: t.acme.projectId });
    const outsider = subscribe(t.outsider.accessToken, TASK_CHANGED, { p: t.acme.projectId });
    await Promise.all([member.ready, outsider.ready]);

    const created = await gqlOk(api, t.admin.accessToken, `mutation ($p: UUID!) { createTask(input: { task: { projectId: $p, title: "Live task" } }) { task { rowId } } }`, {
      p: t.acme.projectId,
    });
    const id = created.createTask.task.rowId;
    await gqlOk(api, t.admin.accessToken, `mutation ($id: UUID!) { updateTask(input: { rowId: $id, patch: { title: "Live task, edited" } }) { task { rowId } } }`, { id });
    await gqlOk(api, t.admin.accessToken, `mutation ($id: UUID!) { moveTask(input: { taskId: $id, status: in_progress }) { task { rowId } } }`, { id });
    await gqlOk(api, t.admin.accessToken, `mutation ($id: UUID!) { deleteTask(input: { rowId: $id }) { task { rowId } } }`, { id });

    const events = await member.waitFor(4);
    expect(events.map((e) => e.taskChanged)).toEqual([
      { event: "CREATED", taskRowId: id, task: { title: "Live task", status: "todo" } },
      { event: "UPDATED", taskRowId: id, task: { title: "Live task, edited", status: "todo" } },
      { event: "MOVED", taskRowId: id, task: { title: "Live task, edited", status: "in_progress" } },
      { event: "DELETED", taskRowId: id, task: null },
    ]);
    expect(outsider.events).toEqual([]);
    expect(outsider.errors[0]?.message).toBe("Project not found.");
  });
});

describe("taskCommentAdded", () => {
  it("delivers new comments to members, re-read under their own role", async () => {
    const member = subscribe(t.owner.accessToken, COMMENT_ADDED, { id: t.acme.taskId });
    const outsider = subscribe(t.outsider.accessToken, COMMENT_ADDED, { id: t.acme.taskId });
    await Promise.all([member.ready, outsider.ready]);
    await gqlOk(api, t.member.accessToken, `mutation ($id: UUID!) { createTaskComment(input: { taskComment: { taskId: $id, body: "Looks good!" } }) { taskComment { rowId } } }`, {
      id: t.acme.taskId,
    });
    const [event] = await member.waitFor(1);
    expect(event.taskCommentAdded.comment).toEqual({ body: "Looks good!", author: { name: "Mia Member" } });
    expect(outsider.events).toEqual([]);
    expect(outsider.errors[0]?.message).toBe("Task not found.");
  });
});
