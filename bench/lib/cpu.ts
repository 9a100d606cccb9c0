// CPU time of the processes a benchmark side runs on, read from /proc (Linux only): a Node server
// process by its pid, and a PostgreSQL server as the sum over its postmaster's children (every
// backend, autovacuum and the background processes) plus what the postmaster has reaped from
// children that have exited (its cutime + cstime), so backends that come and go still count.
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import type pg from "pg";

let ticks: number | undefined;

/** Clock ticks per second (`getconf CLK_TCK`, 100 on Linux nearly always). */
export function clockTicksPerSecond(): number {
  if (ticks === undefined) {
    try {
      ticks = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
    } catch {
      ticks = 100;
    }
  }
  return ticks;
}

interface Stat {
  ppid: number;
  utime: number;
  stime: number;
  cutime: number;
  cstime: number;
}

/** /proc/<pid>/stat, or undefined when the process is gone (or this is not Linux). */
function readStat(pid: number): Stat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined;
  }
  // Field 2 (comm) is in parentheses and may hold spaces: count fields after the last ")".
  // After it: [0] state (field 3), [1] ppid (4), [11] utime (14), [12] stime (15), [13] cutime (16), [14] cstime (17).
  const rest = text.slice(text.lastIndexOf(")") + 2).split(" ");
  return { ppid: Number(rest[1]), utime: Number(rest[11]), stime: Number(rest[12]), cutime: Number(rest[13]), cstime: Number(rest[14]) };
}

const toMs = (clockTicks: number) => (clockTicks * 1000) / clockTicksPerSecond();

/** User + system CPU of one process so far, in ms (NaN when it cannot be read). */
export function processCpuMs(pid: number): number {
  const stat = readStat(pid);
  return stat ? toMs(stat.utime + stat.stime) : Number.NaN;
}

/** CPU of a PostgreSQL server so far, in ms: its postmaster's live children plus the reaped ones. */
export function postgresCpuMs(postmasterPid: number): number {
  const postmaster = readStat(postmasterPid);
  if (!postmaster) return Number.NaN;
  let total = postmaster.cutime + postmaster.cstime;
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = readStat(Number(entry));
    if (stat?.ppid === postmasterPid) total += stat.utime + stat.stime;
  }
  return toMs(total);
}

/** The postmaster of the server `pool` talks to: the parent of one of its backends. */
export async function postmasterPid(pool: pg.Pool): Promise<number> {
  const { rows } = await pool.query<{ pid: number }>("select pg_backend_pid() as pid");
  const stat = readStat(rows[0]!.pid);
  if (!stat) throw new Error("cannot read /proc/<pid>/stat of a PostgreSQL backend (is the database on this machine?)");
  return stat.ppid;
}

/** What a measured window cost per request, in ms; undefined when not measured. */
export function perRequest(cpuMs: number, requests: number): number | undefined {
  return Number.isFinite(cpuMs) && requests > 0 ? cpuMs / requests : undefined;
}
