// npm run bench [-- --quick] [-- --baseline <git-ref>]: the benchmark suite.
//
// Loads deterministic data (bench/data.ts) into a throwaway embedded PostgreSQL, runs the backend
// as its own process in production mode, and measures each workload with 32 kept-alive
// connections against every side, in alternating rounds (A B C D, then D C B A; the workloads'
// order alternates too) after a 1 s warm-up per side and workload:
//   ours         the backend as the working tree has it
//   baseline     the backend at <git-ref> (--baseline), in a temporary git worktree, on its own
//                database made by that ref's migrations and loaded with the same data
//   handwritten  an Express + pg server with hand-written SQL (bench/peers/handwritten.ts)
//   v4           PostGraphile V4 over our database (bench/peers/v4.ts)
//   pgbench      the hand-written SQL through pgbench, no HTTP: the database's own limit
// plus realtime fan-out (WebSocket subscribers of one project) and graphile-worker throughput and
// latency. CPU per request is read from /proc for every server and database.
//
// Quick: 20k tasks, 2 rounds of 2 s. Full: 20k tasks (ours and hand-written only, 2 rounds of
// 4 s, to show how Q1 scales), then 200k tasks with every side (3 rounds of 6 s).
// Writes bench/results/latest.{json,md,png}; exits non-zero if any of ours' requests failed.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseArgs } from "node:util";
import jwt from "jsonwebtoken";
import pg from "pg";
import * as currentStack from "../scripts/lib/stack.ts";
import { PROJECT_ROOT } from "../src/db/setup.ts";
import { FIXTURE, loadData, SIZES, type BenchSize } from "./data.ts";
import { checkoutBaseline, type BaselineCheckout, type Stack } from "./lib/baseline.ts";
import { CleanupScope, onInterrupt, stopChild } from "./lib/cleanup.ts";
import { postmasterPid } from "./lib/cpu.ts";
import { measureHttp, type Answer, type ConnectionFactory, type Measurement } from "./lib/http-load.ts";
import { findPgbench, measurePgbench, pgbenchScript, sqlLiteral } from "./lib/pgbench.ts";
import {
  renderMarkdown,
  type BenchReport,
  type RealtimeResult,
  type Side,
  type SideResult,
  type SuiteReport,
  type SuiteSizeRun,
  type WorkerResult,
  type WorkloadResult,
} from "./lib/report.ts";
import { V4_QUERIES } from "./peers/v4-queries.ts";
import { measureFanOut } from "./workloads/realtime.ts";
import { measureWorker } from "./workloads/worker.ts";

// parseArgs refuses unknown or malformed options by throwing: a usage message instead of a stack trace.
const { values } = (() => {
  try {
    return parseArgs({
      options: {
        quick: { type: "boolean", default: false },
        baseline: { type: "string" },
        // A focused run (while working on one query): only these workloads, sides, size, rounds.
        only: { type: "string" },
        sides: { type: "string" },
        size: { type: "string" },
        rounds: { type: "string" },
        seconds: { type: "string" },
        // Writes a V8 CPU profile of ours' server process into this folder.
        "cpu-prof": { type: "string" },
      },
    });
  } catch (error) {
    return usage(error instanceof Error ? error.message : String(error));
  }
})();
const QUICK = values.quick;
const BASELINE_REF = values.baseline;
const list = (value: string | undefined) => value?.split(",").map((item) => item.trim()).filter(Boolean);
const ONLY_WORKLOADS = list(values.only);
const ONLY_SIDES = list(values.sides);
const FOCUSED = [values.only, values.sides, values.size, values.rounds, values.seconds, values["cpu-prof"]].some((value) => value !== undefined);
const CONNECTIONS = 32;
const WARMUP_SECONDS = 1;
const PGBENCH_THREADS = 2;
const JWT_SECRET = "bench-secret-bench-secret-bench-secret-0123456789";
const PUBLIC_URL = "https://bench.example";
const BACKEND_ENV = {
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
  // The realtime workload holds up to 100 subscriptions as one user.
  GRAPHQL_MAX_SUBSCRIPTIONS: "1000",
};
/** Titles the writing workload (M1) gives its tasks, per side; its reset deletes them. */
const WRITTEN_TITLES = "^(Bench|Peer|V4|Pgbench) [0-9-]+$";

