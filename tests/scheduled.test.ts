import { readFile } from "node:fs/promises";
import path from "node:path";
import { Logger, parseCrontab, run, runOnce } from "graphile-worker";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PROJECT_ROOT } from "../src/db/setup.ts";
import { makeWorkerPreset } from "../src/worker/preset.ts";
import { workerLogger } from "../src/worker/runner.ts";
import { buildTestApp, captureLogger, type TestApp } from "./helpers/app.ts";
import { RELAXED_LIMITS, recipient, signUp, type SignedUp } from "./helpers/auth.ts";
import { createTestDatabase, rewriteHistory, type TestDatabase } from "./helpers/database.ts";
import { runJobs } from "./helpers/jobs.ts";
import { startSmtpSink, type SmtpSink } from "./helpers/smtp.ts";
import { gqlError, gqlOk } from "./helpers/tenants.ts";

let db: TestDatabase;
let api: TestApp;
let smtp: SmtpSink;

beforeAll(async () => {
  [db, smtp] = await Promise.all([createTestDatabase(), startSmtpSink()]);
  Object.assign(process.env, { SMTP_URL: smtp.url, PUBLIC_URL: "https://app.example.com" });
  api = await buildTestApp(db, { env: RELAXED_LIMITS });
});

afterAll(async () => {
  delete process.env.PUBLIC_URL;
  await api?.close();
  await smtp?.close();
  await db?.drop();
});

const quiet = new Logger(() => () => {});
/** The messages `who` received with `subject`, or any report or reminder when none is given (not the sign-up emails). */
const mailTo = (who: SignedUp, subject?: string) =>
  smtp.messages.filter((m) => recipient(m) === who.email && (subject ? m.subject === subject : /daily report|renews on|trial for/.test(m.subject ?? "")));
const backdate = (sql: string, params: unknown[]) => rewriteHistory(db, sql, params);
const queue = (task: string, payload: unknown) => db.root.query("select graphile_worker.add_job($1, $2::json)", [task, JSON.stringify(payload)]);

interface Team {
  owner: SignedUp;
  admin: SignedUp;
  quietAdmin: SignedUp;
  unconfirmedAdmin: SignedUp;
  member: SignedUp;
  organizationId: string;
}

const PREFERENCES = `mutation ($org: UUID!, $on: Boolean!) { updateMembershipPreferences(input: { organizationId: $org, emailDailyReport: $on }) {
  preferences { emailDailyReport membership { userId } } } }`;

/**
 * An organization that existed before `since`: an owner, three admins (one who turned the report
 * off, one who never confirmed their address) and a member.
 */
async function team(name: string, since = "2026-02-01T00:00:00Z"): Promise<Team> {
  const [owner, admin, quietAdmin, unconfirmedAdmin, member] = await Promise.all([
    signUp(api, { name: "Olive" }),
    signUp(api, { name: "Adam" }),
    signUp(api),
    signUp(api),
    signUp(api),
  ]);
  await db.root.query("update app_public.users set email_verified_at = now() where id = any($1)", [[owner.id, admin.id, quietAdmin.id, member.id]]);
  const org = await gqlOk(api, owner.accessToken, `mutation ($slug: String!, $name: String!) { createOrganization(input: { slug: $slug, name: $name }) { organization { rowId } } }`, {
    slug: `rep-${owner.id.slice(0, 12)}`,
    name,
  });
  const organizationId = org.createOrganization.organization.rowId as string;
  await db.root.query(
    "insert into app_public.organization_memberships (organization_id, user_id, role) values ($1, $2, 'admin'), ($1, $3, 'admin'), ($1, $4, 'admin'), ($1, $5, 'member')",
    [organizationId, admin.id, quietAdmin.id, unconfirmedAdmin.id, member.id],
  );
  await gqlOk(api, quietAdmin.accessToken, PREFERENCES, { org: organizationId, on: false });
  await backdate("update app_public.organizations set created_at = $2 where id = $1", [organizationId, since]);
  await backdate("update app_public.organization_memberships set created_at = $2 where organization_id = $1", [organizationId, since]);
  await backdate("update app_public.activity set created_at = $2 where organization_id = $1", [organizationId, since]);
  return { owner, admin, quietAdmin, unconfirmedAdmin, member, organizationId };
}

