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
    await db.root.query("select graphile_worker.add_job('send_email', $1::json)", [
      JSON.stringify({
        to: "ada@example.com",
        template: "verify_email",
        variables: { name: "Ada <Lovelace>", link: "http://localhost:3000/verify-email?token=abc123" },
      }),
    ]);
    await runJobs(db);

    const message = await smtp.waitFor((m) => m.subject === "Confirm your email address");
    expect(message.from?.text).toBe('"Oddscenes Test" <robot@oddscenes.test>');
    expect(message.to && !Array.isArray(message.to) ? message.to.text : "").toBe("ada@example.com");
    expect(message.text).toContain("Hi Ada <Lovelace>,");
    expect(message.text).toContain("http://localhost:3000/verify-email?token=abc123");
    expect(message.html).toContain("Hi Ada &lt;Lovelace&gt;,");
    expect(message.html).toContain('href="http://localhost:3000/verify-email?token=abc123"');

    const { rows } = await db.root.query("select count(*)::int as left from graphile_worker.jobs");
    expect(rows[0].left).toBe(0);
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
    const result = await mailer.send("grace@example.com", renderEmail("reset_password", { name: "Grace", link: "http://x.test/r?t=1" }));
    expect(result.file).toBeDefined();
    expect(readdirSync(mailDir)).toHaveLength(1);
    const eml = await simpleParser(readFileSync(result.file!));
    expect(eml.subject).toBe("Reset your password");
    expect(eml.to && !Array.isArray(eml.to) ? eml.to.text : "").toBe("grace@example.com");
    expect(eml.text).toContain("http://x.test/r?t=1");
    expect(eml.html).toContain('href="http://x.test/r?t=1"');
  });
});