interface SizePlan {
  size: BenchSize;
  seconds: number;
  rounds: number;
  /** Which sides run at this size (baseline and pgbench only if available). */
  sides: Side[];
  /** Realtime fan-out and the worker at this size. */
  extras?: { subscribers: number; changes: number; jobs: number; latencyJobs: number; latencyRatePerSecond: number };
}
const ALL_SIDES: Side[] = ["ours", "baseline", "handwritten", "v4", "pgbench"];
const PLANS: SizePlan[] = QUICK
  ? [{ size: SIZES.small, seconds: 2, rounds: 2, sides: ALL_SIDES, extras: { subscribers: 50, changes: 10, jobs: 1000, latencyJobs: 100, latencyRatePerSecond: 50 } }]
  : [
      { size: SIZES.small, seconds: 4, rounds: 2, sides: ["ours", "handwritten"] },
      { size: SIZES.large, seconds: 6, rounds: 3, sides: ALL_SIDES, extras: { subscribers: 100, changes: 20, jobs: 2000, latencyJobs: 200, latencyRatePerSecond: 50 } },
    ];
if (values.size !== undefined) {
  const plan = PLANS.find((p) => p.size === (values.size === "small" ? SIZES.small : values.size === "large" ? SIZES.large : undefined));
  if (!plan) usage(`--size is small or large${QUICK ? " (and --quick has only small)" : ""}`);
  PLANS.splice(0, PLANS.length, plan);
}
for (const plan of PLANS) {
  if (values.rounds !== undefined) plan.rounds = positive("--rounds", values.rounds, { integer: true });
  if (values.seconds !== undefined) plan.seconds = positive("--seconds", values.seconds);
  if (ONLY_SIDES) {
    const unknown = ONLY_SIDES.filter((side) => !ALL_SIDES.includes(side as Side));
    if (unknown.length > 0) usage(`unknown side ${unknown.join(", ")}: the sides are ${ALL_SIDES.join(", ")}`);
    // Ours always runs (the others are compared with it); a chosen size may have any side.
    plan.sides = (values.size !== undefined ? ALL_SIDES : plan.sides).filter((side) => side === "ours" || ONLY_SIDES.includes(side));
  }
  if (ONLY_WORKLOADS || ONLY_SIDES) plan.extras = undefined;
}
const MAIN_PLAN = PLANS[PLANS.length - 1]!;
function positive(flag: string, value: string, { integer = false } = {}): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n))) usage(`${flag} takes a positive ${integer ? "whole " : ""}number, not ${JSON.stringify(value)}`);
  return n;
}
function usage(problem: string): never {
  console.error(`npm run bench: ${problem}
  npm run bench [-- --quick] [--baseline <git ref>]
    [--only Q1,Q4b,...] [--sides ours,baseline,handwritten,v4,pgbench] [--size small|large]
    [--rounds N] [--seconds S] [--cpu-prof <folder>]
  A focused run (any of the last six) prints its table and leaves bench/results/ as it is.`);
  process.exit(2);
}
const CHART_MODULE = new URL("./chart.ts", import.meta.url).href;

const startedAt = Date.now();
/** A progress line on stderr (stdout gets the markdown), with the time since the start. */
const progress = (line: string) => {
  const seconds = Math.round((Date.now() - startedAt) / 1000);
  console.error(`${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, "0")} ${line}`);
};
const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
};
const round = (value: number, digits: number) => Number(value.toFixed(digits));

// ---------------------------------------------------------------------------------------------
// A database with the data loaded and a backend on it (ours, or the baseline's).

/** What a side's requests need: who signs in, what they look at. */
interface Ctx {
  member: string;
  session: string;
  project: string;
  task: string;
  /** An access token for `member` with `session`, as /auth/login makes them. */
  token: string;
  /** JSON body of /auth/login for the account made for login and refresh. */
  credentials: string;
  /** Signs in on this target's backend; the refresh token. */
  login: () => Promise<string>;
  /** DATABASE_USER: the role requests run as. */
  userRole: string;
}

interface Target {
  label: "ours" | "baseline";
  urls: Awaited<ReturnType<Stack["throwawayDatabase"]>>["database"]["urls"];
  root: pg.Pool;
  backend: { child: ChildProcess; port: number };
  postmaster: number;
  loadedMs: number;
  tasksInProject: number;
  ctx: Ctx;
}

