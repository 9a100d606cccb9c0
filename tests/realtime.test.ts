import type { AddressInfo } from "node:net";
import jwt from "jsonwebtoken";
import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { buildTestApp, type TestApp } from "./helpers/app.ts";
import { RELAXED_LIMITS, recipient, signUp, tokenFrom, type SignedUp } from "./helpers/auth.ts";
import { createTestDatabase, type TestDatabase } from "./helpers/database.ts";
import { runJobs } from "./helpers/jobs.ts";
import { primed, subscriber, type Subscription } from "./helpers/realtime.ts";
import { startSmtpSink, type SmtpSink } from "./helpers/smtp.ts";
import { arrangeTenants, gqlOk, type Tenants } from "./helpers/tenants.ts";

let db: TestDatabase;
let api: TestApp;
let smtp: SmtpSink;
let t: Tenants;
let url: string;
const sockets: WebSocket[] = [];

/** Signed-in sockets are checked against their sessions this often here (2 s by default). */
const CHECK_MS = 300;

beforeAll(async () => {
  [db, smtp] = await Promise.all([createTestDatabase(), startSmtpSink()]);
  process.env.SMTP_URL = smtp.url;
  api = await buildTestApp(db, { env: RELAXED_LIMITS, socketCheckIntervalMs: CHECK_MS });
  t = await arrangeTenants(api, db, "live");
  api.server.listen(0, "127.0.0.1");
  await new Promise((resolve) => api.server.once("listening", resolve));
  url = `ws://127.0.0.1:${(api.server.address() as AddressInfo).port}/graphql`;
});

afterAll(async () => {
  for (const socket of sockets) socket.terminate();
  await api?.close();
  api?.server.closeAllConnections();
  await new Promise((resolve) => api?.server.close(resolve));
  await smtp?.close();
  await db?.drop();
});

const subscribe = (token: string, query: string, variables: Record<string, unknown>) => subscriber(url, sockets)(token, query, variables);
/** Primes a taskChanged subscription on Acme's project with an update of Acme's first task. */
const primedTasks = (subscription: Subscription) =>
  primed(db.root, subscription, `project:${t.acme.projectId}:tasks`, { event: "updated", id: t.acme.taskId }, (e) => e.taskChanged?.taskRowId === t.acme.taskId);

const TASK_CHANGED = `subscription ($p: UUID!) { taskChanged(projectId: $p) { event taskRowId task { title status } } }`;
const COMMENT_ADDED = `subscription ($id: UUID!) { taskCommentAdded(taskId: $id) { comment { body author { name } } } }`;
const CREATE_TASK = `mutation ($p: UUID!, $title: String!) { createTask(input: { task: { projectId: $p, title: $title } }) { task { rowId } } }`;

async function createTask(token: string, title: string): Promise<string> {
  return (await gqlOk(api, token, CREATE_TASK, { p: t.acme.projectId, title })).createTask.task.rowId;
}

/** A new member of Acme, for tests that take access away. */
async function newMember(): Promise<SignedUp & { membershipId: string }> {
  const user = await signUp(api, { name: "Short Stay" });
  const { rows } = await db.root.query(
    "insert into app_public.organization_memberships (organization_id, user_id) values ($1, $2) returning id",
    [t.acme.id, user.id],
  );
  return { ...user, membershipId: rows[0].id };
}

