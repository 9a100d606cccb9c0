// npm run bench [-- --quick]: the benchmark suite. Loads deterministic data into a throwaway
// embedded PostgreSQL, runs the backend as its own process in production mode, and measures each
// workload with 32 kept-alive connections in alternating rounds, printing req/s and latency
// percentiles (medians of the rounds) and writing bench/results/latest.{json,md}.
//
// The hand-written Express + pg server (bench/peers/handwritten.ts) runs beside it, in the same
// rounds; PostGraphile V4 and pgbench are not part of it yet.
import { mkdirSync, writeFileSync } from "node:fs";
import http from "node:http";
import path from "node:path";
import { parseArgs } from "node:util";
import jwt from "jsonwebtoken";
import pg from "pg";
import { PROJECT_ROOT } from "../src/db/setup.ts";
import { spawn } from "node:child_process";
import { freePort, spawnBackend, throwawayDatabase } from "../scripts/lib/stack.ts";
import { FIXTURE, loadData, SIZES, type BenchSize } from "./data.ts";

const { values } = parseArgs({ options: { quick: { type: "boolean", default: false } } });
const SECONDS = values.quick ? 4 : 12;
const ROUNDS = values.quick ? 2 : 3;
const CONNECTIONS = 32;
const JWT_SECRET = "bench-secret-bench-secret-bench-secret-0123456789";
const PUBLIC_URL = "https://bench.example";

interface Request {
  method: string;
  path: string;
  body?: string;
  token?: string;
}
interface Workload {
  name: string;
  /** Undoes what the workload wrote, so later workloads (and rounds) see the same data. */
  reset?: () => Promise<void>;
  /** The same work against the hand-written peer, when it has an equivalent. */
  peer?: (index: number) => Promise<(previous?: { status: number; body: string }) => Request>;
  /** Per connection: makes that connection's next request from the previous answer (state lives in the closure). */
  connection: (index: number) => Promise<(previous?: { status: number; body: string }) => Request>;
  /** What a successful answer looks like (a status), to count failures. */
  ok: (status: number, body: string) => boolean;
}

const graphql = (query: string, variables: Record<string, unknown>, token?: string): Request => ({
  method: "POST",
  path: "/graphql",
  body: JSON.stringify({ query, variables }),
  token,
});
const graphqlOk = (status: number, body: string) => status === 200 && !body.includes('"errors"');

async function measure(port: number, workload: Workload, seconds = SECONDS) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: CONNECTIONS });
  const makers = await Promise.all(Array.from({ length: CONNECTIONS }, (_, i) => workload.connection(i)));
  const latencies: number[] = [];
  let failures = 0;
  let firstFailure: string | undefined;
  const deadline = Date.now() + seconds * 1000;
  const send = (request: Request) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request(
        {
          host: "127.0.0.1",
          port,
          method: request.method,
          path: request.path,
          agent,
          headers: { "content-type": "application/json", ...(request.token ? { authorization: `Bearer ${request.token}` } : {}) },
        },
        (res) => {
          let body = "";
          res.setEncoding("utf8");
          res.on("data", (chunk) => (body += chunk));
          res.on("end", () => resolve({ status: res.statusCode!, body }));
        },
      );
      req.on("error", reject);
      req.end(request.body);
    });
  await Promise.all(
    makers.map(async (next) => {
      let previous: { status: number; body: string } | undefined;
      while (Date.now() < deadline) {
        const request = next(previous);
        const started = performance.now();
        const res = await send(request).catch(() => ({ status: 0, body: "" }));
        previous = res;
        latencies.push(performance.now() - started);
        if (!workload.ok(res.status, res.body)) {
          if (failures === 0) firstFailure = `${res.status} ${res.body.slice(0, 300)}`;
          failures += 1;
        }
      }
    }),
  );
  agent.destroy();
  latencies.sort((a, b) => a - b);
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0;
  if (firstFailure) console.error(`${workload.name}: ${failures} failed, e.g. ${firstFailure}`);
  return { rps: latencies.length / seconds, p50: at(0.5), p99: at(0.99), failures, requests: latencies.length };
}

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
};

