// The suite's report (what bench/chart.ts draws, plus what only the suite writes: realtime
// fan-out, the worker, per-size rounds and sides) and its markdown rendering.
export interface SideResult {
  rps: number;
  rpsSpread: [number, number];
  p50: number;
  p99: number;
  failures: number;
  nodeCpuMsPerRequest?: number;
  pgCpuMsPerRequest?: number;
}
export type Side = "ours" | "baseline" | "handwritten" | "v4" | "pgbench";
export interface WorkloadResult {
  /** "Q1", "Q2", "Q3", "Q4a", "Q4b", "M1", "login", "refresh" */
  key: string;
  name: string;
  sides: Partial<Record<Side, SideResult>>;
}
export interface SizeRun {
  /** "20k tasks" | "200k tasks" */
  size: string;
  loadedMs: number;
  workloads: WorkloadResult[];
}
export interface BenchReport {
  machine: string;
  date: string;
  quick: boolean;
  seconds: number;
  rounds: number;
  connections: number;
  /** git ref the "baseline" side was built from */
  baseline?: string;
  runs: SizeRun[];
}

/** Legend (and bar) order. */
export const SIDE_ORDER: readonly Side[] = ["ours", "baseline", "handwritten", "v4", "pgbench"];

export function sideLabel(side: Side, report: Pick<BenchReport, "baseline">): string {
  switch (side) {
    case "ours":
      return "ours (V5)";
    case "baseline":
      return `before (${report.baseline ?? "baseline"})`;
    case "handwritten":
      return "hand-written Express + pg";
    case "v4":
      return "PostGraphile V4";
    case "pgbench":
      return "pgbench (database limit)";
  }
}

export interface RealtimeResult {
  subscribers: number;
  changes: number;
  /** Time from the change until the last subscriber had its event, ms. */
  p50?: number;
  p99?: number;
  max?: number;
  delivered?: number;
  expected?: number;
  /** Set when the measurement could not be made. */
  error?: string;
}

export interface WorkerResult {
  jobs: number;
  concurrency: number;
  latencyJobs: number;
  latencyRatePerSecond: number;
  jobsPerSecond?: number;
  latencyP50?: number;
  latencyP95?: number;
  latencyMax?: number;
  error?: string;
}

export interface SuiteSizeRun extends SizeRun {
  /** Length of one counted round per side and workload, s. */
  seconds: number;
  rounds: number;
  /** The sides measured at this size, in their (first round's) order. */
  sides: Side[];
  /** Tasks in the project Q1 pages through. */
  tasksInProject: number;
  realtime?: Partial<Record<"ours" | "baseline", RealtimeResult>>;
  worker?: WorkerResult;
}

export interface SuiteReport extends BenchReport {
  runs: SuiteSizeRun[];
  /** The commit the baseline ref named. */
  baselineCommit?: string;
  /** The pgbench binary used, or why the side was skipped. */
  pgbench?: string;
  /** Wall-clock time of the whole run, s. */
  wallClockSeconds?: number;
}

const SIDE_NAME: Record<Side, string> = {
  ours: "ours",
  baseline: "baseline",
  handwritten: "hand-written",
  v4: "V4",
  pgbench: "pgbench",
};

const fmt = (value: number | undefined, digits = 0) => (value === undefined || !Number.isFinite(value) ? "–" : value.toFixed(digits));
const ratio = (ours: SideResult | undefined, other: SideResult | undefined) => (ours && other && other.rps > 0 ? (ours.rps / other.rps).toFixed(2) : "–");
const cpuPair = (ours: SideResult | undefined, other: SideResult | undefined, field: "nodeCpuMsPerRequest" | "pgCpuMsPerRequest") =>
  `${fmt(ours?.[field], 2)} / ${fmt(other?.[field], 2)}`;