/** A day's work in the organization, through the API, then moved to `day` (UTC). */
async function work(t: Team, day: string) {
  const project = (
    await gqlOk(api, t.owner.accessToken, `mutation ($org: UUID!) { createProject(input: { project: { organizationId: $org, name: "Launch" } }) { project { rowId } } }`, {
      org: t.organizationId,
    })
  ).createProject.project.rowId;
  const task = async (title: string, dueAt?: string) =>
    (
      await gqlOk(api, t.member.accessToken, `mutation ($p: UUID!, $title: String!, $due: Datetime) { createTask(input: { task: { projectId: $p, title: $title, dueAt: $due } }) { task { rowId } } }`, {
        p: project,
        title,
        due: dueAt ?? null,
      })
    ).createTask.task.rowId as string;
  const done = await task("Write the copy");
  await task("Ship it", `${day}T12:00:00Z`); // overdue at the end of the day
  await task("Celebrate", "2026-12-31T12:00:00Z");
  await gqlOk(api, t.member.accessToken, `mutation ($id: UUID!) { updateTask(input: { rowId: $id, patch: { status: done } }) { task { status } } }`, { id: done });
  await gqlOk(api, t.owner.accessToken, `mutation ($id: UUID!) { createTaskComment(input: { taskComment: { taskId: $id, body: "Nice" } }) { taskComment { rowId } } }`, { id: done });
  const at = `${day}T10:00:00Z`;
  await backdate("update app_public.activity set created_at = $2 where organization_id = $1 and entity_type in ('project', 'task', 'comment') and created_at > now() - interval '1 hour'", [
    t.organizationId,
    at,
  ]);
  await backdate("update app_public.projects set created_at = $2 where organization_id = $1 and created_at > now() - interval '1 hour'", [t.organizationId, at]);
  await backdate("update app_public.tasks set created_at = $2, completed_at = case when completed_at is not null then $2::timestamptz + interval '1 hour' end where organization_id = $1 and created_at > now() - interval '1 hour'", [
    t.organizationId,
    at,
  ]);
}

const reportOf = async (organizationId: string, day: string) =>
  (
    await db.root.query(
      `select tasks_created, tasks_completed, tasks_overdue, comments, active_members, actions, projects, members, tasks
       from app_public.usage_reports where organization_id = $1 and day = $2`,
      [organizationId, day],
    )
  ).rows[0];

describe("the crontab", () => {
  it("schedules the daily report, the reminders, cleanup and the storage sweep, backfilling the daily jobs", async () => {
    const items = parseCrontab(await readFile(path.join(PROJECT_ROOT, "crontab"), "utf8"));
    expect(items.map((item) => [item.task, item.options.backfillPeriod, item.options.maxAttempts])).toEqual([
      ["daily_usage_report", 3 * 86_400_000, 3],
      ["subscription_renewal_reminders", 86_400_000, 3],
      ["cleanup", 0, 1],
      ["storage__sweep", 0, 3],
    ]);
    const at = (hour: number, min: number) => ({ min, hour, date: 2, month: 3, dow: 1 });
    expect(items[0]!.match(at(0, 15))).toBe(true);
    expect(items[0]!.match(at(1, 15))).toBe(false);
    expect(items[1]!.match(at(8, 0))).toBe(true);
  });
});

