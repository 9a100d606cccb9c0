import type { AddressInfo } from "node:net";
import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { buildTestApp, type TestApp } from "./helpers/app.ts";
import { graphql, RELAXED_LIMITS, signUp } from "./helpers/auth.ts";
import { createTestDatabase, type TestDatabase } from "./helpers/database.ts";

let db: TestDatabase;
const apps: TestApp[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
});

afterAll(async () => {
  for (const app of apps) {
    await app.close();
    app.server.closeAllConnections();
    if (app.server.listening) await new Promise((resolve) => app.server.close(resolve));
  }
  await db?.drop();
});

async function appWith(env: Record<string, string>): Promise<TestApp> {
  const app = await buildTestApp(db, { env: { ...RELAXED_LIMITS, TRUST_PROXY: "loopback", ...env } });
  apps.push(app);
  return app;
}

const query = (app: TestApp, client: string, token?: string) => {
  const req = request(app.app).post("/graphql").set("X-Forwarded-For", client).send({ query: "{ currentUserId }" });
  return token ? req.set("Authorization", `Bearer ${token}`) : req;
};

describe("GraphQL over HTTP is rate limited", () => {
  it("per client address: 429 with Retry-After and extensions.code rate_limited", async () => {
    const app = await appWith({ RATE_LIMIT_GRAPHQL_IP: "3/1m" });
    for (let i = 0; i < 3; i++) expect((await query(app, "198.51.100.1")).status).toBe(200);
    const limited = await query(app, "198.51.100.1");
    expect(limited.status).toBe(429);
    expect(Number(limited.headers["retry-after"])).toBeGreaterThan(0);
    expect(limited.body).toEqual({ errors: [{ message: expect.stringMatching(/^Too many requests; try again in \d+ seconds\.$/), extensions: { code: "rate_limited" } }] });
    // Another client is not affected.
    expect((await query(app, "198.51.100.2")).status).toBe(200);
  });

  it("per user, wherever they connect from", async () => {
    const app = await appWith({ RATE_LIMIT_GRAPHQL_USER: "2/1m" });
    const [user, colleague] = await Promise.all([signUp(app), signUp(app)]);
    expect((await query(app, "198.51.100.10", user.accessToken)).status).toBe(200);
    expect((await query(app, "198.51.100.11", user.accessToken)).status).toBe(200);
    const limited = await query(app, "198.51.100.12", user.accessToken);
    expect(limited.status).toBe(429);
    expect(limited.body.errors[0].extensions.code).toBe("rate_limited");
    expect((await query(app, "198.51.100.10", colleague.accessToken)).status).toBe(200);
  });

  it("a token whose session has ended does not use up its user's rate", async () => {
    const app = await appWith({ RATE_LIMIT_GRAPHQL_USER: "3/1m" });
    const user = await signUp(app);
    const stolen = user.accessToken;
    expect((await request(app.app).post("/auth/logout-all").set("Authorization", `Bearer ${stolen}`)).status).toBe(204);
    for (let i = 0; i < 6; i++) expect((await query(app, "198.51.100.20", stolen)).status).toBe(401);
    const again = await request(app.app).post("/auth/login").send({ email: user.email, password: user.password });
    for (let i = 0; i < 3; i++) expect((await query(app, "198.51.100.21", again.body.accessToken)).status).toBe(200);
    expect((await query(app, "198.51.100.21", again.body.accessToken)).status).toBe(429);
  });

  it("counts in this process, so the limiter adds no database round trip", async () => {
    const app = await appWith({ RATE_LIMIT_GRAPHQL_IP: "2/1m" });
    const before = await db.root.query("select count(*)::int as n from app_private.rate_limits");
    await query(app, "198.51.100.30");
    await query(app, "198.51.100.30");
    expect((await query(app, "198.51.100.30")).status).toBe(429);
    const after = await db.root.query("select count(*)::int as n from app_private.rate_limits");
    expect(after.rows[0].n).toBe(before.rows[0].n);
  });
});

describe("requests that fail count too", () => {
  it("a bad token or an unparsable document still counts against the client", async () => {
    const app = await appWith({ RATE_LIMIT_GRAPHQL_IP: "3/1m" });
    const client = "198.51.100.50";
    expect((await request(app.app).post("/graphql").set("X-Forwarded-For", client).set("Authorization", "Bearer not.a.token").send({ query: "{ currentUserId }" })).status).toBe(401);
    expect((await request(app.app).post("/graphql").set("X-Forwarded-For", client).send({ query: "{ nope(" })).status).toBe(400);
    expect((await query(app, client)).status).toBe(200);
    expect((await query(app, client)).status).toBe(429);
  });
});

