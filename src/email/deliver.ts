import type { JobHelpers } from "graphile-worker";
import { loadConfig, type Config } from "../config.ts";
import { createMailer, type Mailer } from "./mailer.ts";
import { renderEmail, type TemplateName, type TemplateVariables } from "./templates.ts";

// Tasks have no constructor to inject into: the settings and the mailer are built from the
// environment on the first job, so a task behaves the same in-process and under the worker CLI.
let settings: { config: Config; mailer: Mailer } | undefined;

function emailSettings() {
  if (!settings) {
    const config = loadConfig();
    settings = { config, mailer: createMailer(config.email) };
  }
  return settings;
}

/** PUBLIC_URL, where the frontend serves the pages that emailed links open. */
export function publicUrl(): string {
  return emailSettings().config.publicUrl;
}

/**
 * Renders a template and sends it. The log line names the message and where it went, never its
 * links: they may carry tokens. Without SMTP_URL the message is an .eml file to open instead.
 */
export async function deliverEmail<N extends TemplateName>(
  helpers: Pick<JobHelpers, "logger">,
  to: string,
  template: N,
  variables: TemplateVariables<N>,
): Promise<void> {
  const email = renderEmail(template, variables);
  const { delivered, file } = await emailSettings().mailer.send(to, email);
  helpers.logger.info(file ? `email "${email.subject}" to ${to} written to ${file}` : `sent "${email.subject}" to ${to} (${delivered})`);
}