async function startTarget(label: Target["label"], stack: Stack, size: BenchSize, scope: CleanupScope, tag: string): Promise<Target> {
  progress(`${tag} ${label}: creating and migrating a database…`);
  // Running as root, the embedded cluster lives in /var/tmp/oddscenes-pg-<hash> (src/db/embedded.ts),
  // which throwawayDatabase's close leaves behind: remove it once its server has stopped.
  let cluster: { dir: string; postmaster: number } | undefined;
  scope.defer(`remove the ${label} cluster folder`, () => {
    if (cluster && /^\/var\/tmp\/oddscenes-pg-[0-9a-f]+$/.test(cluster.dir) && !isAlive(cluster.postmaster)) rmSync(cluster.dir, { recursive: true, force: true });
  });
  const { database, close } = await stack.throwawayDatabase();
  scope.defer(`stop the ${label} database`, close);
  // A superuser on the app's database (triggers off while loading).
  const rootUrl = new URL(database.urls.root!);
  rootUrl.pathname = new URL(database.urls.owner).pathname;
  const root = new pg.Pool({ connectionString: rootUrl.toString(), max: 2 });
  root.on("error", () => undefined);
  scope.defer(`close the ${label} root pool`, () => root.end());
  const postmaster = await postmasterPid(root);
  cluster = { dir: (await root.query<{ data_directory: string }>("show data_directory")).rows[0]!.data_directory, postmaster };
  const started = Date.now();
  await loadData(root, size);
  // Limits would stop createTask after 250 tasks a project: the benchmark's plan has none.
  await root.query("update app_public.plans set max_projects = null, max_members = null, max_tasks_per_project = null where is_default");
  const loadedMs = Date.now() - started;
  progress(`${tag} ${label}: ${size.name} loaded in ${(loadedMs / 1000).toFixed(1)} s; starting the backend…`);
  const profile: Record<string, string> = label === "ours" && values["cpu-prof"] ? { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${path.resolve(values["cpu-prof"])}` } : {};
  const backend = await stack.spawnBackend({ urls: database.urls, env: { ...BACKEND_ENV, ...profile } });
  scope.defer(`stop the ${label} backend`, () => stopChild(backend.child));
  const url = `http://127.0.0.1:${backend.port}`;

  const q = async <T extends pg.QueryResultRow>(text: string, params: unknown[] = []) => (await root.query<T>(text, params)).rows;
  const { member, project, task } = (
    await q<{ member: string; project: string; task: string }>(`select ${FIXTURE.member} as member, ${FIXTURE.project} as project, ${FIXTURE.task} as task`)
  )[0]!;
  // A live session for the member, and its access token, as /auth/login would make them.
  const session = (await q<{ id: string }>("insert into app_private.sessions (user_id, expires_at) values ($1, now() + interval '1 day') returning id", [member]))[0]!.id;
  const token = jwt.sign({ sid: session, role: "user" }, JWT_SECRET, { algorithm: "HS256", subject: member, issuer: PUBLIC_URL, audience: "oddscenes", expiresIn: 3600 });
  // One account with a password, for sign-in and refresh.
  const account = { email: "bench-login@bench.example", password: "correct horse battery staple", name: "Bench" };
  const registered = await fetch(`${url}/auth/register`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(account) });
  if (!registered.ok) progress(`${tag} ${label}: registering the sign-in account answered ${registered.status}: ${(await registered.text()).slice(0, 200)}`);
  const credentials = JSON.stringify({ email: account.email, password: account.password });
  // (Set-up for the refresh workload, not measured: a failed sign-in is tried again.)
  const login = async () => {
    for (let attempt = 1; ; attempt++) {
      const res = await fetch(`${url}/auth/login`, { method: "POST", headers: { "content-type": "application/json" }, body: credentials });
      const body = await res.text();
      if (res.ok) return (JSON.parse(body) as { refreshToken: string }).refreshToken;
      if (attempt === 3) throw new Error(`${label}: signing in for the refresh workload answered ${res.status}: ${body.slice(0, 200)}`);
    }
  };
  const tasksInProject = (await q<{ n: number }>("select count(*)::int as n from app_public.tasks where project_id = $1", [project]))[0]!.n;
  return {
    label,
    urls: database.urls,
    root,
    backend,
    postmaster,
    loadedMs,
    tasksInProject,
    ctx: { member, session, project, task, token, credentials, login, userRole: database.urls.roles.user },
  };
}

