import type { JobHelpers } from "graphile-worker";
import { loadConfig, type Config } from "../config.ts";
import { createMailer, type Mailer } from "./mailer.ts";
import { renderEmail, type TemplateName, type TemplateVariables } from "./templates.ts";

// Tasks have no constructor to inject into: the settings and the mailer are built from the
// environment on the first job, so a task behaves the same in-process and under the worker CLI.
let settings: { config: Config; mailer: Mailer } | undefined;

function emailSettings() {
  if (!settings) {
    const config = loadConfig(process.env, process.cwd(), "worker");
    settings = { config, mailer: createMailer(config.email) };
  }
  return settings;
}

/** PUBLIC_URL, where the frontend serves the pages that emailed links open. */
export function publicUrl(): string {
  return emailSettings().config.publicUrl;
}

/** What identifies one job's email across its attempts: the job, and its revision (a replaced job is a new email). */
type EmailJob = Pick<JobHelpers, "logger" | "job" | "query">;
const deliveryKey = (helpers: EmailJob) => `${helpers.job.id}:${helpers.job.revision}`;

/**
 * Whether this job's email already went out on an earlier attempt (the process died after sending
 * but before the job was acknowledged). Tasks that make a token before sending ask first, so a
 * retry does not replace the token of the email that was already delivered.
 */
export async function alreadyDelivered(helpers: EmailJob): Promise<boolean> {
  const { rows } = await helpers.query("select 1 from app_private.email_deliveries where delivery_key = $1", [deliveryKey(helpers)]);
  return rows.length > 0;
}

/**
 * Renders a template and sends it, once per job: the delivery is recorded as soon as the message
 * is handed over (before the job is acknowledged), and a retry of a job whose email went out
 * sends nothing. The Message-ID is the job's own, the same on every attempt, so a duplicate sent
 * in the moment between handing over and recording collapses in mail clients. The log line names
 * the message and where it went, never its links: they may carry tokens. Without SMTP_URL the
 * message is an .eml file to open instead.
 */
export async function deliverEmail<N extends TemplateName>(
  helpers: EmailJob,
  to: string,
  template: N,
  variables: TemplateVariables<N>,
  options: { /** The email differs on each attempt (a fresh token): a retry must not look like a duplicate. */ perAttempt?: boolean } = {},
): Promise<void> {
  if (await alreadyDelivered(helpers)) {
    helpers.logger.info(`email of job ${helpers.job.id} already went out on an earlier attempt; not sending it again`);
    return;
  }
  const { config, mailer } = emailSettings();
  const attempt = options.perAttempt ? `.${helpers.job.attempts}` : "";
  const messageId = `<job-${helpers.job.id}.${helpers.job.revision}${attempt}@${mailDomain(config.email.from)}>`;
  const email = renderEmail(template, variables);
  const { delivered, file } = await mailer.send(to, email, messageId);
  await helpers.query("insert into app_private.email_deliveries (delivery_key, message_id) values ($1, $2) on conflict do nothing", [
    deliveryKey(helpers),
    messageId,
  ]);
  helpers.logger.info(file ? `email "${email.subject}" to ${to} written to ${file}` : `sent "${email.subject}" to ${to} (${delivered})`);
}

/** The domain of the sender's address, for Message-IDs. */
function mailDomain(from: string): string {
  return /@([^>\s]+)>?\s*$/.exec(from)?.[1] ?? "oddscenes.localhost";
}