async function benchSize(size: BenchSize) {
  const { database, close } = await throwawayDatabase();
  // A superuser on the app's database (triggers off while loading).
  const rootUrl = new URL(database.urls.root!);
  rootUrl.pathname = new URL(database.urls.owner).pathname;
  const root = new pg.Pool({ connectionString: rootUrl.toString(), max: 2 });
  const started = Date.now();
  await loadData(root, size);
  // Limits would stop createTask after 250 tasks a project: the benchmark's plan has none.
  await root.query("update app_public.plans set max_projects = null, max_members = null, max_tasks_per_project = null where is_default");
  const loadedMs = Date.now() - started;
  const backend = await spawnBackend({
    urls: database.urls,
    env: {
      NODE_ENV: "production",
      JWT_SECRET,
      PUBLIC_URL,
      SMTP_URL: "disabled",
      WORKER: "off",
      REQUIRE_VERIFIED_EMAIL: "false",
      SHUTDOWN_DELAY: "0s",
      JWT_ACCESS_TTL: "1h",
      RATE_LIMIT_LOGIN_IP: "1000000/1m",
      RATE_LIMIT_LOGIN_EMAIL: "1000000/1m",
      // 32 sign-ins at once for one address would otherwise count as guessing.
      LOGIN_BACKOFF_AFTER: "100",
      RATE_LIMIT_REGISTER_IP: "1000000/1m",
      RATE_LIMIT_REFRESH_SESSION: "1000000/1m",
    },
  });
  const url = `http://127.0.0.1:${backend.port}`;
  const peerPort = await freePort();
  const peer = spawn(process.execPath, ["bench/peers/handwritten.ts"], {
    cwd: PROJECT_ROOT,
    env: { PATH: process.env.PATH, PORT: String(peerPort), AUTH_DATABASE_URL: database.urls.authenticator, JWT_SECRET, PUBLIC_URL, DATABASE_USER: database.urls.roles.user },
    stdio: "inherit",
  });
  for (let tries = 0; !(await fetch(`http://127.0.0.1:${peerPort}/healthz`).then((r) => r.ok, () => false)); tries++) {
    if (tries > 100) throw new Error("the hand-written peer did not start");
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const q = async <T extends pg.QueryResultRow>(text: string) => (await root.query<T>(text)).rows;
  const { member, project, task } = (
    await q<{ member: string; project: string; task: string }>(`select ${FIXTURE.member} as member, ${FIXTURE.project} as project, ${FIXTURE.task} as task`)
  )[0]!;
  // A live session for the member, and its access token, as /auth/login would make them.
  const session = (await q<{ id: string }>(`insert into app_private.sessions (user_id, expires_at) values ('${member}', now() + interval '1 day') returning id`))[0]!.id;
  const token = jwt.sign({ sid: session, role: "user" }, JWT_SECRET, { algorithm: "HS256", subject: member, issuer: PUBLIC_URL, audience: "oddscenes", expiresIn: 3600 });
  // One account with a password, for sign-in and refresh.
  const account = { email: "bench-login@bench.example", password: "correct horse battery staple", name: "Bench" };
  await fetch(`${url}/auth/register`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(account) });
  const credentials = JSON.stringify({ email: account.email, password: account.password });
  const login = async () =>
    (await (await fetch(`${url}/auth/login`, { method: "POST", headers: { "content-type": "application/json" }, body: credentials })).json()) as {
      refreshToken: string;
    };
  const searchable = (await q<{ n: number }>(`select count(*)::int as n from app_public.tasks where project_id = '${project}'`))[0]!.n;

  const workloads: Workload[] = [
    {
      name: "Q1 page of 20 tasks by position + totalCount",
      connection: async () => () =>
        graphql(`query ($p: UUID!) { project(rowId: $p) { tasks(first: 20, orderBy: POSITION_ASC) { totalCount nodes { rowId title status position } } } }`, { p: project }, token),
      peer: async () => () => ({ method: "POST", path: "/q1", body: JSON.stringify({ params: [project] }), token }),
      ok: graphqlOk,
    },
    {
      name: "Q2 orgs → projects → 10 tasks → assignee",
      connection: async () => () =>
        graphql(`{ organizations { nodes { name projects { nodes { name tasks(first: 10, orderBy: POSITION_ASC) { nodes { title assignee { name } } } } } } } }`, {}, token),
      peer: async () => () => ({ method: "POST", path: "/q2", body: JSON.stringify({ params: [] }), token }),
      ok: graphqlOk,
    },
    {
      name: "Q3 task + comments + authors + project + members",
      connection: async () => () =>
        graphql(
          `query ($t: UUID!) { task(rowId: $t) { title comments(first: 50) { nodes { body author { name } } } project { name organization { organizationMemberships { nodes { role user { name } } } } } } }`,
          { t: task },
          token,
        ),
      peer: async () => () => ({ method: "POST", path: "/q3", body: JSON.stringify({ params: [task] }), token }),
      ok: graphqlOk,
    },
    {
      name: "Q4a filter status + title includesInsensitive + totalCount",
      connection: async () => () =>
        graphql(
          `{ tasks(first: 20, filter: { status: { in: [todo, in_progress] }, title: { includesInsensitive: "landing" } }) { totalCount nodes { title } } }`,
          {},
          token,
        ),
      peer: async () => () => ({ method: "POST", path: "/q4a", body: JSON.stringify({ params: [] }), token }),
      ok: graphqlOk,
    },
    {
      name: "Q4b searchTasks + totalCount",
      connection: async () => () => graphql(`{ searchTasks(query: "landing page", first: 20) { totalCount nodes { title } } }`, {}, token),
      peer: async () => () => ({ method: "POST", path: "/q4b", body: JSON.stringify({ params: [] }), token }),
      ok: graphqlOk,
    },
    {
      name: "M1 createTask",
      reset: async () => {
        await root.query("delete from app_public.tasks where title ~ '^(Bench|Peer) [0-9]+$'");
        await root.query("vacuum analyze app_public.tasks");
      },
      connection: async () => {
        let n = 0;
        return () => graphql(`mutation ($p: UUID!, $t: String!) { createTask(input: { task: { projectId: $p, title: $t } }) { task { rowId } } }`, { p: project, t: `Bench ${n++}` }, token);
      },
      peer: async () => {
        let n = 0;
        return () => ({ method: "POST", path: "/m1", body: JSON.stringify({ params: [project, `Peer ${n++}`] }), token });
      },
      ok: graphqlOk,
    },
    {
      name: "login",
      connection: async () => () => ({ method: "POST", path: "/auth/login", body: credentials }),
      ok: (status) => status === 200,
    },
    {
      name: "refresh",
      connection: async () => {
        // Each refresh spends the token and returns the next, as a client does.
        let refreshToken = (await login()).refreshToken;
        return (previous) => {
          if (previous?.status === 200) refreshToken = (JSON.parse(previous.body) as { refreshToken: string }).refreshToken;
          return { method: "POST", path: "/auth/refresh", body: JSON.stringify({ refreshToken }) };
        };
      },
      ok: (status) => status === 200,
    },
  ];

  // Warm both servers up (JIT, connections, plan caches) before anything counts.
  for (const workload of workloads) {
    await measure(backend.port, workload, 1);
    if (workload.peer) await measure(peerPort, { name: workload.name, connection: workload.peer, ok: () => true }, 1);
    await workload.reset?.();
  }
  const results: Record<string, Array<Awaited<ReturnType<typeof measure>>>> = {};
  const peerResults: Record<string, Array<Awaited<ReturnType<typeof measure>>>> = {};
  for (let round = 0; round < ROUNDS; round++) {
    // Alternate the order each round (and ours and the peer's within it: A B, then B A), so no
    // side always runs on a warmer or more loaded machine.
    const order = round % 2 === 0 ? workloads : [...workloads].reverse();
    for (const workload of order) {
      const ours = () =>
        measure(backend.port, workload)
          .then((r) => (results[workload.name] ??= []).push(r))
          .then(() => workload.reset?.());
      const theirs = () =>
        workload.peer
          ? measure(peerPort, { name: `${workload.name} (peer)`, connection: workload.peer, ok: (status) => status === 200 }).then((r) =>
              (peerResults[workload.name] ??= []).push(r),
            ).then(() => workload.reset?.())
          : Promise.resolve();
      if (round % 2 === 0) {
        await ours();
        await theirs();
      } else {
        await theirs();
        await ours();
      }
    }
  }
  peer.kill("SIGTERM");
  backend.child.kill("SIGTERM");
  await new Promise((resolve) => backend.child.once("exit", resolve));
  await root.end();
  await close();
  return {
    size: size.name,
    loadedMs,
    tasksInProject: searchable,
    workloads: Object.entries(results).map(([name, rounds]) => ({
      name,
      peerRps: peerResults[name] ? Math.round(median(peerResults[name].map((r) => r.rps))) : undefined,
      rps: Math.round(median(rounds.map((r) => r.rps))),
      rpsSpread: [Math.round(Math.min(...rounds.map((r) => r.rps))), Math.round(Math.max(...rounds.map((r) => r.rps)))],
      p50: Number(median(rounds.map((r) => r.p50)).toFixed(1)),
      p99: Number(median(rounds.map((r) => r.p99)).toFixed(1)),
      failures: rounds.reduce((sum, r) => sum + r.failures, 0),
    })),
  };
}

