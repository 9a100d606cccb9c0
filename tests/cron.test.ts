import { spawn } from "node:child_process";
import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PROJECT_ROOT } from "../src/db/setup.ts";
import { buildTestApp, captureLogger, type TestApp } from "./helpers/app.ts";
import { createTestDatabase, rewriteHistory, type TestDatabase } from "./helpers/database.ts";
import { runJobs } from "./helpers/jobs.ts";

let db: TestDatabase;
let api: TestApp;

beforeAll(async () => {
  db = await createTestDatabase();
  api = await buildTestApp(db);
});

afterAll(async () => {
  await api?.close();
  await db?.drop();
});

/** Runs `npm run jobs -- …args` against the test database and returns what it printed. */
function jobsCli(...args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ["src/worker/jobs-cli.ts", ...args], {
      cwd: PROJECT_ROOT,
      env: { PATH: process.env.PATH, DATABASE_URL: db.urls.owner, AUTH_DATABASE_URL: db.urls.authenticator },
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk) => (stdout += chunk));
    child.stderr.on("data", (chunk) => (stderr += chunk));
    child.on("close", (status) => resolve({ status, stdout, stderr }));
  });
}

describe("cleanup", () => {
  it("removes what is past retention in bounded batches, keeps the rest, and logs how many of each", async () => {
    const NOW = "2026-06-01T12:00:00Z";
    const ago = (interval: string) => `'${NOW}'::timestamptz - interval '${interval}'`;
    // Unconfirmed accounts: abandoned (removed), a site admin, a member, one invited, one sent a
    // fresh link this week, and one too new (all kept).
    const { rows: users } = await db.root.query(
      `insert into app_public.users (email, name, email_verified_at, is_admin) values
         ('cleanup@example.com', 'Cleanup', now(), false), ('never-confirmed@example.com', 'Gone', null, false),
         ('operator@example.com', 'Admin', null, true), ('member-unconfirmed@example.com', 'Member', null, false),
         ('invitee@example.com', 'Invitee', null, false), ('relinked@example.com', 'Relinked', null, false),
         ('just-joined@example.com', 'Fresh', null, false)
       returning id, email`,
    );
    const id = (email: string) => users.find((u) => u.email === email)!.id;
    await rewriteHistory(db, `update app_public.users set created_at = case when email = 'just-joined@example.com' then ${ago("2 days")} else ${ago("8 days")} end`);
    const userId = id("cleanup@example.com");
    const { rows: org } = await db.root.query("insert into app_public.organizations (slug, name) values ('cleanup-co', 'Cleanup Co') returning id");
    await db.root.query("insert into app_public.organization_memberships (organization_id, user_id, role) values ($1, $2, 'owner'), ($1, $3, 'member')", [
      org[0].id,
      userId,
      id("member-unconfirmed@example.com"),
    ]);
    // Invitations: one expired long ago (removed), one expired lately (still answers "expired"), one pending.
    await db.root.query(
      `insert into app_public.organization_invitations (organization_id, email, expires_at) values
         ($1, 'long-gone@example.com', ${ago("31 days")}), ($1, 'late@example.com', ${ago("1 day")}), ($1, 'invitee@example.com', ${ago("-3 days")})`,
      [org[0].id],
    );
    await db.root.query(
      `insert into app_private.email_tokens (user_id, purpose, email, token_hash, expires_at, created_at)
       values ($1, 'verify_email', 'relinked@example.com', 'relink', ${ago("-1 day")}, ${ago("1 day")})`,
      [id("relinked@example.com")],
    );
    // Five stale counters with a batch size of two: three batches.
    await db.root.query(
      `insert into app_private.rate_limits (bucket, key, window_start, hits)
       select 'login_ip', 'old' || i, ${ago("2 days")}, 1 from generate_series(1, 5) i
       union all select 'login_ip', 'fresh', ${ago("1 hour")}, 1`,
    );
    const { rows: sessions } = await db.root.query(
      `insert into app_private.sessions (user_id, expires_at, revoked_at) values
         ($1, ${ago("8 days")}, null), ($1, ${ago("-1 day")}, ${ago("8 days")}), ($1, ${ago("-1 day")}, null) returning id`,
      [userId],
    );
    // A live session's refresh chain: two spent long ago, one spent lately, the live one.
    await db.root.query(
      `with a as (insert into app_private.refresh_tokens (session_id, token_hash, used_at) values ($1, 'a', ${ago("40 days")}) returning id),
            b as (insert into app_private.refresh_tokens (session_id, parent_id, token_hash, used_at) select $1, id, 'b', ${ago("35 days")} from a returning id),
            c as (insert into app_private.refresh_tokens (session_id, parent_id, token_hash, used_at) select $1, id, 'c', ${ago("2 days")} from b returning id)
       insert into app_private.refresh_tokens (session_id, parent_id, token_hash) select $1, id, 'live' from c`,
      [sessions[2].id],
    );
    await db.root.query(
      `insert into app_private.login_failures (email, client, failures, last_failed_at) values
         ('cleanup@example.com', '192.0.2.1', 3, ${ago("2 days")}), ('cleanup@example.com', '192.0.2.2', 1, ${ago("1 hour")})`,
    );
    await db.root.query(
      `insert into app_private.trusted_devices (user_id, token_hash, last_used_at) values ($1, 'stale', ${ago("91 days")}), ($1, 'used', ${ago("1 day")})`,
      [userId],
    );
    await db.root.query(
      `insert into app_private.email_tokens (user_id, purpose, email, token_hash, expires_at, used_at) values
         ($1, 'verify_email', 'cleanup@example.com', 'old', ${ago("8 days")}, null),
         ($1, 'reset_password', 'cleanup@example.com', 'live', ${ago("-1 hour")}, null)`,
      [userId],
    );
    await db.root.query(
      `insert into app_private.stripe_events (id, type, livemode, created, received_at, processed_at, payload) values
         ('evt_old', 'invoice.paid', false, ${ago("91 days")}, ${ago("91 days")}, now(), '{"secretish": true}'),
         ('evt_new', 'invoice.paid', false, ${ago("1 day")}, ${ago("1 day")}, now(), '{"kept": true}')`,
    );
    // Jobs that used up their attempts: one long ago (removed), one recently; and one long ago
    // that is still retrying (kept). All in the future so no worker here picks them up.
    await db.root.query(
      `with added as (select (graphile_worker.add_job('send_email', '{}', max_attempts := 1, run_at := now() + interval '1 day')).id
                      union all select (graphile_worker.add_job('send_email', '{}', max_attempts := 1, run_at := now() + interval '1 day')).id)
       select graphile_worker.permanently_fail_jobs(array(select id from added), 'SMTP said no')`,
    );
    await db.root.query("select graphile_worker.add_job('send_email', '{}', max_attempts := 5, run_at := now() + interval '1 day')");
    await db.root.query(
      `update graphile_worker._private_jobs set updated_at = ${ago("31 days")}, last_error = coalesce(last_error, 'still trying')
       where id in ((select min(id) from graphile_worker._private_jobs where last_error = 'SMTP said no'), (select max(id) from graphile_worker._private_jobs))`,
    );

    const log = captureLogger("info");
    await db.root.query("select graphile_worker.add_job('cleanup', $1::json)", [JSON.stringify({ _cron: { ts: NOW, backfilled: false }, batchSize: 2 })]);
    await runJobs(db, log.logger);

    const left = await db.root.query(
      `select (select array_agg(key order by key) from app_private.rate_limits) as counters,
              (select count(*)::int from app_private.sessions where user_id = $1) as sessions,
              (select array_agg(encode(token_hash, 'escape') order by created_at) from app_private.refresh_tokens) as refresh_tokens,
              (select array_agg(encode(token_hash, 'escape')) from app_private.email_tokens where user_id = $1) as tokens,
              (select array_agg(client order by client) from app_private.login_failures) as login_failures,
              (select array_agg(encode(token_hash, 'escape')) from app_private.trusted_devices) as devices,
              (select array_agg(email::text order by email) from app_public.organization_invitations) as invitations,
              (select array_agg(email::text order by email) from app_public.users where email like '%@example.com') as users,
              (select array_agg(last_error order by id) from graphile_worker.jobs) as jobs`,
      [userId],
    );
    expect(left.rows[0]).toEqual({
      counters: ["fresh"],
      sessions: 1,
      refresh_tokens: ["c", "live"],
      tokens: ["live"],
      login_failures: ["192.0.2.2"],
      devices: ["used"],
      invitations: ["invitee@example.com", "late@example.com"],
      users: [
        "cleanup@example.com",
        "invitee@example.com",
        "just-joined@example.com",
        "member-unconfirmed@example.com",
        "operator@example.com",
        "relinked@example.com",
      ],
      jobs: ["SMTP said no", "still trying"],
    });
    // Stripe events keep their ids (so a redelivery is still recognised) but not old payloads.
    const events = await db.root.query("select id, payload from app_private.stripe_events order by id");
    expect(events.rows).toEqual([
      { id: "evt_new", payload: { kept: true } },
      { id: "evt_old", payload: null },
    ]);
    expect(log.lines().map((line) => line.msg)).toContain(
      "removed 5 rate limits, 1 login failures, 2 sessions, 2 refresh tokens, 1 email tokens, 1 trusted devices, 1 invitations, 1 unverified users, 1 stripe event payloads, 0 usage report emails, 0 email deliveries, 0 pending uploads, 0 security events, 0 data exports, 1 failed jobs",
    );
  });
});