describe("taskChanged", () => {
  it("tells a member about created, updated, moved and deleted tasks, with the task as they see it", async () => {
    const member = await primedTasks(await subscribe(t.member.accessToken, TASK_CHANGED, { p: t.acme.projectId }));
    const id = await createTask(t.admin.accessToken, "Live task");
    expect((await member.event(1)).taskChanged).toEqual({ event: "CREATED", taskRowId: id, task: { title: "Live task", status: "todo" } });
    await gqlOk(api, t.admin.accessToken, `mutation ($id: UUID!) { updateTask(input: { rowId: $id, patch: { title: "Live task, edited" } }) { task { rowId } } }`, { id });
    expect((await member.event(2)).taskChanged).toEqual({ event: "UPDATED", taskRowId: id, task: { title: "Live task, edited", status: "todo" } });
    await gqlOk(api, t.admin.accessToken, `mutation ($id: UUID!) { moveTask(input: { taskId: $id, status: in_progress }) { task { rowId } } }`, { id });
    expect((await member.event(3)).taskChanged).toEqual({ event: "MOVED", taskRowId: id, task: { title: "Live task, edited", status: "in_progress" } });
    await gqlOk(api, t.admin.accessToken, `mutation ($id: UUID!) { deleteTask(input: { rowId: $id }) { task { rowId } } }`, { id });
    expect((await member.event(4)).taskChanged).toEqual({ event: "DELETED", taskRowId: id, task: null });
  });

  it("refuses a project you cannot see exactly like one that does not exist", async () => {
    const other = await subscribe(t.outsider.accessToken, TASK_CHANGED, { p: t.acme.projectId });
    const none = await subscribe(t.outsider.accessToken, TASK_CHANGED, { p: "00000000-0000-4000-8000-000000000000" });
    const [refused, missing] = await Promise.all([other.failure(), none.failure()]);
    expect(refused).toEqual(missing);
    expect(refused).toMatchObject({ message: "Project not found.", extensions: { code: "not_found" } });
  });

  it("stops telling a member who was removed anything, not even that something happened", async () => {
    const leaver = await newMember();
    const [watched, control] = await Promise.all([
      subscribe(leaver.accessToken, TASK_CHANGED, { p: t.acme.projectId }).then(primedTasks),
      subscribe(t.admin.accessToken, TASK_CHANGED, { p: t.acme.projectId }).then(primedTasks),
    ]);
    const seen = await createTask(t.owner.accessToken, "Seen by the leaver");
    await Promise.all([watched.eventMatching((e) => e.taskChanged.taskRowId === seen), control.eventMatching((e) => e.taskChanged.taskRowId === seen)]);

    const removed = await gqlOk(api, t.owner.accessToken, `mutation ($id: UUID!) { removeMember(input: { membershipId: $id }) { membership { rowId } } }`, {
      id: leaver.membershipId,
    });
    expect(removed.removeMember.membership.rowId).toBe(leaver.membershipId);
    const hidden = await createTask(t.owner.accessToken, "Not for the leaver");
    await gqlOk(api, t.owner.accessToken, `mutation ($id: UUID!) { deleteTask(input: { rowId: $id }) { task { rowId } } }`, { id: hidden });
    // A member still watching got both events; the leaver's copies are checked as fast, and dropped.
    await control.eventMatching((e) => e.taskChanged.event === "DELETED" && e.taskChanged.taskRowId === hidden);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(watched.events.map((e) => e.taskChanged.taskRowId)).toEqual([seen]);

    // Back in the organization, the same subscription delivers again.
    await db.root.query("insert into app_public.organization_memberships (organization_id, user_id) values ($1, $2)", [t.acme.id, leaver.id]);
    const back = await createTask(t.owner.accessToken, "Welcome back");
    expect((await watched.eventMatching((e) => e.taskChanged.taskRowId === back)).taskChanged).toMatchObject({ event: "CREATED" });
    expect(watched.events.map((e) => e.taskChanged.taskRowId)).toEqual([seen, back]);
  });
});

describe("taskCommentAdded", () => {
  it("delivers new comments to members, read under their own role; refuses others", async () => {
    const member = await primed(db.root, 
      await subscribe(t.owner.accessToken, COMMENT_ADDED, { id: t.acme.taskId }),
      `task:${t.acme.taskId}:comments`,
      { event: "created", id: t.acme.commentId },
      (e) => e.taskCommentAdded?.comment?.body === "First draft is up",
    );
    const outsider = await subscribe(t.outsider.accessToken, COMMENT_ADDED, { id: t.acme.taskId });
    await gqlOk(api, t.member.accessToken, `mutation ($id: UUID!) { createTaskComment(input: { taskComment: { taskId: $id, body: "Looks good!" } }) { taskComment { rowId } } }`, {
      id: t.acme.taskId,
    });
    expect((await member.event(1)).taskCommentAdded.comment).toEqual({ body: "Looks good!", author: { name: "Mia Member" } });
    expect((await outsider.failure()).message).toBe("Task not found.");
    expect(outsider.events).toEqual([]);
  });
});