/** A graphql-transport-ws socket, acknowledged, that records every message. */
async function openSocket(app: TestApp, headers: Record<string, string>, connectionParams: Record<string, unknown> = {}) {
  if (!app.server.listening) {
    app.server.listen(0, "127.0.0.1");
    await new Promise((resolve) => app.server.once("listening", resolve));
  }
  const socket = new WebSocket(`ws://127.0.0.1:${(app.server.address() as AddressInfo).port}/graphql`, "graphql-transport-ws", { headers });
  await new Promise((resolve, reject) => {
    socket.once("open", resolve);
    socket.once("error", reject);
  });
  const messages: any[] = [];
  socket.on("message", (data) => messages.push(JSON.parse(data.toString())));
  socket.send(JSON.stringify({ type: "connection_init", payload: connectionParams }));
  await expect.poll(() => messages.some((m) => m.type === "connection_ack")).toBe(true);
  return { socket, messages };
}

describe("GraphQL over WebSocket is rate limited", () => {
  it("subscribe messages that fail to parse count against the client too", async () => {
    const app = await appWith({ RATE_LIMIT_GRAPHQL_IP: "3/1m" });
    const { socket, messages } = await openSocket(app, { "X-Forwarded-For": "198.51.100.41" });
    for (const id of ["1", "2", "3"]) socket.send(JSON.stringify({ id, type: "subscribe", payload: { query: "{ nope(" } }));
    socket.send(JSON.stringify({ id: "4", type: "subscribe", payload: { query: "{ currentUserId }" } }));
    await expect.poll(() => messages.filter((m) => m.type === "error").length).toBe(4);
    const last = messages.find((m) => m.type === "error" && m.id === "4");
    expect(last.payload[0].extensions.code).toBe("rate_limited");
    socket.close();
  });

  it("each subscribe message counts; over the limit it is refused with rate_limited", async () => {
    const app = await appWith({ RATE_LIMIT_GRAPHQL_IP: "2/1m" });
    const { socket, messages } = await openSocket(app, { "X-Forwarded-For": "198.51.100.40" });
    for (const id of ["1", "2", "3"]) socket.send(JSON.stringify({ id, type: "subscribe", payload: { query: "{ currentUserId }" } }));
    await expect.poll(() => messages.filter((m) => m.type === "complete" || m.type === "error").length).toBe(3);
    const refused = messages.filter((m) => m.type === "error");
    expect(refused).toHaveLength(1);
    expect(refused[0].payload[0]).toMatchObject({ message: expect.stringMatching(/^Too many requests/), extensions: { code: "rate_limited", retryAfter: expect.any(Number) } });
    socket.close();
  });
});

describe("live subscriptions per user are capped", () => {
  it("the next one is refused with too_many_subscriptions until one ends", async () => {
    const app = await appWith({ GRAPHQL_MAX_SUBSCRIPTIONS: "2" });
    const user = await signUp(app);
    const org = await graphql(app, `mutation ($slug: String!) { createOrganization(input: { slug: $slug, name: "Subs" }) { organization { rowId } } }`, {
      token: user.accessToken,
      variables: { slug: `subs-${user.id.slice(0, 10)}` },
    });
    const project = await graphql(app, `mutation ($org: UUID!) { createProject(input: { project: { organizationId: $org, name: "Live" } }) { project { rowId } } }`, {
      token: user.accessToken,
      variables: { org: org.body.data.createOrganization.organization.rowId },
    });
    const projectId = project.body.data.createProject.project.rowId;
    const { socket, messages } = await openSocket(app, {}, { authorization: `Bearer ${user.accessToken}` });
    try {
      const subscribe = (id: string) =>
        socket.send(JSON.stringify({ id, type: "subscribe", payload: { query: `subscription { taskChanged(projectId: "${projectId}") { event } }` } }));
      for (const id of ["a", "b", "c"]) subscribe(id);
      // The socket's messages are handled concurrently: whichever came third is refused.
      const refused = () => messages.filter((m) => m.type === "next" && m.payload.errors?.[0]?.extensions?.code === "too_many_subscriptions");
      await expect.poll(() => refused().length, { timeout: 10_000 }).toBe(1);
      const live = ["a", "b", "c"].filter((id) => id !== refused()[0].id);
      // Ending one makes room: the next one is accepted and stays open (no error, no completion).
      socket.send(JSON.stringify({ id: live[0], type: "complete" }));
      await new Promise((resolve) => setTimeout(resolve, 200));
      subscribe("d");
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect(messages.filter((m) => m.id === "d")).toEqual([]);
    } finally {
      socket.close();
    }
  });
});

describe("signed-in users share nothing with anonymous callers on the same address", () => {
  it("the user limit applies to signed-in requests only", async () => {
    const app = await appWith({ RATE_LIMIT_GRAPHQL_USER: "1/1m" });
    const user = await signUp(app);
    expect((await graphql(app, "{ currentUserId }", { token: user.accessToken })).status).toBe(200);
    expect((await graphql(app, "{ currentUserId }")).status).toBe(200);
    expect((await graphql(app, "{ currentUserId }")).status).toBe(200);
    expect((await graphql(app, "{ currentUserId }", { token: user.accessToken })).status).toBe(429);
  });
});
