import http from "node:http";
import net, { type AddressInfo } from "node:net";
import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildTestApp, type TestApp } from "./helpers/app.ts";
import { graphql, RELAXED_LIMITS } from "./helpers/auth.ts";
import { createTestDatabase, type TestDatabase } from "./helpers/database.ts";

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
});

afterAll(async () => {
  await db?.drop();
});

async function listening(env: Record<string, string> = {}): Promise<{ api: TestApp; port: number; stop: () => Promise<void> }> {
  const api = await buildTestApp(db, { env: { ...RELAXED_LIMITS, ...env } });
  api.server.listen(0, "127.0.0.1");
  await new Promise((resolve) => api.server.once("listening", resolve));
  const port = (api.server.address() as AddressInfo).port;
  return {
    api,
    port,
    stop: async () => {
      api.server.closeAllConnections();
      await api.close();
    },
  };
}

describe("a deploy drops nothing", () => {
  it("requests on kept-alive connections during the drain are answered, /readyz fails at once, and the drain ends", async () => {
    const { api, port, stop } = await listening();
    const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
    const get = (path: string) =>
      new Promise<{ status: number; connection: string | undefined }>((resolve, reject) => {
        const req = http.get({ host: "127.0.0.1", port, path, agent }, (res) => {
          res.resume();
          res.on("end", () => resolve({ status: res.statusCode!, connection: res.headers.connection }));
        });
        req.on("error", reject);
      });
    try {
      // 16 clients keep their connections busy, as a load balancer would, until told to close.
      const failures: string[] = [];
      let answered = 0;
      let warm = 0;
      let stopped = false;
      const client = async () => {
        let first = true;
        while (!stopped) {
          try {
            const res = await get("/healthz");
            answered += 1;
            if (first) warm += 1;
            first = false;
            if (res.status !== 200) failures.push(`status ${res.status}`);
            if (res.connection === "close") return; // this connection is going away: use another instance
          } catch (error) {
            failures.push((error as Error).message);
            return;
          }
        }
      };
      const clients = Array.from({ length: 16 }, client);
      // Every client connected and answered once: a connection still waiting in the listen
      // backlog when the listener closes is reset by the kernel (what SHUTDOWN_DELAY avoids).
      await expect.poll(() => warm, { timeout: 10_000 }).toBe(16);
      const before = answered;
      const drained = api.drain({ timeoutMs: 5000, idleGraceMs: 1000 });
      const ready = await request(api.app).get("/readyz");
      expect(ready.status).toBe(503);
      expect(ready.body.error.code).toBe("shutting_down");
      const started = Date.now();
      await drained;
      stopped = true;
      await Promise.all(clients);
      expect(failures).toEqual([]);
      expect(answered).toBeGreaterThan(before);
      expect(Date.now() - started).toBeLessThan(4000);
      // No new connections are taken.
      await expect(get("/healthz")).rejects.toThrow(/ECONNREFUSED/);
    } finally {
      agent.destroy();
      await stop();
    }
  });

  it("with a delay, it stays open while /readyz already says 503, then stops taking connections", async () => {
    const { api, port, stop } = await listening();
    try {
      const drained = api.drain({ timeoutMs: 3000, delayMs: 600, idleGraceMs: 200 });
      const ready = await request(api.app).get("/readyz");
      expect(ready.status).toBe(503);
      // A load balancer that has not noticed yet still gets an answer on a new connection.
      const late = await fetch(`http://127.0.0.1:${port}/healthz`);
      expect(late.status).toBe(200);
      expect(late.headers.get("connection")).toBe("close");
      await drained;
      await expect(fetch(`http://127.0.0.1:${port}/healthz`)).rejects.toThrow();
    } finally {
      await stop();
    }
  });

  it("/readyz is ready with a database newer than the build, and not with an older one", async () => {
    const { rows } = await db.root.query("select hash from graphile_migrate.migrations order by filename desc limit 2");
    const older = await buildTestApp(db, { env: RELAXED_LIMITS, latestMigration: rows[1].hash });
    const newer = await buildTestApp(db, { env: RELAXED_LIMITS, latestMigration: "sha1:not-applied-yet" });
    try {
      expect((await request(older.app).get("/readyz")).status).toBe(200);
      const waiting = await request(newer.app).get("/readyz");
      expect(waiting.status).toBe(503);
      expect(waiting.body.error.code).toBe("migrations_pending");
    } finally {
      await older.close();
      await newer.close();
    }
  });
});

describe("slow and silent clients", () => {
  it("a request whose body never finishes is cut off after HTTP_REQUEST_TIMEOUT", async () => {
    const { port, stop } = await listening({ HTTP_REQUEST_TIMEOUT: "1s" });
    try {
      const socket = net.connect(port, "127.0.0.1");
      let reply = "";
      socket.on("data", (chunk) => (reply += chunk));
      socket.write("POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{");
      const started = Date.now();
      await new Promise((resolve) => socket.once("close", resolve));
      expect(Date.now() - started).toBeLessThan(5000);
      expect(reply).toMatch(/^HTTP\/1\.1 408/);
    } finally {
      await stop();
    }
  });

  it("a WebSocket that stops answering pings is closed", async () => {
    const { port, stop } = await listening({ WEBSOCKET_KEEPALIVE: "1s" });
    try {
      // A client that completes the handshake and then never reads again (no pongs).
      const socket = net.connect(port, "127.0.0.1");
      socket.write(
        "GET /graphql HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
          "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n",
      );
      const upgraded = await new Promise<string>((resolve) => socket.once("data", (chunk) => resolve(chunk.toString())));
      expect(upgraded).toMatch(/^HTTP\/1\.1 101/);
      const started = Date.now();
      await new Promise((resolve) => socket.once("close", resolve));
      expect(Date.now() - started).toBeLessThan(5000);
    } finally {
      await stop();
    }
  });

  it("a WebSocket message larger than BODY_LIMIT closes the socket (1009) before it is buffered further", async () => {
    const { port, stop } = await listening({ BODY_LIMIT: "64kb" });
    try {
      const { default: WebSocket } = await import("ws");
      const socket = new WebSocket(`ws://127.0.0.1:${port}/graphql`, "graphql-transport-ws");
      await new Promise((resolve, reject) => {
        socket.once("open", resolve);
        socket.once("error", reject);
      });
      socket.on("error", () => undefined); // the client may see the reset too
      const closed = new Promise<number>((resolve) => socket.once("close", (code) => resolve(code)));
      socket.send(JSON.stringify({ type: "connection_init", payload: { padding: "x".repeat(200 * 1024) } }));
      expect(await closed).toBe(1009);
    } finally {
      await stop();
    }
  });

  it("a subscription sent as a plain POST is refused at once", async () => {
    const { api, stop } = await listening();
    try {
      const res = await graphql(api, `subscription { taskChanged(projectId: "00000000-0000-4000-8000-000000000000") { event } }`);
      expect(res.status).toBe(400);
      expect(res.body.errors[0]).toMatchObject({
        message: "Subscriptions need a WebSocket: connect to /graphql with the graphql-transport-ws protocol.",
        extensions: { code: "websocket_required" },
      });
    } finally {
      await stop();
    }
  });
});