describe("sockets outlive neither their session nor their token", () => {
  const expectClosedSoon = async (subscription: Subscription, reason: RegExp) => {
    const started = Date.now();
    const closed = await subscription.closed;
    expect(closed.code).toBe(4401);
    expect(closed.reason).toMatch(reason);
    expect(Date.now() - started).toBeLessThan(CHECK_MS * 2 + 1000);
  };

  it("logout closes the session's sockets with 4401 within seconds, without waiting for an event", async () => {
    const user = await newMember();
    const subscription = await subscribe(user.accessToken, TASK_CHANGED, { p: t.acme.projectId });
    expect((await request(api.app).post("/auth/logout").send({ refreshToken: user.refreshToken })).status).toBe(204);
    await expectClosedSoon(subscription, /session ended/i);
  });

  it("logout-all closes every socket of the user and no one else's", async () => {
    const user = await newMember();
    const second = await request(api.app).post("/auth/login").send({ email: user.email, password: user.password });
    const [first, other, bystander] = await Promise.all([
      subscribe(user.accessToken, TASK_CHANGED, { p: t.acme.projectId }),
      subscribe(second.body.accessToken, TASK_CHANGED, { p: t.acme.projectId }),
      subscribe(t.admin.accessToken, TASK_CHANGED, { p: t.acme.projectId }),
    ]);
    expect((await request(api.app).post("/auth/logout-all").set("Authorization", `Bearer ${user.accessToken}`)).status).toBe(204);
    await Promise.all([expectClosedSoon(first, /session ended/i), expectClosedSoon(other, /session ended/i)]);
    expect(bystander.socket.readyState).toBe(WebSocket.OPEN);
  });

  it("revokeSession from another device closes that session's sockets and no other", async () => {
    const user = await newMember();
    const phone = await request(api.app).post("/auth/login").send({ email: user.email, password: user.password });
    const [laptopSocket, phoneSocket] = await Promise.all([
      subscribe(user.accessToken, TASK_CHANGED, { p: t.acme.projectId }),
      subscribe(phone.body.accessToken, TASK_CHANGED, { p: t.acme.projectId }),
    ]);
    const sessions = await gqlOk(api, user.accessToken, "{ currentUser { sessions { rowId isCurrent } } }");
    const other = sessions.currentUser.sessions.find((s: { isCurrent: boolean }) => !s.isCurrent);
    await gqlOk(api, user.accessToken, `mutation ($id: UUID!) { revokeSession(input: { sessionId: $id }) { revoked } }`, { id: other.rowId });
    await expectClosedSoon(phoneSocket, /session ended/i);
    expect(laptopSocket.socket.readyState).toBe(WebSocket.OPEN);
  });

  it("a password reset closes the user's sockets", async () => {
    const user = await newMember();
    const subscription = await subscribe(user.accessToken, TASK_CHANGED, { p: t.acme.projectId });
    await request(api.app).post("/auth/forgot-password").send({ email: user.email });
    await runJobs(db);
    const token = tokenFrom(await smtp.waitFor((m) => recipient(m) === user.email && m.subject === "Reset your password"));
    expect((await request(api.app).post("/auth/reset-password").send({ token, password: "a fresh new password" })).status).toBe(200);
    await expectClosedSoon(subscription, /session ended/i);
  });

  describe("with short-lived access tokens", () => {
    let shortLived: TestApp;
    let shortUrl: string;

    beforeAll(async () => {
      shortLived = await buildTestApp(db, { env: { ...RELAXED_LIMITS, JWT_ACCESS_TTL: "3s" }, socketCheckIntervalMs: 200 });
      shortLived.server.listen(0, "127.0.0.1");
      await new Promise((resolve) => shortLived.server.once("listening", resolve));
      shortUrl = `ws://127.0.0.1:${(shortLived.server.address() as AddressInfo).port}/graphql`;
    });

    afterAll(async () => {
      await shortLived?.close();
      shortLived?.server.closeAllConnections();
      await new Promise((resolve) => shortLived?.server.close(resolve));
    });

    const subscribeTo = async (token: string) => {
      const saved = url;
      url = shortUrl;
      try {
        return await subscribe(token, TASK_CHANGED, { p: t.acme.projectId });
      } finally {
        url = saved;
      }
    };

    it("closes the socket when the access token expires", async () => {
      const user = await newMember();
      const login = await request(shortLived.app).post("/auth/login").send({ email: user.email, password: user.password });
      const subscription = await subscribeTo(login.body.accessToken);
      const closed = await subscription.closed;
      expect(closed).toEqual({ code: 4401, reason: "Access token expired: refresh it and reconnect" });
    });

    it("keeps the socket open when the client re-authenticates with a fresh token in a ping", async () => {
      const user = await newMember();
      const login = await request(shortLived.app).post("/auth/login").send({ email: user.email, password: user.password });
      const subscription = await primedTasks(await subscribeTo(login.body.accessToken));
      // Refresh shortly before the token expires, as a client does (a token from the same second
      // would expire at the same moment), and re-authenticate the socket in band.
      const firstExpiry = (jwt.decode(login.body.accessToken) as jwt.JwtPayload).exp! * 1000;
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, firstExpiry - 1200 - Date.now())));
      const refreshed = await request(shortLived.app).post("/auth/refresh").send({ refreshToken: login.body.refreshToken });
      expect((jwt.decode(refreshed.body.accessToken) as jwt.JwtPayload).exp! * 1000).toBeGreaterThan(firstExpiry);
      subscription.socket.send(JSON.stringify({ type: "ping", payload: { authorization: `Bearer ${refreshed.body.accessToken}` } }));
      // Past the first token's expiry the socket still delivers.
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, firstExpiry - Date.now()) + 400));
      expect(subscription.socket.readyState).toBe(WebSocket.OPEN);
      const id = await createTask(t.owner.accessToken, "Still listening");
      expect((await subscription.event(1)).taskChanged.taskRowId).toBe(id);
      // A token for someone else is refused and ends the socket.
      const stranger = await request(shortLived.app).post("/auth/login").send({ email: t.member.email, password: t.member.password });
      subscription.socket.send(JSON.stringify({ type: "ping", payload: { authorization: `Bearer ${stranger.body.accessToken}` } }));
      expect(await subscription.closed).toEqual({ code: 4401, reason: "Re-authentication must be for the same session" });
    });
  });
});

