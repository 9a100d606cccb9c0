import type { Task } from "graphile-worker";
import { z } from "zod";
import { deliverEmail } from "../src/email/deliver.ts";
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
  await deliverEmail(helpers, payload.to, template, payload.variables as TemplateVariables<typeof template>);
};

export default sendEmail;
