import { mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { simpleParser } from "mailparser";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMailer } from "../src/email/mailer.ts";
import { renderEmail } from "../src/email/templates.ts";
import { createTestDatabase, type TestDatabase } from "./helpers/database.ts";
import { runJobs } from "./helpers/jobs.ts";
import { startSmtpSink, type SmtpSink } from "./helpers/smtp.ts";

let db: TestDatabase;
let smtp: SmtpSink;

beforeAll(async () => {
  [db, smtp] = await Promise.all([createTestDatabase(), startSmtpSink()]);
  // The task reads its mail settings from the environment, as it does under the worker CLI.
  process.env.SMTP_URL = smtp.url;
  process.env.EMAIL_FROM = "Oddscenes Test <robot@oddscenes.test>";
});

afterAll(async () => {
  delete process.env.SMTP_URL;
  await smtp?.close();
  await db?.drop();
});

describe("send_email", () => {
  it("delivers a job enqueued from SQL to a real SMTP server, as text and HTML", async () => {
    const { rows: job } = await db.root.query("select (graphile_worker.add_job('send_email', $1::json)).id", [
      JSON.stringify({
        to: "ada@example.com",
        template: "verify_email",
        variables: { name: "Ada <Lovelace>", link: "http://localhost:3000/verify-email?token=abc123" },
      }),
    ]);
    await runJobs(db);

    const message = await smtp.waitFor((m) => m.subject === "Confirm your email address");
    // The job's own Message-ID, the same on every attempt, recorded before the job was acknowledged.
    expect(message.messageId).toBe(`<job-${job[0].id}.0@oddscenes.test>`);
    const { rows: delivered } = await db.root.query("select delivery_key, message_id from app_private.email_deliveries");
    expect(delivered).toEqual([{ delivery_key: `${job[0].id}:0`, message_id: `<job-${job[0].id}.0@oddscenes.test>` }]);
    expect(message.from?.text).toBe('"Oddscenes Test" <robot@oddscenes.test>');
    expect(message.to && !Array.isArray(message.to) ? message.to.text : "").toBe("ada@example.com");
    expect(message.text).toContain("Hi Ada <Lovelace>,");
    expect(message.text).toContain("http://localhost:3000/verify-email?token=abc123");
    expect(message.html).toContain("Hi Ada &lt;Lovelace&gt;,");
    expect(message.html).toContain('href="http://localhost:3000/verify-email?token=abc123"');

    const { rows } = await db.root.query("select count(*)::int as left from graphile_worker.jobs");
    expect(rows[0].left).toBe(0);
  });

  it("a job retried after its email went out (the worker died before acknowledging it) sends nothing", async () => {
    const before = smtp.messages.length;
    const { rows } = await db.root.query("select (graphile_worker.add_job('send_email', $1::json)).id", [
      JSON.stringify({ to: "grace@example.com", template: "password_changed", variables: { name: "Grace" } }),
    ]);
    // What the first attempt recorded right after handing the message over.
    await db.root.query("insert into app_private.email_deliveries (delivery_key, message_id) values ($1, $2)", [`${rows[0].id}:0`, `<job-${rows[0].id}.0@oddscenes.test>`]);
    await runJobs(db);
    expect(smtp.messages.length).toBe(before);
    const { rows: left } = await db.root.query("select count(*)::int as n from graphile_worker.jobs where id = $1", [rows[0].id]);
    expect(left).toEqual([{ n: 0 }]);
  });

  it("fails a job with an unknown template and keeps it for a retry", async () => {
    await db.root.query("select graphile_worker.add_job('send_email', $1::json)", [
      JSON.stringify({ to: "ada@example.com", template: "no_such_template" }),
    ]);
    await runJobs(db);
    const { rows } = await db.root.query(
      "select attempts, last_error from graphile_worker.jobs where task_identifier = 'send_email'",
    );
    expect(rows).toHaveLength(1);
    expect(rows[0].attempts).toBe(1);
    expect(rows[0].last_error).toContain("unknown email template");
  });
});

describe("development mailer", () => {
  it("writes each message as an .eml file when no SMTP_URL is set", async () => {
    const mailDir = path.join(mkdtempSync(path.join(tmpdir(), "oddscenes-mail-")), "mail");
    const mailer = createMailer({ smtpUrl: undefined, from: "Oddscenes <no-reply@oddscenes.test>", mailDir });
    const result = await mailer.send("grace@example.com", renderEmail("reset_password", { name: "Grace", link: "http://x.test/r?t=1" }), "<job-7.0@oddscenes.test>");
    expect(result.file).toBeDefined();
    expect(readdirSync(mailDir)).toHaveLength(1);
    const eml = await simpleParser(readFileSync(result.file!));
    expect(eml.subject).toBe("Reset your password");
    expect(eml.messageId).toBe("<job-7.0@oddscenes.test>");
    expect(eml.to && !Array.isArray(eml.to) ? eml.to.text : "").toBe("grace@example.com");
    expect(eml.text).toContain("http://x.test/r?t=1");
    expect(eml.html).toContain('href="http://x.test/r?t=1"');
  });
});