describe("ended sessions are announced", () => {
  let slow: TestApp;
  let slowUrl: string;
  beforeAll(async () => {
    // An instance whose periodic check would take ten minutes: only the database's announcement can close the socket in time.
    slow = await buildTestApp(db, { env: RELAXED_LIMITS, socketCheckIntervalMs: 600_000 });
    slow.server.listen(0, "127.0.0.1");
    await new Promise((resolve) => slow.server.once("listening", resolve));
    slowUrl = `ws://127.0.0.1:${(slow.server.address() as AddressInfo).port}/graphql`;
  });
  afterAll(async () => {
    await slow?.close();
    slow?.server.closeAllConnections();
    await new Promise((resolve) => slow?.server.close(resolve));
  });

  it("closes the sockets of a session ended on another instance at once, not at the next check", async () => {
    const user = await newMember();
    const phone = await request(api.app).post("/auth/login").send({ email: user.email, password: user.password });
    const subscription = await subscriber(slowUrl, sockets)(phone.body.accessToken, TASK_CHANGED, { p: t.acme.projectId });
    const sessionId = (JSON.parse(Buffer.from(phone.body.accessToken.split(".")[1], "base64url").toString()) as { sid: string }).sid;
    const started = Date.now();
    await gqlOk(api, user.accessToken, `mutation ($id: UUID!) { revokeSession(input: { sessionId: $id }) { revoked } }`, { id: sessionId });
    const closed = await subscription.closed;
    expect(closed.code).toBe(4401);
    expect(Date.now() - started).toBeLessThan(2000);
  });
});
