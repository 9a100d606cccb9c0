import type { AddressInfo } from "node:net";
import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type WebSocket from "ws";
import type { DatabaseUrls } from "../src/db/urls.ts";
import { buildTestApp, type TestApp } from "./helpers/app.ts";
import { graphql, RELAXED_LIMITS, signUp, type SignedUp } from "./helpers/auth.ts";
import { createTestDatabase, type TestDatabase } from "./helpers/database.ts";
import { primed, subscriber } from "./helpers/realtime.ts";
import { startTcpProxy, type TcpProxy } from "../scripts/lib/tcp-proxy.ts";
import { arrangeTenants, gqlOk, type Tenants } from "./helpers/tenants.ts";

let db: TestDatabase;
let proxy: TcpProxy;
let api: TestApp;
let t: Tenants;
let user: SignedUp;
let url: string;
const sockets: WebSocket[] = [];

/** The same database, reached through the proxy. */
function throughProxy(urls: DatabaseUrls, port: number): DatabaseUrls {
  const via = (value: string) => {
    const url = new URL(value);
    url.hostname = "127.0.0.1";
    url.port = String(port);
    return url.toString();
  };
  return { ...urls, owner: via(urls.owner), authenticator: via(urls.authenticator) };
}

beforeAll(async () => {
  db = await createTestDatabase();
  const target = new URL(db.urls.owner);
  proxy = await startTcpProxy({ host: target.hostname, port: Number(target.port || 5432) });
  api = await buildTestApp({ ...db, urls: throughProxy(db.urls, proxy.port) }, { env: RELAXED_LIMITS });
  t = await arrangeTenants(api, db, "outage");
  user = await signUp(api);
  api.server.listen(0, "127.0.0.1");
  await new Promise((resolve) => api.server.once("listening", resolve));
  url = `ws://127.0.0.1:${(api.server.address() as AddressInfo).port}/graphql`;
});

afterAll(async () => {
  for (const socket of sockets) socket.terminate();
  await proxy?.restore().catch(() => {});
  await api?.close();
  api?.server.closeAllConnections();
  await new Promise((resolve) => api?.server.close(resolve));
  await proxy?.close();
  await db?.drop();
});

describe("while the database cannot be reached", () => {
  it("REST and GraphQL answer 503 database_unavailable with Retry-After, and heal when it is back", async () => {
    await proxy.cut();
    try {
      const login = await request(api.app).post("/auth/login").send({ email: user.email, password: user.password });
      expect(login.status).toBe(503);
      expect(login.headers["retry-after"]).toBe("5");
      expect(login.body).toEqual({ error: { code: "database_unavailable", message: "The database cannot be reached right now; try again in a few seconds." } });

      for (const token of [undefined, user.accessToken]) {
        const res = await graphql(api, `{ plans { nodes { name } } }`, { token });
        expect(res.status).toBe(503);
        expect(res.headers["retry-after"]).toBe("5");
        expect(res.body.errors[0].extensions.code).toBe("database_unavailable");
      }
      expect((await request(api.app).get("/readyz")).status).toBe(503);
      expect((await request(api.app).get("/healthz")).status).toBe(200);
    } finally {
      await proxy.restore();
    }
    await expect.poll(async () => (await request(api.app).post("/auth/login").send({ email: user.email, password: user.password })).status, { timeout: 10_000 }).toBe(200);
    const back = await graphql(api, `{ currentUser { rowId } }`, { token: user.accessToken });
    expect(back.body).toEqual({ data: { currentUser: { rowId: user.id } } });
  });

  it("a live subscription keeps delivering after the database comes back", async () => {
    const subscribe = subscriber(url, sockets);
    const subscription = await primed(
      db.root,
      await subscribe(t.member.accessToken, `subscription ($p: UUID!) { taskChanged(projectId: $p) { event taskRowId task { title } } }`, { p: t.acme.projectId }),
      `project:${t.acme.projectId}:tasks`,
      { event: "updated", id: t.acme.taskId },
      (event) => event.taskChanged?.taskRowId === t.acme.taskId,
    );
    await proxy.cut();
    await new Promise((resolve) => setTimeout(resolve, 300));
    await proxy.restore();
    // Once the server listens again, a change made after the outage arrives as usual.
    await expect
      .poll(
        async () => {
          await gqlOk(api, t.member.accessToken, `mutation ($id: UUID!, $title: String!) { updateTask(input: { rowId: $id, patch: { title: $title } }) { task { rowId } } }`, {
            id: t.acme.taskId,
            title: `After the outage ${Date.now()}`,
          }).catch(() => undefined);
          return subscription.events.some((event) => String(event.taskChanged?.task?.title).startsWith("After the outage"));
        },
        { timeout: 15_000, interval: 500 },
      )
      .toBe(true);
    expect(subscription.errors).toEqual([]);
  });
});
