import { readFile } from "node:fs/promises";
import path from "node:path";
import { parseCrontab } from "graphile-worker";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PROJECT_ROOT } from "../src/db/setup.ts";
import { runJobs } from "./helpers/jobs.ts";
import { createTestDatabase, type TestDatabase } from "./helpers/database.ts";

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
});

afterAll(async () => {
  await db?.drop();
});

describe("scheduled jobs", () => {
  it("the crontab parses and schedules cleanup hourly", async () => {
    const items = parseCrontab(await readFile(path.join(PROJECT_ROOT, "crontab"), "utf8"));
    expect(items.map((item) => item.task)).toEqual(["cleanup"]);
  });

  it("cleanup removes stale counters, ended sessions, spent tokens and old Stripe payloads, and keeps live ones", async () => {
    const { rows } = await db.root.query(
      "insert into app_public.users (email, name) values ('cleanup@example.com', 'Cleanup') returning id",
    );
    const userId = rows[0].id;
    await db.root.query(
      `insert into app_private.rate_limits (bucket, key, window_start, hits) values
         ('login_ip', 'old', now() - interval '2 days', 1), ('login_ip', 'fresh', now(), 1)`,
    );
    await db.root.query(
      `insert into app_private.sessions (user_id, expires_at, revoked_at) values
         ($1, now() - interval '8 days', null), ($1, now() + interval '1 day', now() - interval '8 days'),
         ($1, now() + interval '1 day', null)`,
      [userId],
    );
    await db.root.query(
      `insert into app_private.email_tokens (user_id, purpose, email, token_hash, expires_at, used_at) values
         ($1, 'verify_email', 'cleanup@example.com', 'old', now() - interval '8 days', null),
         ($1, 'reset_password', 'cleanup@example.com', 'live', now() + interval '1 hour', null)`,
      [userId],
    );

    await db.root.query(
      `insert into app_private.stripe_events (id, type, livemode, created, received_at, processed_at, payload) values
         ('evt_old', 'invoice.paid', false, now() - interval '91 days', now() - interval '91 days', now(), '{"secretish": true}'),
         ('evt_new', 'invoice.paid', false, now(), now(), now(), '{"kept": true}')`,
    );
    await db.root.query("select graphile_worker.add_job('cleanup', '{}')");
    await runJobs(db);

    const left = await db.root.query(
      `select (select array_agg(key order by key) from app_private.rate_limits) as counters,
              (select count(*)::int from app_private.sessions where user_id = $1) as sessions,
              (select array_agg(encode(token_hash, 'escape')) from app_private.email_tokens where user_id = $1) as tokens,
              (select count(*)::int from graphile_worker.jobs) as jobs`,
      [userId],
    );
    expect(left.rows[0]).toEqual({ counters: ["fresh"], sessions: 1, tokens: ["live"], jobs: 0 });
    // Stripe events keep their ids (so a redelivery is still recognised) but not old payloads.
    const events = await db.root.query("select id, payload from app_private.stripe_events order by id");
    expect(events.rows).toEqual([
      { id: "evt_new", payload: { kept: true } },
      { id: "evt_old", payload: null },
    ]);
  });
});