const sizes = values.quick ? [SIZES.small] : [SIZES.small, SIZES.large];
const report = { machine: `${(await import("node:os")).cpus().length} cores, Node ${process.version}`, quick: values.quick, seconds: SECONDS, rounds: ROUNDS, connections: CONNECTIONS, runs: [] as unknown[] };
const lines: string[] = [];
for (const size of sizes) {
  const run = await benchSize(size);
  report.runs.push(run);
  lines.push(
    `### ${run.size} (loaded in ${(run.loadedMs / 1000).toFixed(1)} s)`,
    "",
    "| workload | req/s (median, spread) | p50 ms | p99 ms | failed | hand-written req/s | ours / hand-written |",
    "|---|---|---|---|---|---|---|",
  );
  for (const w of run.workloads) {
    const ratio = w.peerRps ? (w.rps / w.peerRps).toFixed(2) : "–";
    lines.push(`| ${w.name} | ${w.rps} (${w.rpsSpread[0]}-${w.rpsSpread[1]}) | ${w.p50} | ${w.p99} | ${w.failures} | ${w.peerRps ?? "–"} | ${ratio} |`);
  }
  lines.push("");
}
const markdown = [`Benchmark: ${report.machine}; ${CONNECTIONS} connections, ${ROUNDS} rounds of ${SECONDS} s per workload.`, "", ...lines].join("\n");
const dir = path.join(PROJECT_ROOT, "bench", "results");
mkdirSync(dir, { recursive: true });
writeFileSync(path.join(dir, "latest.json"), JSON.stringify(report, null, 2) + "\n");
writeFileSync(path.join(dir, "latest.md"), markdown + "\n");
console.log(markdown);
