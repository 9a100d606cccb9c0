// Shared pieces of the fault drills: a throwaway embedded database, a backend in a child process
// (so it can be killed or signalled like a deployed one), a keep-alive load generator, and figures.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { pino } from "pino";
import { loadConfig } from "../../src/config.ts";
import { openDatabase, type Database } from "../../src/db/database.ts";
import { migrateDatabase, PROJECT_ROOT } from "../../src/db/setup.ts";

export const quietLogger = pino({ level: "warn" });

/** A fresh embedded PostgreSQL in a temporary folder, migrated; removed by `close`. */
export async function throwawayDatabase(): Promise<{ database: Database; close: () => Promise<void> }> {
  const dataDir = mkdtempSync(path.join(tmpdir(), "oddscenes-drill-"));
  const database = await openDatabase(loadConfig({ DATA_DIR: dataDir, LOG_LEVEL: "warn" }, PROJECT_ROOT, "cli"), quietLogger);
  await migrateDatabase(database.urls, quietLogger);
  return {
    database,
    close: async () => {
      await database.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}

/** Replaces the host and port of the owner and authenticator URLs (to go through a proxy). */
export function via(urls: Database["urls"], port: number): { owner: string; authenticator: string } {
  const rewrite = (value: string) => {
    const url = new URL(value);
    url.hostname = "127.0.0.1";
    url.port = String(port);
    return url.toString();
  };
  return { owner: rewrite(urls.owner), authenticator: rewrite(urls.authenticator) };
}

/** An entry point (`src/index.ts`, `src/worker/main.ts`) as a child process on `urls`. */
export function spawnEntry(entry: string, urls: { owner: string; authenticator: string }, env: Record<string, string> = {}) {
  const child: ChildProcess = spawn(process.execPath, [entry], {
    cwd: PROJECT_ROOT,
    env: {
      PATH: process.env.PATH,
      NODE_ENV: "test",
      DATABASE_URL: urls.owner,
      AUTH_DATABASE_URL: urls.authenticator,
      LOG_LEVEL: "warn",
      RATE_LIMIT_GRAPHQL_IP: "1000000/1m",
      RATE_LIMIT_GRAPHQL_USER: "1000000/1m",
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout!.on("data", (chunk) => (output += chunk));
  child.stderr!.on("data", (chunk) => (output += chunk));
  return { child, output: () => output };
}

/** `npm start` as a child process; resolves once /healthz answers. */
export async function spawnBackend(options: { urls: { owner: string; authenticator: string }; env?: Record<string, string> }) {
  const port = await freePort();
  const { child, output } = spawnEntry("src/index.ts", options.urls, { PORT: String(port), ...options.env });
  const started = Date.now();
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the backend exited during start:\n${output()}`);
    const ok = await fetch(`http://127.0.0.1:${port}/healthz`).then(
      (res) => res.ok,
      () => false,
    );
    if (ok) break;
    if (Date.now() - started > 60_000) throw new Error(`the backend did not start:\n${output()}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  return { child, port, output };
}

export interface LoadResult {
  total: number;
  byStatus: Map<string, number>;
  /** Transport failures (reset, refused, hang up): requests that got no HTTP answer. */
  failures: Map<string, number>;
  /** When each answer came and what it was, for timelines. */
  timeline: Array<{ at: number; status: string }>;
}

/**
 * `connections` clients, each on its own kept-alive connection, send `request()` back to back
 * until `stop()`; a client whose connection is told to close moves to a new one, as a load
 * balancer would, unless `followClose` is false.
 */
export function load(port: number, connections: number, request: () => { method: string; path: string; body?: string; headers?: Record<string, string> }) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: connections });
  const result: LoadResult = { total: 0, byStatus: new Map(), failures: new Map(), timeline: [] };
  const started = Date.now();
  let running = true;
  const count = (map: Map<string, number>, key: string) => map.set(key, (map.get(key) ?? 0) + 1);
  const once = () =>
    new Promise<void>((resolve) => {
      const { method, path: target, body, headers } = request();
      const req = http.request({ host: "127.0.0.1", port, method, path: target, agent, headers: { "content-type": "application/json", ...headers } }, (res) => {
        res.resume();
        res.on("end", () => {
          result.total += 1;
          count(result.byStatus, String(res.statusCode));
          result.timeline.push({ at: Date.now() - started, status: String(res.statusCode) });
          resolve();
        });
      });
      req.on("error", (error: NodeJS.ErrnoException) => {
        result.total += 1;
        count(result.failures, error.code ?? error.message);
        result.timeline.push({ at: Date.now() - started, status: error.code ?? "error" });
        setTimeout(resolve, 20);
      });
      req.end(body);
    });
  const clients = Array.from({ length: connections }, async () => {
    while (running) await once();
  });
  return {
    result,
    /** When the load began; timeline entries are relative to it. */
    started,
    stop: async () => {
      running = false;
      await Promise.all(clients);
      agent.destroy();
      return result;
    },
  };
}

export const formatCounts = (map: Map<string, number>) =>
  [...map.entries()]
    .sort()
    .map(([key, n]) => `${key}: ${n}`)
    .join(", ") || "none";

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
