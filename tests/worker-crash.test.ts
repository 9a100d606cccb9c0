import { spawn, type ChildProcess } from "node:child_process";
import type { AddressInfo } from "node:net";
import pg from "pg";
import { SMTPServer } from "smtp-server";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PROJECT_ROOT } from "../src/db/setup.ts";
import { startWorker } from "../src/worker/runner.ts";
import { captureLogger } from "./helpers/app.ts";
import { recipient } from "./helpers/auth.ts";
import { createTestDatabase, type TestDatabase } from "./helpers/database.ts";
import { startSmtpSink, type SmtpSink } from "./helpers/smtp.ts";

let db: TestDatabase;
let smtp: SmtpSink;
/** A mail server that takes messages and never answers: the worker sending to it hangs mid-send. */
let stalling: SMTPServer;
let stallingUrl: string;
let child: ChildProcess | undefined;

beforeAll(async () => {
  [db, smtp] = await Promise.all([createTestDatabase(), startSmtpSink()]);
  stalling = new SMTPServer({
    authOptional: true,
    disabledCommands: ["STARTTLS"],
    logger: false,
    onData(stream) {
      stream.resume(); // read it all, answer never
    },
  });
  await new Promise<void>((resolve) => stalling.listen(0, "127.0.0.1", resolve));
  stallingUrl = `smtp://127.0.0.1:${(stalling.server.address() as AddressInfo).port}`;
  process.env.SMTP_URL = smtp.url;
});

afterAll(async () => {
  child?.kill("SIGKILL");
  delete process.env.SMTP_URL;
  await new Promise<void>((resolve) => stalling?.close(() => resolve()));
  await smtp?.close();
  await db?.drop();
});

describe("npm run worker stopped with SIGTERM", () => {
  it("finishes the job it is running, logs no error and exits 0", async () => {
    // A mail server that answers after a second, so the stop arrives mid-send.
    const slow = new SMTPServer({
      authOptional: true,
      disabledCommands: ["STARTTLS"],
      logger: false,
      onData(stream, _session, callback) {
        stream.resume();
        stream.on("end", () => setTimeout(() => callback(), 1000));
      },
    });
    await new Promise<void>((resolve) => slow.listen(0, "127.0.0.1", resolve));
    try {
      const { rows: job } = await db.root.query("select (graphile_worker.add_job('send_email', $1::json)).id", [
        JSON.stringify({ to: "graceful@example.com", template: "password_changed", variables: { name: "Graceful" } }),
      ]);
      const worker = spawn(process.execPath, ["src/worker/main.ts"], {
        cwd: PROJECT_ROOT,
        env: {
          PATH: process.env.PATH,
          DATABASE_URL: db.urls.owner,
          AUTH_DATABASE_URL: db.urls.authenticator,
          SMTP_URL: `smtp://127.0.0.1:${(slow.server.address() as AddressInfo).port}`,
          LOG_LEVEL: "info",
        },
      });
      let output = "";
      worker.stdout!.on("data", (chunk) => (output += chunk));
      worker.stderr!.on("data", (chunk) => (output += chunk));
      await expect
        .poll(async () => (await db.root.query("select 1 from graphile_worker.jobs where id = $1 and locked_at is not null", [job[0].id])).rowCount, { timeout: 20_000 })
        .toBe(1);
      worker.kill("SIGTERM");
      const code = await new Promise((resolve) => worker.once("exit", resolve));
      expect(code).toBe(0);
      const lines = output.split("\n").filter((line) => line.startsWith("{")).map((line) => JSON.parse(line) as { level: number; msg: string });
      expect(lines.filter((line) => line.level >= 50)).toEqual([]);
      expect(lines.map((line) => line.msg)).toContain("stopped");
      // The job finished before the worker left, and it left no heartbeat behind.
      expect((await db.root.query("select count(*)::int as n from graphile_worker.jobs where id = $1", [job[0].id])).rows).toEqual([{ n: 0 }]);
      expect((await db.root.query("select count(*)::int as n from app_private.worker_heartbeats")).rows).toEqual([{ n: 0 }]);
    } finally {
      await new Promise<void>((resolve) => slow.close(() => resolve()));
    }
  });
});

describe("a worker killed mid-send", () => {
  it("has its jobs run again by a live worker within seconds, not after graphile-worker's 4 hours", async () => {
    const { rows: job } = await db.root.query("select (graphile_worker.add_job('send_email', $1::json, max_attempts := 5)).id", [
      JSON.stringify({ to: "stranded@example.com", template: "password_changed", variables: { name: "Stranded" } }),
    ]);

    // `npm run worker` as its own process, sending to the mail server that never answers.
    child = spawn(process.execPath, ["src/worker/main.ts"], {
      cwd: PROJECT_ROOT,
      env: { PATH: process.env.PATH, DATABASE_URL: db.urls.owner, AUTH_DATABASE_URL: db.urls.authenticator, SMTP_URL: stallingUrl, LOG_LEVEL: "warn" },
      stdio: "ignore",
    });
    const locked = async () =>
      (await db.root.query("select locked_by from graphile_worker.jobs where id = $1 and locked_at is not null", [job[0].id])).rows[0]?.locked_by as string | undefined;
    await expect.poll(locked, { timeout: 20_000 }).toMatch(/^pool-/);
    const deadWorker = (await locked())!;
    const { rows: beats } = await db.root.query("select worker_id from app_private.worker_heartbeats");
    expect(beats.map((b) => b.worker_id)).toContain(deadWorker);

    child.kill("SIGKILL");
    await new Promise((resolve) => child!.once("exit", resolve));
    const killedAt = Date.now();

    // A live worker (beating fast, so the test need not wait 30 s) notices and takes the job over.
    const pool = new pg.Pool({ connectionString: db.urls.owner, max: 5 });
    // As npm run worker's pool has: a connection the server ends (the database dropped at the
    // end of the file) is logged there, and must not be an uncaught error here.
    pool.on("error", () => {});
    pool.on("connect", (client) => client.on("error", () => {}));
    const log = captureLogger("info");
    const worker = await startWorker({ pool, concurrency: 2, logger: log.logger, heartbeatMs: 300, deadAfterMs: 2000 });
    try {
      const message = await smtp.waitFor((m) => recipient(m) === "stranded@example.com", 20_000);
      expect(message.subject).toBe("Your password was changed");
      expect(Date.now() - killedAt).toBeLessThan(20_000);
      expect(log.lines().some((line) => line.level === 40 && String(line.msg).startsWith(`worker ${deadWorker} stopped beating; its 1 job(s) will run again`))).toBe(true);
      const { rows } = await db.root.query("select worker_id from app_private.worker_heartbeats");
      expect(rows.map((r) => r.worker_id)).not.toContain(deadWorker);
    } finally {
      await worker.stop();
      await pool.end();
    }
    // A worker that stops cleanly leaves no heartbeat behind to be mistaken for a dead one.
    expect((await db.root.query("select count(*)::int as n from app_private.worker_heartbeats")).rows).toEqual([{ n: 0 }]);
  });
});
