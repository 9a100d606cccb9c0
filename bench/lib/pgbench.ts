// pgbench as a benchmark side: the hand-written peer's SQL (./sql.ts) straight against the
// database, with the same per-request transaction (role and claims set locally, then the query),
// no HTTP and no Node in between: what the database itself can do for each workload.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, globSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { postgresCpuMs } from "./cpu.ts";
import type { Measurement } from "./http-load.ts";
import { percentile } from "./http-load.ts";
import { QUERIES } from "./sql.ts";

/** pgbench on PATH, else the newest /usr/lib/postgresql/<version>/bin/pgbench; undefined if neither. */
export function findPgbench(): string | undefined {
  for (const dir of (process.env.PATH ?? "").split(path.delimiter)) {
    if (dir && existsSync(path.join(dir, "pgbench"))) return path.join(dir, "pgbench");
  }
  const installed = globSync("/usr/lib/postgresql/*/bin/pgbench").sort((a, b) => versionOf(b) - versionOf(a));
  return installed[0];
}
const versionOf = (file: string) => Number(/postgresql\/(\d+)/.exec(file)?.[1] ?? 0);

/** A string as an SQL literal. */
export const sqlLiteral = (value: string): string => `'${value.replaceAll("'", "''")}'`;

/**
 * A pgbench script for one of QUERIES: a transaction as `role` with the member's claims (as the
 * peer and our server set them), then the query with its parameters inlined as literals. `params`
 * are SQL expressions (use `sqlLiteral()` for values); pgbench variables (`:client_id`, `:r` from
 * `\set r random(...)`) may appear in them.
 */
export function pgbenchScript(options: { query: string; params: string[]; role: string; userId: string; sessionId: string; preamble?: string[] }): string {
  const sql = QUERIES[options.query];
  if (!sql) throw new Error(`no query ${options.query} in bench/lib/sql.ts`);
  const inlined = sql.replace(/\$(\d+)/g, (_, n: string) => {
    const value = options.params[Number(n) - 1];
    if (value === undefined) throw new Error(`${options.query}: no value for $${n}`);
    return value;
  });
  return [
    ...(options.preamble ?? []),
    "begin;",
    `select set_config('role', ${sqlLiteral(options.role)}, true), set_config('jwt.claims.user_id', ${sqlLiteral(options.userId)}, true), ` +
      `set_config('jwt.claims.session_id', ${sqlLiteral(options.sessionId)}, true), set_config('statement_timeout', '8s', true);`,
    `${inlined};`,
    "commit;",
    "",
  ].join("\n");
}

/**
 * Runs `pgbench -n -M prepared -c <clients> -j <threads> -T <seconds>` with `script` against
 * `url`, and reads its per-transaction log (`-l`; third column: latency in µs) for p50/p99 and
 * its "tps =" line for req/s. The database's CPU covers the whole pgbench run (its connections
 * included). `track` is told of the child so an interrupted run can stop it.
 */
export async function measurePgbench(options: {
  bin: string;
  url: string;
  script: string;
  clients: number;
  threads: number;
  seconds: number;
  workDir: string;
  postmasterPid?: number;
  track?: (child: ChildProcess) => () => void;
}): Promise<Measurement> {
  const { bin, url, clients, threads, seconds, workDir } = options;
  const id = `pgb-${process.pid}-${Date.now()}`;
  const scriptFile = path.join(workDir, `${id}.sql`);
  writeFileSync(scriptFile, options.script);
  const prefix = path.join(workDir, id);
  const pgBefore = options.postmasterPid === undefined ? undefined : postgresCpuMs(options.postmasterPid);
  const child = spawn(
    bin,
    ["-n", "-M", "prepared", "-c", String(clients), "-j", String(threads), "-T", String(Math.max(1, Math.round(seconds))), "-l", "--log-prefix", prefix, "-f", scriptFile, url],
    { stdio: ["ignore", "pipe", "pipe"], env: { PATH: process.env.PATH, LANG: "C", LC_ALL: "C" } },
  );
  const untrack = options.track?.(child);
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (exitCode) => resolve(exitCode));
  }).finally(() => untrack?.());
  const pgCpuMs = pgBefore === undefined ? undefined : postgresCpuMs(options.postmasterPid!) - pgBefore;

  const latencies: number[] = [];
  let failed = 0;
  try {
    for (const file of readdirSync(workDir).filter((f) => f.startsWith(`${id}.`) && !f.endsWith(".sql"))) {
      for (const line of readFileSync(path.join(workDir, file), "utf8").split("\n")) {
        const column = line.split(" ")[2];
        if (column === undefined) continue;
        // "failed" (or "skipped") instead of a latency for a transaction that did not complete.
        if (/^\d+$/.test(column)) latencies.push(Number(column) / 1000);
        else failed += 1;
      }
    }
  } finally {
    rmSync(scriptFile, { force: true });
    for (const file of readdirSync(workDir).filter((f) => f.startsWith(`${id}.`))) rmSync(path.join(workDir, file), { force: true });
  }
  const tps = Number(/^tps = ([\d.]+)/m.exec(stdout)?.[1] ?? Number.NaN);
  const aborted = (stderr.match(/aborted/g) ?? []).length;
  const reported = Number(/number of failed transactions: (\d+)/.exec(stdout)?.[1] ?? 0);
  const failures = Math.max(failed, reported) + aborted + (code !== 0 && aborted === 0 && failed === 0 ? 1 : 0);
  const firstFailure = failures > 0 ? `pgbench exited ${code}: ${(stderr.trim() || stdout.trim()).split("\n").slice(0, 3).join(" | ").slice(0, 300)}` : undefined;
  latencies.sort((a, b) => a - b);
  return {
    rps: Number.isFinite(tps) ? tps : latencies.length / seconds,
    p50: percentile(latencies, 0.5),
    p99: percentile(latencies, 0.99),
    requests: latencies.length,
    failures,
    firstFailure,
    pgCpuMs,
  };
}
