import type { Task } from "graphile-worker";
import { z } from "zod";
import { deliverEmail, publicUrl } from "../src/email/deliver.ts";
import { isTemplateName, type TemplateName, type TemplateVariables } from "../src/email/templates.ts";

const Payload = z.object({
  to: z.email(),
  template: z.string().refine(isTemplateName, { message: "unknown email template" }),
  variables: z.record(z.string(), z.unknown()).default({}),
});

/**
 * send_email { to, template, variables }: renders a template from src/email/templates.ts and
 * delivers it. For emails without secrets (notices); links carrying a token are made by the
 * task that sends them (auth__send_email_token, organizations__send_invitation), never queued.
 */
const sendEmail: Task = async (rawPayload, helpers) => {
  const payload = Payload.parse(rawPayload);
  const template = payload.template as TemplateName;
  await deliverEmail(helpers, payload.to, template, absoluteLinks(payload.variables, publicUrl()) as TemplateVariables<typeof template>);
};

/** SQL knows paths, not PUBLIC_URL: a `…link`/`…Link` variable starting with "/" points there. */
function absoluteLinks(variables: Record<string, unknown>, base: string): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(variables).map(([key, value]) =>
      /link$/i.test(key) && typeof value === "string" && value.startsWith("/") ? [key, `${base}${value}`] : [key, value],
    ),
  );
}

export default sendEmail;