/** A peer server (bench/peers/*.ts) as a child process; resolves once its /healthz answers 200. */
async function spawnPeer(name: string, file: string, env: Record<string, string>, scope: CleanupScope): Promise<{ child: ChildProcess; port: number }> {
  const port = await currentStack.freePort();
  const child = spawn(process.execPath, [file], {
    cwd: PROJECT_ROOT,
    env: { PATH: process.env.PATH, NODE_ENV: "production", PORT: String(port), ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  const keep = (chunk: Buffer) => (output = (output + chunk.toString()).slice(-10_000));
  child.stdout!.on("data", keep);
  child.stderr!.on("data", keep);
  child.once("exit", (code, signal) => {
    if (!stopping.has(child)) progress(`the ${name} peer exited (${code ?? signal}):\n${output}`);
  });
  scope.defer(`stop the ${name} peer`, () => {
    stopping.add(child);
    return stopChild(child);
  });
  const started = Date.now();
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the ${name} peer exited during start:\n${output}`);
    if (await fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.ok, () => false)) break;
    if (Date.now() - started > 90_000) throw new Error(`the ${name} peer did not start:\n${output}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  return { child, port };
}
const stopping = new WeakSet<ChildProcess>();

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// Workloads.

const graphqlRequest = (query: string, variables: Record<string, unknown>, token?: string) => ({
  method: "POST",
  path: "/graphql",
  body: JSON.stringify({ query, variables }),
  token,
});
/** A 200 without GraphQL errors (the hand-written peer answers failures with 401/500). */
const answeredOk = ({ status, body }: Answer) => status === 200 && !body.includes('"errors"');
const statusOk = ({ status }: Answer) => status === 200;

interface Workload {
  key: string;
  name: string;
  /** Our GraphQL API (ours and baseline). */
  backend: (ctx: Ctx) => ConnectionFactory;
  handwritten?: (ctx: Ctx) => ConnectionFactory;
  v4?: (ctx: Ctx) => ConnectionFactory;
  /** The hand-written peer's query for pgbench, with its parameters as SQL expressions. */
  pgbench?: (ctx: Ctx) => { query: string; params: string[]; preamble?: string[] };
  /** It writes: undo that after each side's run, so every run sees the same data. */
  writes?: boolean;
  ok: (answer: Answer) => boolean;
}

const same =
  (request: (ctx: Ctx) => ReturnType<typeof graphqlRequest>) =>
  (ctx: Ctx): ConnectionFactory =>
  async () =>
  () =>
    request(ctx);
const peer = (query: string, params: (ctx: Ctx) => unknown[]) => same((ctx) => ({ method: "POST", path: `/${query}`, body: JSON.stringify({ params: params(ctx) }), token: ctx.token }));
const v4 = (query: keyof typeof V4_QUERIES) => same((ctx) => ({ method: "POST", path: "/graphql", body: JSON.stringify(V4_QUERIES[query]({ project: ctx.project, task: ctx.task, title: "" })), token: ctx.token }));

const WORKLOADS: Workload[] = [
  {
    key: "Q1",
    name: "Q1 page of 20 tasks by position + totalCount",
    backend: same((ctx) =>
      graphqlRequest(`query ($p: UUID!) { project(rowId: $p) { tasks(first: 20, orderBy: POSITION_ASC) { totalCount nodes { rowId title status position } } } }`, { p: ctx.project }, ctx.token),
    ),
    handwritten: peer("q1", (ctx) => [ctx.project]),
    v4: v4("q1"),
    pgbench: (ctx) => ({ query: "q1", params: [sqlLiteral(ctx.project)] }),
    ok: answeredOk,
  },
  {
    key: "Q2",
    name: "Q2 orgs → projects → 10 tasks → assignee",
    backend: same((ctx) =>
      graphqlRequest(`{ organizations { nodes { name projects { nodes { name tasks(first: 10, orderBy: POSITION_ASC) { nodes { title assignee { name } } } } } } } }`, {}, ctx.token),
    ),
    handwritten: peer("q2", () => []),
    v4: v4("q2"),
    pgbench: () => ({ query: "q2", params: [] }),
    ok: answeredOk,
  },
  {
    key: "Q3",
    name: "Q3 task + comments + authors + project + members",
    backend: same((ctx) =>
      graphqlRequest(
        `query ($t: UUID!) { task(rowId: $t) { title comments(first: 50) { nodes { body author { name } } } project { name organization { organizationMemberships { nodes { role user { name } } } } } } }`,
        { t: ctx.task },
        ctx.token,
      ),
    ),
    handwritten: peer("q3", (ctx) => [ctx.task]),
    v4: v4("q3"),
    pgbench: (ctx) => ({ query: "q3", params: [sqlLiteral(ctx.task)] }),
    ok: answeredOk,
  },
  {
    key: "Q4a",
    name: "Q4a filter status + title includesInsensitive + totalCount",
    backend: same((ctx) =>
      graphqlRequest(`{ tasks(first: 20, filter: { status: { in: [todo, in_progress] }, title: { includesInsensitive: "landing" } }) { totalCount nodes { title } } }`, {}, ctx.token),
    ),
    handwritten: peer("q4a", () => []),
    v4: v4("q4a"),
    pgbench: () => ({ query: "q4a", params: [] }),
    ok: answeredOk,
  },
  {
    key: "Q4b",
    name: "Q4b searchTasks + totalCount",
    backend: same((ctx) => graphqlRequest(`{ searchTasks(query: "landing page", first: 20) { totalCount nodes { title } } }`, {}, ctx.token)),
    handwritten: peer("q4b", () => []),
    v4: v4("q4b"),
    pgbench: () => ({ query: "q4b", params: [] }),
    ok: answeredOk,
  },
  {
    key: "M1",
    name: "M1 createTask",
    writes: true,
    backend: (ctx) => async () => {
      let n = 0;
      return () =>
        graphqlRequest(`mutation ($p: UUID!, $t: String!) { createTask(input: { task: { projectId: $p, title: $t } }) { task { rowId } } }`, { p: ctx.project, t: `Bench ${n++}` }, ctx.token);
    },
    handwritten: (ctx) => async () => {
      let n = 0;
      return () => ({ method: "POST", path: "/m1", body: JSON.stringify({ params: [ctx.project, `Peer ${n++}`] }), token: ctx.token });
    },
    v4: (ctx) => async () => {
      let n = 0;
      return () => ({ method: "POST", path: "/graphql", body: JSON.stringify(V4_QUERIES.m1({ project: ctx.project, task: ctx.task, title: `V4 ${n++}` })), token: ctx.token });
    },
    pgbench: (ctx) => ({
      query: "m1",
      params: [sqlLiteral(ctx.project), "'Pgbench ' || :client_id || '-' || :r"],
      preamble: ["\\set r random(1, 1000000000)"],
    }),
    ok: answeredOk,
  },
  {
    key: "login",
    name: "login",
    backend: (ctx) => async () => () => ({ method: "POST", path: "/auth/login", body: ctx.credentials }),
    ok: statusOk,
  },
  {
    key: "refresh",
    name: "refresh",
    backend: (ctx) => async () => {
      // Each refresh spends the token and returns the next, as a client does.
      let refreshToken = await ctx.login();
      return (previous) => {
        if (previous?.status === 200) refreshToken = (JSON.parse(previous.body) as { refreshToken: string }).refreshToken;
        return { method: "POST", path: "/auth/refresh", body: JSON.stringify({ refreshToken }) };
      };
    },
    ok: statusOk,
  },
];

if (ONLY_WORKLOADS?.length === 0) usage("--only names at least one workload");
const unknownWorkloads = ONLY_WORKLOADS?.filter((key) => !WORKLOADS.some((w) => w.key === key)) ?? [];
if (unknownWorkloads.length > 0) usage(`unknown workload ${unknownWorkloads.join(", ")}: the workloads are ${WORKLOADS.map((w) => w.key).join(", ")}`);
/** The workloads this run measures (all but a focused run's --only). */
const SELECTED = ONLY_WORKLOADS ? WORKLOADS.filter((w) => ONLY_WORKLOADS.includes(w.key)) : WORKLOADS;

async function resetWrites(target: Target) {
  await target.root.query("delete from app_public.tasks where title ~ $1", [WRITTEN_TITLES]);
  await target.root.query("vacuum analyze app_public.tasks");
}

// ---------------------------------------------------------------------------------------------
// One data size: every side, every workload, the rounds; then realtime and the worker.

interface Runner {
  side: Side;
  /** Measures `workload` for `seconds`; undefined when the side has no such workload. */
  run: (workload: Workload, seconds: number) => Promise<Measurement> | undefined;
}

const PGBENCH = findPgbench();
let pgbenchWorkDir: string | undefined;
let oursFailed = false;

async function benchSize(plan: SizePlan, baseline: BaselineCheckout | undefined): Promise<SuiteSizeRun> {
  const tag = `[${plan.size.name.split(" ")[0]}]`;
  const sides = plan.sides.filter((side) => (side === "baseline" ? baseline !== undefined : side === "pgbench" ? PGBENCH !== undefined : true));
  const scope = new CleanupScope();
  try {
    const ours = await startTarget("ours", currentStack, plan.size, scope, tag);
    const base = sides.includes("baseline") ? await startTarget("baseline", baseline!.stack, plan.size, scope, tag) : undefined;
    const peerEnv = { AUTH_DATABASE_URL: ours.urls.authenticator, JWT_SECRET, PUBLIC_URL, DATABASE_USER: ours.urls.roles.user };
    const handwritten = sides.includes("handwritten") ? await spawnPeer("hand-written", "bench/peers/handwritten.ts", peerEnv, scope) : undefined;
    const v4Peer = sides.includes("v4") ? await spawnPeer("V4", "bench/peers/v4.ts", { ...peerEnv, DATABASE_ANONYMOUS: ours.urls.roles.anonymous }, scope) : undefined;

    const backendRunner = (side: Side, target: Target): Runner => ({
      side,
      run: (workload, seconds) =>
        measureHttp({
          port: target.backend.port,
          connections: CONNECTIONS,
          seconds,
          connection: workload.backend(target.ctx),
          ok: workload.ok,
          serverPid: target.backend.child.pid,
          postmasterPid: target.postmaster,
        }).finally(() => (workload.writes ? resetWrites(target) : undefined)),
    });
    const peerRunner = (side: Side, server: { child: ChildProcess; port: number }, pick: (w: Workload) => ((ctx: Ctx) => ConnectionFactory) | undefined): Runner => ({
      side,
      run: (workload, seconds) => {
        const factory = pick(workload);
        if (!factory) return undefined;
        return measureHttp({
          port: server.port,
          connections: CONNECTIONS,
          seconds,
          connection: factory(ours.ctx),
          ok: workload.ok,
          serverPid: server.child.pid,
          postmasterPid: ours.postmaster,
        }).finally(() => (workload.writes ? resetWrites(ours) : undefined));
      },
    });
    const runners: Runner[] = sides.map((side): Runner => {
      switch (side) {
        case "ours":
          return backendRunner("ours", ours);
        case "baseline":
          return backendRunner("baseline", base!);
        case "handwritten":
          return peerRunner("handwritten", handwritten!, (w) => w.handwritten);
        case "v4":
          return peerRunner("v4", v4Peer!, (w) => w.v4);
        case "pgbench":
          return {
            side,
            run: (workload, seconds) => {
              if (!workload.pgbench) return undefined;
              const { query, params, preamble } = workload.pgbench(ours.ctx);
              const script = pgbenchScript({ query, params, preamble, role: ours.ctx.userRole, userId: ours.ctx.member, sessionId: ours.ctx.session });
              return measurePgbench({
                bin: PGBENCH!,
                url: ours.urls.authenticator,
                script,
                clients: CONNECTIONS,
                threads: PGBENCH_THREADS,
                seconds,
                workDir: pgbenchWorkDir!,
                postmasterPid: ours.postmaster,
                track: (child) => scope.defer("stop pgbench", () => stopChild(child)),
              }).finally(() => (workload.writes ? resetWrites(ours) : undefined));
            },
          };
      }
    });

    const printed = new Set<string>();
    const reportFailure = (what: string, workload: Workload, side: Side, m: Measurement) => {
      const key = `${workload.key}/${side}`;
      if (m.failures === 0 || printed.has(key)) return;
      printed.add(key);
      progress(`${tag} ${what} ${workload.key} ${side}: ${m.failures} failed, e.g. ${m.firstFailure}`);
    };

    // Warm every side up (JIT, connections, plan caches) before anything counts.
    progress(`${tag} warming up: ${sides.join(", ")}`);
    for (const workload of SELECTED) {
      for (const runner of runners) {
        const m = await runner.run(workload, WARMUP_SECONDS);
        if (m) reportFailure("warm-up", workload, runner.side, m);
      }
    }

    const results = new Map<string, Map<Side, Measurement[]>>();
    for (let r = 0; r < plan.rounds; r++) {
      // Alternate the order each round, of the workloads and of the sides within each (A B C D,
      // then D C B A), so no side always runs on a warmer or more loaded machine.
      const workloads = r % 2 === 0 ? SELECTED : [...SELECTED].reverse();
      const order = r % 2 === 0 ? runners : [...runners].reverse();
      for (const workload of workloads) {
        for (const runner of order) {
          const m = await runner.run(workload, plan.seconds);
          if (!m) continue;
          let bySide = results.get(workload.key);
          if (!bySide) results.set(workload.key, (bySide = new Map()));
          bySide.set(runner.side, [...(bySide.get(runner.side) ?? []), m]);
          progress(
            `${tag} round ${r + 1}/${plan.rounds} ${workload.key} ${runner.side} ${Math.round(m.rps)} req/s, p50 ${m.p50.toFixed(1)} ms` + (m.failures ? `, ${m.failures} failed` : ""),
          );
          reportFailure(`round ${r + 1}`, workload, runner.side, m);
        }
      }
    }

    const workloads: WorkloadResult[] = SELECTED.filter((w) => results.has(w.key)).map((w) => {
      const sideResults: Partial<Record<Side, SideResult>> = {};
      for (const [side, rounds] of results.get(w.key)!) {
        const cpu = (field: "nodeCpuMs" | "pgCpuMs") => {
          const perRequest = rounds.flatMap((m) => (m[field] !== undefined && Number.isFinite(m[field]) && m.requests > 0 ? [m[field] / m.requests] : []));
          return perRequest.length > 0 ? round(median(perRequest), 2) : undefined;
        };
        const result: SideResult = {
          rps: Math.round(median(rounds.map((m) => m.rps))),
          rpsSpread: [Math.round(Math.min(...rounds.map((m) => m.rps))), Math.round(Math.max(...rounds.map((m) => m.rps)))],
          p50: round(median(rounds.map((m) => m.p50)), 1),
          p99: round(median(rounds.map((m) => m.p99)), 1),
          failures: rounds.reduce((sum, m) => sum + m.failures, 0),
        };
        const node = cpu("nodeCpuMs");
        const pgCpu = cpu("pgCpuMs");
        if (node !== undefined) result.nodeCpuMsPerRequest = node;
        if (pgCpu !== undefined) result.pgCpuMsPerRequest = pgCpu;
        sideResults[side] = result;
        if (side === "ours" && result.failures > 0) oursFailed = true;
      }
      return { key: w.key, name: w.name, sides: sideResults };
    });

    const run: SuiteSizeRun = {
      size: plan.size.name,
      loadedMs: ours.loadedMs,
      seconds: plan.seconds,
      rounds: plan.rounds,
      sides,
      tasksInProject: ours.tasksInProject,
      workloads,
    };

    if (plan.extras) {
      const { subscribers, changes } = plan.extras;
      run.realtime = {};
      for (const target of [ours, base]) {
        if (!target) continue;
        progress(`${tag} realtime fan-out ${target.label}: ${subscribers} subscribers, ${changes} changes…`);
        const { title } = (await target.root.query<{ title: string }>("select title from app_public.tasks where id = $1", [target.ctx.task])).rows[0]!;
        let n = 0;
        const result: RealtimeResult = { subscribers, changes };
        try {
          Object.assign(
            result,
            await measureFanOut({
              port: target.backend.port,
              token: target.ctx.token,
              projectId: target.ctx.project,
              subscribers,
              changes,
              // A plain UPDATE fires the notify trigger: one event on the project per change.
              makeChange: async () => {
                await target.root.query("update app_public.tasks set title = $1 where id = $2", [`${title} (change ${++n})`, target.ctx.task]);
              },
            }),
          );
          progress(`${tag} realtime ${target.label}: p50 ${result.p50} ms, p99 ${result.p99} ms, delivered ${result.delivered}/${result.expected}`);
        } catch (error) {
          result.error = error instanceof Error ? error.message : String(error);
          progress(`${tag} realtime ${target.label} failed: ${result.error}`);
          if (target.label === "ours") oursFailed = true;
        } finally {
          await target.root.query("update app_public.tasks set title = $1 where id = $2", [title, target.ctx.task]);
        }
        run.realtime[target.label] = result;
      }

      const { jobs, latencyJobs, latencyRatePerSecond } = plan.extras;
      const worker: WorkerResult = { jobs, concurrency: 4, latencyJobs, latencyRatePerSecond };
      progress(`${tag} worker: ${jobs} jobs, then ${latencyJobs} at ${latencyRatePerSecond}/s…`);
      try {
        const measured = await measureWorker({ connectionString: ours.urls.owner, jobs, concurrency: worker.concurrency, latencyJobs, latencyRatePerSecond });
        Object.assign(worker, { jobsPerSecond: measured.jobsPerSecond, latencyP50: measured.latencyP50, latencyP95: measured.latencyP95, latencyMax: measured.latencyMax });
        progress(`${tag} worker: ${worker.jobsPerSecond} jobs/s, latency p50 ${worker.latencyP50} ms`);
      } catch (error) {
        worker.error = error instanceof Error ? error.message : String(error);
        progress(`${tag} worker failed: ${worker.error}`);
        oursFailed = true;
      }
      run.worker = worker;
    }
    return run;
  } finally {
    progress(`${tag} stopping the servers and databases…`);
    await scope.close();
  }
}

// ---------------------------------------------------------------------------------------------

onInterrupt();
const runScope = new CleanupScope();
let exitCode = 0;
try {
  if (!PGBENCH) progress("pgbench not found (neither on PATH nor in /usr/lib/postgresql/*/bin): the pgbench side is skipped.");
  pgbenchWorkDir = mkdtempSync(path.join(os.tmpdir(), "oddscenes-bench-pgbench-"));
  runScope.defer("remove pgbench's logs", () => rmSync(pgbenchWorkDir!, { recursive: true, force: true }));
  let baseline: BaselineCheckout | undefined;
  if (BASELINE_REF) {
    progress(`baseline: checking out ${BASELINE_REF} in a temporary worktree…`);
    baseline = await checkoutBaseline(PROJECT_ROOT, BASELINE_REF);
    runScope.defer("remove the baseline worktree", baseline.remove);
    progress(`baseline: ${BASELINE_REF} is ${baseline.commit.slice(0, 12)}, at ${baseline.dir}`);
  }
  const date = new Date().toISOString();
  const runs: SuiteSizeRun[] = [];
  for (const plan of PLANS) runs.push(await benchSize(plan, baseline));

  const cpu = os.cpus();
  const report: SuiteReport = {
    machine: `${cpu.length} cores (${cpu[0]?.model.replace(/\s+/g, " ").trim() ?? "unknown CPU"}), ${Math.round(os.totalmem() / 2 ** 30)} GB, Node ${process.version}`,
    date,
    quick: QUICK,
    seconds: MAIN_PLAN.seconds,
    rounds: MAIN_PLAN.rounds,
    connections: CONNECTIONS,
    ...(BASELINE_REF ? { baseline: BASELINE_REF, baselineCommit: baseline!.commit } : {}),
    pgbench: PGBENCH ?? "not found: skipped",
    runs,
    wallClockSeconds: Math.round((Date.now() - startedAt) / 1000),
  };
  const markdown = renderMarkdown(report);
  if (FOCUSED) {
    console.log(markdown);
    progress(`done in ${report.wallClockSeconds} s (a focused run: bench/results/ is left as it was)`);
    if (values["cpu-prof"]) progress(`ours' CPU profile is in ${path.resolve(values["cpu-prof"])}`);
    process.exit(oursFailed ? 1 : 0);
  }
  const dir = path.join(PROJECT_ROOT, "bench", "results");
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, "latest.json"), JSON.stringify(report, null, 2) + "\n");
  writeFileSync(path.join(dir, "latest.md"), markdown + "\n");
  try {
    // The chart's libraries live in bench/node_modules, which only npm run bench installs, so the
    // root typecheck (and CI) never sees them: bench/tsconfig.json checks this module.
    const chart = (await import(CHART_MODULE)) as { renderChart: (report: BenchReport) => Promise<Buffer> };
    writeFileSync(path.join(dir, "latest.png"), await chart.renderChart(report));
  } catch (error) {
    progress(`the chart could not be rendered: ${error instanceof Error ? error.stack : String(error)}`);
  }
  console.log(markdown);
  progress(`done in ${report.wallClockSeconds} s; wrote bench/results/latest.{json,md,png}`);
  if (oursFailed) {
    progress("some of ours' requests failed (see above): exiting with status 1");
    exitCode = 1;
  }
} catch (error) {
  console.error(error);
  exitCode = 1;
} finally {
  await runScope.close();
}
// Pools and timers of the libraries measured may linger: the run is over.
process.exit(exitCode);