describe("daily_usage_report", () => {
  let busy: Team;
  let idle: Team;
  const DAY = "2026-03-01";

  beforeAll(async () => {
    [busy, idle] = await Promise.all([team("Busy Co"), team("Idle Co")]);
    await work(busy, DAY);
    // The week before: one task created a day.
    await db.root.query(
      `insert into app_public.usage_reports (organization_id, day, tasks_created, tasks_completed, tasks_overdue, comments, active_members, actions, projects, members, tasks)
       select $1, d::date, 1, 0, 0, 2, 1, 3, 0, 4, 0 from generate_series('2026-02-22'::date, '2026-02-28'::date, interval '1 day') d`,
      [busy.organizationId],
    );
  });

  it("reports the day that ended for every organization and emails owners and admins who want it", async () => {
    await queue("daily_usage_report", { _cron: { ts: "2026-03-02T00:15:00.000Z", backfilled: false } });
    await runJobs(db);

    expect(await reportOf(busy.organizationId, DAY)).toEqual({
      tasks_created: 3,
      tasks_completed: 1,
      tasks_overdue: 1,
      comments: 1,
      active_members: 2,
      actions: 6,
      projects: 1,
      members: 5,
      tasks: 3,
    });
    // A quiet organization gets its row, and no email.
    expect(await reportOf(idle.organizationId, DAY)).toMatchObject({ actions: 0, members: 5, tasks: 0 });

    const subject = `Busy Co: daily report for ${DAY}`;
    expect(mailTo(busy.owner, subject)).toHaveLength(1);
    expect(mailTo(busy.admin, subject)).toHaveLength(1);
    expect(mailTo(busy.quietAdmin)).toEqual([]);
    expect(mailTo(busy.unconfirmedAdmin)).toEqual([]); // nobody can sign a stranger's address up for daily mail
    expect(mailTo(busy.member)).toEqual([]);
    for (const who of [idle.owner, idle.admin]) expect(mailTo(who)).toEqual([]);

    const email = mailTo(busy.owner, subject)[0]!;
    expect(email.text).toContain("Here is what happened in Busy Co on 2026-03-01 (UTC), next to the daily average of the 7 day(s) before.");
    expect(email.text).toMatch(/Tasks created\s+3\s+1\.0/);
    expect(email.text).toMatch(/Comments\s+1\s+2\.0/);
    expect(email.text).toContain("At the end of the day: 1 project(s), 3 task(s), 5 member(s), 0 bytes of files.");
    expect(email.text).toContain(`https://app.example.com/organizations/${busy.organizationId}/settings/notifications`);
    expect(email.html).toMatch(/<td[^>]*>Tasks created<\/td><td[^>]*>3<\/td><td[^>]*>1\.0<\/td>/);
  });

  it("run again, and from two workers at once, adds no row and no email, and a stored report stands", async () => {
    const before = smtp.messages.length;
    const stored = await reportOf(busy.organizationId, DAY);
    // Later changes to the tables do not rewrite a day already reported.
    await db.root.query("delete from app_public.tasks where organization_id = $1 and title = 'Celebrate'", [busy.organizationId]);
    await queue("daily_usage_report", { _cron: { ts: "2026-03-02T00:15:00.000Z", backfilled: false } });
    await runJobs(db);
    expect(await reportOf(busy.organizationId, DAY)).toEqual(stored);
    expect(smtp.messages.length).toBe(before);

    // A new day's run queued twice (two processes' crons, or an operator) and worked by two workers at once.
    await work(busy, "2026-03-04");
    await queue("daily_usage_report", { _cron: { ts: "2026-03-05T00:15:00.000Z", backfilled: false } });
    await queue("daily_usage_report", { now: "2026-03-05T00:15:00.000Z" });
    const worker = () => runOnce({ pgPool: db.root, preset: makeWorkerPreset({ concurrency: 2 }), noHandleSignals: true, logger: quiet });
    await Promise.all([worker(), worker()]);
    await runJobs(db);
    const subject = "Busy Co: daily report for 2026-03-04";
    for (const who of [busy.owner, busy.admin]) expect(mailTo(who, subject)).toHaveLength(1);
    const { rows } = await db.root.query("select count(*)::int as n from app_public.usage_reports where organization_id = $1 and day = '2026-03-04'", [
      busy.organizationId,
    ]);
    expect(rows).toEqual([{ n: 1 }]);
    // The day in between, which nobody reported, was filled in for the average.
    expect(await reportOf(busy.organizationId, "2026-03-03")).toMatchObject({ actions: 0 });
    const email = mailTo(busy.owner, subject)[0]!;
    expect(email.text).toMatch(/Tasks created\s+3\s+1\.0/); // (1 × 4 days + 3 + 0 + 0) / 7
  });

  it("members read their organization's reports in GraphQL, by date range and in order; others read none", async () => {
    const query = `query ($org: UUID!) { organization(rowId: $org) {
      usageReports(orderBy: DAY_ASC, filter: { day: { greaterThanOrEqualTo: "2026-02-27", lessThanOrEqualTo: "2026-03-01" } }) {
        totalCount nodes { day tasksCreated tasksCompleted activeMembers } } } }`;
    const seen = await gqlOk(api, busy.member.accessToken, query, { org: busy.organizationId });
    expect(seen.organization.usageReports).toEqual({
      totalCount: 3,
      nodes: [
        { day: "2026-02-27", tasksCreated: 1, tasksCompleted: 0, activeMembers: 1 },
        { day: "2026-02-28", tasksCreated: 1, tasksCompleted: 0, activeMembers: 1 },
        { day: "2026-03-01", tasksCreated: 3, tasksCompleted: 1, activeMembers: 2 },
      ],
    });
    const all = `{ usageReports { nodes { organizationId day } } }`;
    const theirs = await gqlOk(api, idle.owner.accessToken, all);
    expect(theirs.usageReports.nodes.every((r: { organizationId: string }) => r.organizationId === idle.organizationId)).toBe(true);
    expect((await gqlOk(api, undefined, all)).usageReports.nodes).toEqual([]);
    expect((await gqlOk(api, idle.owner.accessToken, query, { org: busy.organizationId })).organization).toBeNull();
  });

  it("each member changes their own preference, and only theirs", async () => {
    const SET = PREFERENCES;
    const changed = await gqlOk(api, busy.admin.accessToken, SET, { org: busy.organizationId, on: false });
    expect(changed.updateMembershipPreferences.preferences).toEqual({ emailDailyReport: false, membership: { userId: busy.admin.id } });
    // Each member reads their own preferences, and nobody else's.
    const MINE = `query ($org: UUID!) { organization(rowId: $org) { organizationMemberships { nodes { userId preferences { emailDailyReport } } } } }`;
    const seen = (await gqlOk(api, busy.owner.accessToken, MINE, { org: busy.organizationId })).organization.organizationMemberships.nodes as Array<{
      userId: string;
      preferences: { emailDailyReport: boolean } | null;
    }>;
    expect(seen.find((m) => m.userId === busy.owner.id)!.preferences).toEqual({ emailDailyReport: true });
    expect(seen.filter((m) => m.userId !== busy.owner.id).map((m) => m.preferences)).toEqual([null, null, null, null]);
    expect(await gqlError(api, idle.owner.accessToken, SET, { org: busy.organizationId, on: false })).toEqual({ code: "not_found", message: "Organization not found." });
    expect((await gqlError(api, undefined, SET, { org: busy.organizationId, on: false })).code).toBe("forbidden");

    await work(busy, "2026-03-06");
    await queue("daily_usage_report", { day: "2026-03-06" });
    await runJobs(db);
    const subject = "Busy Co: daily report for 2026-03-06";
    expect(mailTo(busy.owner, subject)).toHaveLength(1);
    expect(mailTo(busy.admin, subject)).toEqual([]);
    await gqlOk(api, busy.admin.accessToken, SET, { org: busy.organizationId, on: true });
  });

  it("a worker that was down catches up on the days it missed (crontab ?fill)", async () => {
    const late = await team("Late Co", new Date(Date.now() - 10 * 86_400_000).toISOString());
    // The last run graphile-worker knows of was three days ago: the runs of the two days since are missed.
    await db.root.query(
      `insert into graphile_worker._private_known_crontabs (identifier, known_since, last_execution)
       values ('daily_usage_report', now() - interval '30 days', date_trunc('day', now()) - interval '3 days' + interval '15 minutes')
       on conflict (identifier) do update set last_execution = excluded.last_execution`,
    );
    // Each 00:15 run since the last known one reports the day before it; worked out at each look,
    // so a test running across 00:15 UTC expects today's run once it is due.
    const expected = () => {
      const days: string[] = [];
      for (let ago = 2; ago >= 0; ago--) {
        const run = new Date(Date.now() - ago * 86_400_000);
        run.setUTCHours(0, 15, 0, 0);
        if (run.getTime() <= Date.now()) days.push(new Date(run.getTime() - 86_400_000).toISOString().slice(0, 10));
      }
      return days;
    };
    // What the runs said they queued (the report job itself also fills in earlier missing days,
    // so the rows alone would not show which runs happened).
    const log = captureLogger("info");
    const queuedDays = () =>
      log
        .lines()
        .map((line) => /^queued the (\d{4}-\d\d-\d\d) usage report/.exec(String(line.msg))?.[1])
        .filter((day): day is string => day !== undefined)
        .sort();
    const runner = await run({ pgPool: db.root, preset: makeWorkerPreset({ concurrency: 2 }), noHandleSignals: true, logger: workerLogger(log.logger) });
    try {
      await expect.poll(() => queuedDays().join() === expected().join(), { timeout: 15_000 }).toBe(true);
      const reported = async () =>
        (await db.root.query("select day::text from app_public.usage_reports where organization_id = $1", [late.organizationId])).rows.map((r) => r.day);
      await expect.poll(reported, { timeout: 10_000 }).toEqual(expect.arrayContaining(expected()));
      expect(log.lines().some((line) => String(line.msg).includes("(catching up on a run missed while no worker ran)"))).toBe(true);
    } finally {
      await runner.stop();
    }
  });
});