describe("npm run jobs", () => {
  it("lists queued, failed and scheduled jobs, retries a failed one, and /metrics counts them by task and state", async () => {
    await db.root.query("delete from graphile_worker._private_jobs");
    await db.root.query("select graphile_worker.add_job('send_email', '{}', run_at := now() + interval '1 hour', job_key := 'later')");
    const { rows } = await db.root.query(
      `select (graphile_worker.permanently_fail_jobs(array[(graphile_worker.add_job('usage_report', '{}', max_attempts := 1)).id],
         E'connection refused\\n    at stack frame')).id`,
    );
    const failed = String(rows[0].id);
    await db.root.query(
      "insert into graphile_worker._private_known_crontabs (identifier, known_since, last_execution) values ('daily_usage_report', now() - interval '2 days', '2026-11-20T00:15:00Z') on conflict do nothing",
    );

    const metrics = (await request(api.app).get("/metrics")).text;
    expect(metrics).toMatch(/worker_jobs\{task="send_email",state="queued"\} 1/);
    expect(metrics).toMatch(/worker_jobs\{task="usage_report",state="failed"\} 1/);
    expect(metrics).toMatch(/worker_jobs\{task="usage_report",state="queued"\} 0/); // every known task and state, zeros included

    const listed = await jobsCli();
    expect(listed.stderr).toBe("");
    expect(listed.status).toBe(0);
    expect(listed.stdout).toMatch(/^Queued: 1\n\s+ID\s+TASK\s+RUNS AT\s+ATTEMPTS\s+KEY/m);
    expect(listed.stdout).toMatch(/send_email\s+\d{4}-\d\d-\d\d \d\d:\d\dZ\s+0\/25\s+later/);
    expect(listed.stdout).toContain("Locked (running, or fetched by a worker to run next): none");
    expect(listed.stdout).toMatch(new RegExp(`^Failed: 1\\n[^]*${failed}\\s+usage_report\\s+1/1\\s+\\S+ \\S+\\s+connection refused$`, "m"));
    expect(listed.stdout).not.toContain("stack frame");
    expect(listed.stdout).toContain("npm run jobs -- retry --failed");
    expect(listed.stdout).toMatch(/daily_usage_report\s+15 0 \* \* \*\s+\d{4}-\d\d-\d\d 00:15Z\s+2026-11-20 00:15Z/);
    expect(listed.stdout).toMatch(/cleanup\s+17 \* \* \* \*\s+\d{4}-\d\d-\d\d \d\d:17Z\s+never/);

    const retried = await jobsCli("retry", failed, "999999");
    expect(retried.stdout).toContain(`Requeued 1 job(s) to run now with fresh attempts: ${failed} (usage_report)`);
    expect(retried.stderr).toContain("No such job: 999999");
    expect(retried.status).toBe(1);
    const { rows: job } = await db.root.query("select attempts, max_attempts from graphile_worker.jobs where id = $1", [failed]);
    expect(job).toEqual([{ attempts: 0, max_attempts: 1 }]);

    expect((await jobsCli("retry")).stderr).toContain("npm run jobs -- retry --failed");
    expect((await jobsCli("retry", "--failed", failed)).stderr).toContain("not both");
    expect((await jobsCli("retry", "--failed")).stdout).toBe("Nothing to requeue.\n");
  });
});
