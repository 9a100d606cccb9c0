import type { Task } from "graphile-worker";
import { z } from "zod";
import { loadConfig } from "../src/config.ts";
import { createMailer, type Mailer } from "../src/email/mailer.ts";
import { isTemplateName, renderEmail, type TemplateName, type TemplateVariables } from "../src/email/templates.ts";

const Payload = z.object({
  to: z.email(),
  template: z.string().refine(isTemplateName, { message: "unknown email template" }),
  variables: z.record(z.string(), z.unknown()).default({}),
});

// Built on the first job from the environment (SMTP_URL, EMAIL_FROM, DATA_DIR), so the task
// behaves the same in-process and under the worker CLI.
let mailer: Mailer | undefined;

/** SQL knows paths, not the public URL: a `link` starting with "/" is resolved against PUBLIC_URL. */
function withAbsoluteLink(variables: Record<string, unknown>, publicUrl: string): Record<string, unknown> {
  const link = variables.link;
  return typeof link === "string" && link.startsWith("/") ? { ...variables, link: `${publicUrl}${link}` } : variables;
}

/**
 * send_email { to, template, variables }: renders a template from src/email/templates.ts and
 * delivers it. Jobs are enqueued from SQL inside the transaction that causes them.
 */
const sendEmail: Task = async (rawPayload, helpers) => {
  const payload = Payload.parse(rawPayload);
  const config = loadConfig();
  mailer ??= createMailer(config.email);
  const template = payload.template as TemplateName;
  const variables = withAbsoluteLink(payload.variables, config.publicUrl);
  const email = renderEmail(template, variables as TemplateVariables<typeof template>);
  const { delivered, file } = await mailer.send(payload.to, email);
  if (file) {
    // No SMTP server in development: show the links so a developer can click through.
    const links = email.text.match(/https?:\/\/\S+/g) ?? [];
    helpers.logger.info(`email "${email.subject}" to ${payload.to} written to ${file}${links.length ? `; links: ${links.join(" ")}` : ""}`);
  } else {
    helpers.logger.info(`sent "${email.subject}" to ${payload.to} (${delivered})`);
  }
};

export default sendEmail;
