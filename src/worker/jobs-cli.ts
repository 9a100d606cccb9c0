// `npm run jobs`: what graphile-worker has to do, from its tables: queued, locked and failed jobs
// (with their last error) and the crontab's schedules with their next and last run.
// `npm run jobs -- retry <id>…` or `npm run jobs -- retry --failed` runs failed jobs again now,
// with fresh attempts.
import { readFile } from "node:fs/promises";
import path from "node:path";
import { parseArgs } from "node:util";
import { parseCrontab, type ParsedCronItem } from "graphile-worker";
import type pg from "pg";
import { runOwnerCommand } from "../db/owner-command.ts";
import { PROJECT_ROOT } from "../db/setup.ts";

interface JobRow {
  id: string;
  task_identifier: string;
  run_at: Date;
  attempts: number;
  max_attempts: number;
  key: string | null;
  last_error: string | null;
  locked_at: Date | null;
  locked_by: string | null;
  updated_at: Date;
}

const SHOWN = 20;
const time = (value: Date | null) => (value ? `${value.toISOString().slice(0, 16).replace("T", " ")}Z` : "never");
const firstLine = (text: string | null, max = 120) => {
  const line = (text ?? "").split("\n")[0]!.trim();
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
};

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => `  ${r.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd()}`).join("\n");
}

function section(title: string, jobs: JobRow[], total: number, columns: (job: JobRow) => string[], head: string[]): string {
  if (total === 0) return `${title}: none`;
  const shown = jobs.slice(0, SHOWN);
  const more = total > shown.length ? `\n  … and ${total - shown.length} more` : "";
  return `${title}: ${total}\n${table([head, ...shown.map(columns)])}${more}`;
}

/** The next minute at or after `from` (UTC) that the schedule matches, within a year. */
function nextRun(item: ParsedCronItem, from: Date): Date | null {
  const t = new Date(from);
  t.setUTCSeconds(0, 0);
  t.setUTCMinutes(t.getUTCMinutes() + 1);
  for (let i = 0; i < 366 * 24 * 60; i++, t.setUTCMinutes(t.getUTCMinutes() + 1)) {
    if (item.match({ min: t.getUTCMinutes(), hour: t.getUTCHours(), date: t.getUTCDate(), month: t.getUTCMonth() + 1, dow: t.getUTCDay() })) {
      return new Date(t);
    }
  }
  return null;
}

async function list(client: pg.Client): Promise<void> {
  const { rows: counts } = await client.query<{ state: string; n: number }>(
    `select case when locked_at is not null then 'locked' when attempts >= max_attempts then 'failed' else 'queued' end as state, count(*)::int as n
     from graphile_worker.jobs group by 1`,
  );
  const total = (state: string) => counts.find((c) => c.state === state)?.n ?? 0;
  const jobs = async (where: string, order: string) =>
    (await client.query<JobRow>(`select * from graphile_worker.jobs where ${where} order by ${order} limit ${SHOWN}`)).rows;

  const queued = await jobs("locked_at is null and attempts < max_attempts", "run_at, id");
  const locked = await jobs("locked_at is not null", "locked_at, id");
  const failed = await jobs("locked_at is null and attempts >= max_attempts", "updated_at desc, id");
  console.log(
    section("Queued", queued, total("queued"), (j) => [j.id, j.task_identifier, time(j.run_at), `${j.attempts}/${j.max_attempts}`, j.key ?? "", firstLine(j.last_error, 60)], [
      "ID",
      "TASK",
      "RUNS AT",
      "ATTEMPTS",
      "KEY",
      "LAST ERROR",
    ]),
  );
  console.log(
    section("Locked (running, or fetched by a worker to run next)", locked, total("locked"), (j) => [j.id, j.task_identifier, time(j.locked_at), j.locked_by ?? ""], [
      "ID",
      "TASK",
      "SINCE",
      "WORKER",
    ]),
  );
  console.log(
    section("Failed", failed, total("failed"), (j) => [j.id, j.task_identifier, `${j.attempts}/${j.max_attempts}`, time(j.updated_at), firstLine(j.last_error)], [
      "ID",
      "TASK",
      "ATTEMPTS",
      "LAST TRIED",
      "LAST ERROR",
    ]),
  );
  if (total("failed") > 0) console.log("  Run them again with: npm run jobs -- retry <id>…   or   npm run jobs -- retry --failed");

  const source = await readFile(path.join(PROJECT_ROOT, "crontab"), "utf8");
  const lines = source.split("\n").map((l) => l.trim()).filter((l) => l && !l.startsWith("#"));
  const items = parseCrontab(source);
  const { rows: known } = await client.query<{ identifier: string; last_execution: Date | null }>(
    "select identifier, last_execution from graphile_worker._private_known_crontabs",
  );
  const { rows: clock } = await client.query<{ now: Date }>("select now()");
  const now = clock[0]!.now;
  console.log(`Scheduled (crontab, UTC; now ${time(now)}):`);
  console.log(
    table([
      ["TASK", "SCHEDULE", "NEXT RUN", "LAST RUN"],
      ...items.map((item, i) => [
        item.task,
        lines[i]!.split(/\s+/).slice(0, 5).join(" "),
        time(nextRun(item, now)),
        time(known.find((k) => k.identifier === item.identifier)?.last_execution ?? null),
      ]),
    ]),
  );
}

async function retry(client: pg.Client, ids: string[], allFailed: boolean): Promise<number> {
  if (allFailed === (ids.length > 0)) {
    console.error("Name the jobs to retry (npm run jobs -- retry 12 13) or retry every failed one (npm run jobs -- retry --failed), not both.");
    return 1;
  }
  const bad = ids.filter((id) => !/^\d{1,18}$/.test(id));
  if (bad.length) {
    console.error(`Not a job id: ${bad.join(", ")} (ids are the numbers in the ID column of npm run jobs).`);
    return 1;
  }
  const { rows: targets } = await client.query<JobRow>(
    allFailed
      ? "select * from graphile_worker.jobs where locked_at is null and attempts >= max_attempts order by id"
      : "select * from graphile_worker.jobs where id = any($1::bigint[]) order by id",
    allFailed ? [] : [ids],
  );
  const missing = ids.filter((id) => !targets.some((t) => t.id === id));
  const locked = targets.filter((t) => t.locked_at);
  const ready = targets.filter((t) => !t.locked_at);
  const { rows: done } = await client.query<{ id: string }>(
    "select id from graphile_worker.reschedule_jobs($1::bigint[], run_at := now(), attempts := 0) order by id",
    [ready.map((t) => t.id)],
  );
  const requeued = ready.filter((t) => done.some((d) => d.id === t.id));
  console.log(
    requeued.length
      ? `Requeued ${requeued.length} job(s) to run now with fresh attempts: ${requeued.map((j) => `${j.id} (${j.task_identifier})`).join(", ")}`
      : "Nothing to requeue.",
  );
  if (locked.length) console.error(`Locked by a worker (running, or about to), left alone: ${locked.map((j) => j.id).join(", ")}`);
  if (missing.length) console.error(`No such job: ${missing.join(", ")} (it may have completed, or been removed).`);
  return locked.length || missing.length ? 1 : 0;
}

runOwnerCommand(async (client) => {
  const { positionals, values } = parseArgs({ allowPositionals: true, options: { failed: { type: "boolean", default: false } } });
  const [command, ...rest] = positionals;
  if (command === "retry") return retry(client, rest, values.failed);
  if (command || values.failed) {
    console.error(`Unknown command "${command}". Usage: npm run jobs   |   npm run jobs -- retry <id>… | --failed`);
    return 1;
  }
  await list(client);
  return 0;
});