function sizeSection(report: SuiteReport, run: SuiteSizeRun): string[] {
  const others = run.sides.filter((side) => side !== "ours");
  const label = (side: Side) => (side === "baseline" ? `baseline (${report.baseline})` : SIDE_NAME[side]);
  const lines = [
    `### ${run.size} (loaded in ${(run.loadedMs / 1000).toFixed(1)} s; ${run.rounds} rounds of ${run.seconds} s per side and workload; sides: ${run.sides.map(label).join(", ")})`,
    "",
  ];
  const head = ["workload", "ours req/s (spread)", "p50 ms", "p99 ms"];
  for (const side of others) head.push(`${SIDE_NAME[side]} req/s`, `ours / ${SIDE_NAME[side]}`);
  head.push("Node CPU ms/req ours / hand-written", "PG CPU ms/req ours / hand-written");
  lines.push(`| ${head.join(" | ")} |`, `|${head.map(() => "---").join("|")}|`);
  for (const w of run.workloads) {
    const ours = w.sides.ours;
    const cells = [w.name, ours ? `${ours.rps} (${ours.rpsSpread[0]}-${ours.rpsSpread[1]})` : "–", fmt(ours?.p50, 1), fmt(ours?.p99, 1)];
    for (const side of others) cells.push(w.sides[side] ? String(w.sides[side].rps) : "–", ratio(ours, w.sides[side]));
    cells.push(cpuPair(ours, w.sides.handwritten, "nodeCpuMsPerRequest"), cpuPair(ours, w.sides.handwritten, "pgCpuMsPerRequest"));
    lines.push(`| ${cells.join(" | ")} |`);
  }
  lines.push("");

  // CPU of every side (the table above compares ours with the hand-written peer only).
  if (others.some((side) => side !== "handwritten")) {
    const cpuHead = ["CPU ms/req (Node / PG)", ...run.sides.map(label)];
    lines.push(`| ${cpuHead.join(" | ")} |`, `|${cpuHead.map(() => "---").join("|")}|`);
    for (const w of run.workloads) {
      lines.push(
        `| ${w.key} | ${run.sides
          .map((side) => {
            const r = w.sides[side];
            return r ? `${fmt(r.nodeCpuMsPerRequest, 2)} / ${fmt(r.pgCpuMsPerRequest, 2)}` : "–";
          })
          .join(" | ")} |`,
      );
    }
    lines.push("");
  }

  const failed = run.workloads.flatMap((w) => run.sides.filter((side) => (w.sides[side]?.failures ?? 0) > 0).map((side) => `${w.key} ${SIDE_NAME[side]}: ${w.sides[side]!.failures}`));
  if (failed.length > 0) lines.push(`Failed requests: ${failed.join(", ")}.`, "");

  if (run.realtime) {
    const parts = (["ours", "baseline"] as const).flatMap((side) => {
      const r = run.realtime?.[side];
      if (!r) return [];
      return [
        r.error
          ? `${label(side)}: failed (${r.error})`
          : `${label(side)}: p50 ${fmt(r.p50, 1)} ms, p99 ${fmt(r.p99, 1)} ms, max ${fmt(r.max, 1)} ms, delivered ${r.delivered}/${r.expected}`,
      ];
    });
    const any = run.realtime.ours ?? run.realtime.baseline!;
    lines.push(`Realtime fan-out (taskChanged, ${any.subscribers} subscribers, ${any.changes} changes; time until the last subscriber has the event): ${parts.join("; ")}.`, "");
  }
  if (run.worker) {
    const r = run.worker;
    lines.push(
      r.error
        ? `Worker (graphile-worker, concurrency ${r.concurrency}): failed (${r.error}).`
        : `Worker (graphile-worker, concurrency ${r.concurrency}): ${r.jobs} jobs at ${r.jobsPerSecond} jobs/s; idle latency (${r.latencyJobs} jobs at ${r.latencyRatePerSecond}/s, add to start) p50 ${fmt(r.latencyP50, 1)} ms, p95 ${fmt(r.latencyP95, 1)} ms, max ${fmt(r.latencyMax, 1)} ms.`,
      "",
    );
  }
  return lines;
}

export function renderMarkdown(report: SuiteReport): string {
  const baseline = report.baseline ? `; baseline: ${report.baseline} (${report.baselineCommit?.slice(0, 12) ?? "?"})` : "";
  const runs = report.runs.map((run) => `${run.size}: ${run.rounds} rounds of ${run.seconds} s`).join(", ");
  return [
    `Benchmark: ${report.machine}; ${report.connections} connections; ${report.rounds} rounds of ${report.seconds} s per side and workload (${runs}), 1 s warm-up each; ${report.date}${report.quick ? "; quick run" : ""}${baseline}.`,
    "",
    "req/s: median of the rounds (spread: slowest-fastest round); p50/p99: medians of the rounds' percentiles; ours / X: req/s ratio; CPU: server process (Node) and all PostgreSQL processes (PG) over the measured window, per request, median of the rounds. pgbench runs the hand-written peer's SQL with no HTTP layer (its PG CPU includes opening its 32 connections).",
    "",
    ...report.runs.flatMap((run) => sizeSection(report, run)),
  ]
    .join("\n")
    .trimEnd();
}