describe("subscription_renewal_reminders", () => {
  it("reminds owners 7 days before a renewal and 3 days before a trial ends, once per period", async () => {
    const t = await team("Renewing Co");
    const NOW = "2026-03-10T08:00:00Z";
    const { rows: plan } = await db.root.query(
      "insert into app_public.plans (stripe_product_id, stripe_price_id, name, amount, currency, interval) values ('prod_renew', 'price_renew', 'Pro', 2900, 'eur', 'month') returning id",
    );
    const others = await Promise.all([team("Later Co"), team("Ending Co"), team("Trial Co"), team("Told Co"), team("Cancel-at Co")]);
    // One current subscription per organization, so each case has an organization of its own.
    const subscribe = (org: string, id: string, fields: string) =>
      db.root.query(
        `insert into app_public.subscriptions (organization_id, stripe_subscription_id, plan_id, status, current_period_end, cancel_at_period_end, trial_end, last_synced_at)
         values ($1, $2, $3, ${fields}, now())`,
        [org, id, plan[0].id],
      );
    await subscribe(t.organizationId, "sub_renews_soon", "'active', '2026-03-15T00:00:00Z', false, null");
    await subscribe(others[0]!.organizationId, "sub_renews_later", "'active', '2026-03-30T00:00:00Z', false, null");
    await subscribe(others[1]!.organizationId, "sub_ending", "'active', '2026-03-15T00:00:00Z', true, null");
    await subscribe(others[2]!.organizationId, "sub_trial", "'trialing', '2026-03-12T00:00:00Z', false, '2026-03-12T00:00:00Z'");
    await subscribe(others[3]!.organizationId, "sub_trial_told", "'trialing', '2026-03-12T00:00:00Z', false, '2026-03-12T00:00:00Z'");
    await subscribe(others[4]!.organizationId, "sub_cancel_at", "'active', '2026-03-15T00:00:00Z', false, null");
    await db.root.query("update app_public.subscriptions set cancel_at = '2026-03-14T00:00:00Z' where stripe_subscription_id = 'sub_cancel_at'");
    // Stripe's trial_will_end already caused this one's reminder.
    await db.root.query("insert into app_private.billing_notices (kind, key, organization_id) values ('trial_ending', $1, $2)", [
      `sub_trial_told:${Date.parse("2026-03-12T00:00:00Z") / 1000}`,
      others[3]!.organizationId,
    ]);

    // The same run twice, then the next days' runs, which see the same renewals in their window.
    for (const ts of [NOW, NOW, "2026-03-11T08:00:00Z", "2026-03-12T08:00:00Z"]) {
      await queue("subscription_renewal_reminders", { _cron: { ts, backfilled: false } });
      await runJobs(db);
    }
    const renewal = mailTo(t.owner, "Your Pro plan for Renewing Co renews on 2026-03-15");
    expect(renewal).toHaveLength(1);
    expect(renewal[0]!.text).toContain("Renewing Co's Pro plan renews on 2026-03-15 for 29.00 EUR.");
    expect(mailTo(t.admin)).toEqual([]); // owners only
    expect(mailTo(others[0]!.owner)).toEqual([]);
    expect(mailTo(others[1]!.owner)).toEqual([]);
    expect(mailTo(others[2]!.owner, "Your Pro trial for Trial Co ends on 2026-03-12")).toHaveLength(1);
    expect(mailTo(others[3]!.owner)).toEqual([]);
    expect(mailTo(others[4]!.owner)).toEqual([]); // set to end before it would renew
  });
});
