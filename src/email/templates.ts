/** An email ready to send: both a plain-text and an HTML body. */
export interface RenderedEmail {
  subject: string;
  text: string;
  html: string;
}

const ESCAPES: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
const escapeHtml = (value: string) => value.replace(/[&<>"']/g, (c) => ESCAPES[c]!);

/** A small table of figures, shown aligned in text and as a table in HTML. */
interface Figures {
  head: string[];
  rows: string[][];
}

function figuresText({ head, rows }: Figures): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("   ").trimEnd();
  return [line(head), ...rows.map(line)].join("\n");
}

function figuresHtml({ head, rows }: Figures): string {
  const cell = (tag: string, value: string, i: number) =>
    `<${tag} style="padding: 4px 12px; text-align: ${i === 0 ? "left" : "right"}; border-bottom: 1px solid #e4e7eb;">${escapeHtml(value)}</${tag}>`;
  return `<table style="border-collapse: collapse; margin: 12px 0;">
<tr>${head.map((h, i) => cell("th", h, i)).join("")}</tr>
${rows.map((r) => `<tr>${r.map((c, i) => cell("td", c, i)).join("")}</tr>`).join("\n")}
</table>`;
}

/** One layout for every message: a greeting, paragraphs, optional figures, an optional button, a footer. */
function layout(parts: {
  subject: string;
  greeting: string;
  paragraphs: string[];
  figures?: Figures;
  after?: string[];
  action?: { label: string; url: string };
}): RenderedEmail {
  const { subject, greeting, paragraphs, figures, after = [], action } = parts;
  const text = [
    greeting,
    "",
    ...paragraphs.flatMap((p) => [p, ""]),
    ...(figures ? [figuresText(figures), ""] : []),
    ...after.flatMap((p) => [p, ""]),
    ...(action ? [`${action.label}: ${action.url}`, ""] : []),
    "— Oddscenes",
  ].join("\n");
  const html = `<!doctype html>
<html><body style="font-family: system-ui, sans-serif; line-height: 1.5; color: #1f2933; max-width: 560px; margin: 0 auto; padding: 24px;">
<p>${escapeHtml(greeting)}</p>
${paragraphs.map((p) => `<p>${escapeHtml(p)}</p>`).join("\n")}
${figures ? figuresHtml(figures) : ""}
${after.map((p) => `<p>${escapeHtml(p)}</p>`).join("\n")}
${action ? `<p><a href="${escapeHtml(action.url)}" style="display: inline-block; padding: 10px 18px; background: #3b5bdb; color: #fff; border-radius: 6px; text-decoration: none;">${escapeHtml(action.label)}</a></p>\n<p style="font-size: 13px; color: #52606d;">Or paste this link into your browser: ${escapeHtml(action.url)}</p>` : ""}
<p style="font-size: 13px; color: #52606d;">— Oddscenes</p>
</body></html>
`;
  return { subject, text, html };
}

/** Every email the backend sends. A job names one and passes its variables. */
export const templates = {
  verify_email: (v: { name: string; link: string }) =>
    layout({
      subject: "Confirm your email address",
      greeting: `Hi ${v.name},`,
      paragraphs: ["Please confirm that this is your email address. The link works once and expires in 3 days."],
      action: { label: "Confirm email", url: v.link },
    }),
  reset_password: (v: { name: string; link: string }) =>
    layout({
      subject: "Reset your password",
      greeting: `Hi ${v.name},`,
      paragraphs: [
        "Someone (hopefully you) asked to reset the password of your account. The link works once and expires in 1 hour.",
        "If it was not you, ignore this email: your password stays as it is.",
      ],
      action: { label: "Choose a new password", url: v.link },
    }),
  change_email: (v: { name: string; link: string }) =>
    layout({
      subject: "Confirm your new email address",
      greeting: `Hi ${v.name},`,
      paragraphs: [
        "You asked to use this address for your account. Open the link to confirm it; your address changes then. The link works once and expires in 1 day.",
        "If it was not you, ignore this email: nothing changes.",
      ],
      action: { label: "Confirm new address", url: v.link },
    }),
  email_change_requested: (v: { name: string; newEmail: string }) =>
    layout({
      subject: "A change of your email address was requested",
      greeting: `Hi ${v.name},`,
      paragraphs: [
        `Someone signed in to your account asked to change its address to ${v.newEmail}. It changes only if the link sent there is opened.`,
        "If this was not you, change your password at once: your account is in someone else's hands.",
      ],
    }),
  email_change_attempted: (v: { name: string }) =>
    layout({
      subject: "Someone tried to use your email address",
      greeting: `Hi ${v.name},`,
      paragraphs: [
        "Someone tried to change another account's address to this one, which your account already uses. Nothing changed, and nothing needs doing.",
        "If it was you, sign in to this account instead, or choose another address for the other one.",
      ],
    }),
  data_export: (v: { name: string; link: string }) =>
    layout({
      subject: "Your data export is ready",
      greeting: `Hi ${v.name},`,
      paragraphs: [
        "The export you asked for is ready: everything you own or wrote here, as one JSON document. The link works for 24 hours.",
        "If you did not ask for it, change your password: someone else is signed in to your account.",
      ],
      action: { label: "Download your data", url: v.link },
    }),
  account_deleted: (v: { name: string }) =>
    layout({
      subject: "Your account has been deleted",
      greeting: `Hi ${v.name},`,
      paragraphs: [
        "As you asked, your account is closed: every session was signed out and your profile is being deleted. Organizations where you were the only member are deleted with it; elsewhere, your tasks and comments stay, shown as from a deleted user.",
        "If this was not you, reply to this email at once.",
      ],
    }),
  organization_invitation: (v: { inviterName: string; organizationName: string; role: string; link: string }) =>
    layout({
      subject: `${v.inviterName} invited you to ${v.organizationName}`,
      greeting: "Hello,",
      paragraphs: [
        `${v.inviterName} invited you to join ${v.organizationName} on Oddscenes as ${v.role === "admin" ? "an admin" : `a ${v.role}`}.`,
        "Sign in (or create an account) with this email address, then open the link. It works for 7 days.",
      ],
      action: { label: `Join ${v.organizationName}`, url: v.link },
    }),
  password_changed: (v: { name: string }) =>
    layout({
      subject: "Your password was changed",
      greeting: `Hi ${v.name},`,
      paragraphs: [
        "The password of your account was just changed and your other sessions were signed out.",
        "If this was not you, reset your password at once and contact support.",
      ],
    }),
  payment_failed: (v: { name: string; organizationName: string; amount: string; nextAttempt: string; billingLink: string }) =>
    layout({
      subject: `Payment failed for ${v.organizationName}`,
      greeting: `Hi ${v.name},`,
      paragraphs: [
        `We could not collect ${v.amount} for ${v.organizationName}'s subscription: the card was declined or the bank asked for confirmation.`,
        v.nextAttempt
          ? `We will try again on ${v.nextAttempt}. Pay the invoice (or confirm the payment) on the billing page before then to keep your plan.`
          : "Pay the invoice (or confirm the payment) on the billing page to keep your plan.",
        "The billing page also lets you use another card for future payments.",
      ],
      action: { label: "Pay or update payment details", url: v.billingLink },
    }),
  trial_ending: (v: { name: string; organizationName: string; planName: string; trialEnd: string; billingLink: string }) =>
    layout({
      subject: `Your ${v.planName} trial for ${v.organizationName} ends on ${v.trialEnd}`,
      greeting: `Hi ${v.name},`,
      paragraphs: [
        `${v.organizationName}'s ${v.planName} trial ends on ${v.trialEnd}.`,
        "Check the payment details now so the subscription continues without a gap, or cancel it if it is not for you.",
      ],
      action: { label: "Review billing", url: v.billingLink },
    }),
  subscription_canceled: (v: { name: string; organizationName: string; planName: string; endedAt: string; billingLink: string }) =>
    layout({
      subject: `${v.organizationName}'s ${v.planName} subscription has ended`,
      greeting: `Hi ${v.name},`,
      paragraphs: [
        `${v.organizationName}'s ${v.planName} subscription ended on ${v.endedAt}. Your projects and tasks are all still there; the free plan's limits apply to new ones.`,
        "You can subscribe again at any time.",
      ],
      action: { label: "Choose a plan", url: v.billingLink },
    }),
  renewal_reminder: (v: { name: string; organizationName: string; planName: string; amount: string; renewsOn: string; billingLink: string }) =>
    layout({
      subject: `Your ${v.planName} plan for ${v.organizationName} renews on ${v.renewsOn}`,
      greeting: `Hi ${v.name},`,
      paragraphs: [
        `${v.organizationName}'s ${v.planName} plan renews on ${v.renewsOn} for ${v.amount}.`,
        "Nothing to do if that is what you want. To change the plan, update the card or cancel before then, open the billing page.",
      ],
      action: { label: "Review billing", url: v.billingLink },
    }),
  daily_usage_report: (v: {
    name: string;
    organizationName: string;
    day: string;
    averageDays: number;
    metrics: { label: string; value: number; average: number | null }[];
    projects: number;
    members: number;
    tasks: number;
    /** Files stored, e.g. "12 MB" (absent from reports queued before storage existed). */
    storage?: string;
    reportLink: string;
    settingsLink: string;
  }) =>
    layout({
      subject: `${v.organizationName}: daily report for ${v.day}`,
      greeting: `Hi ${v.name},`,
      paragraphs: [
        `Here is what happened in ${v.organizationName} on ${v.day} (UTC), ` +
          (v.averageDays > 0 ? `next to the daily average of the ${v.averageDays} day(s) before.` : "the first day with a report to compare against."),
      ],
      figures: {
        head: ["", v.day, "7-day average"],
        rows: v.metrics.map((m) => [m.label, String(m.value), m.average === null ? "–" : m.average.toFixed(1)]),
      },
      after: [
        `At the end of the day: ${v.projects} project(s), ${v.tasks} task(s), ${v.members} member(s)${v.storage ? `, ${v.storage} of files` : ""}.`,
        `You receive this as an owner or admin. Turn it off in your notification settings: ${v.settingsLink}`,
      ],
      action: { label: "Open the report", url: v.reportLink },
    }),
} satisfies Record<string, (variables: never) => RenderedEmail>;

export type TemplateName = keyof typeof templates;
export type TemplateVariables<N extends TemplateName> = Parameters<(typeof templates)[N]>[0];

export function isTemplateName(name: string): name is TemplateName {
  return Object.hasOwn(templates, name);
}

export function renderEmail<N extends TemplateName>(name: N, variables: TemplateVariables<N>): RenderedEmail {
  return (templates[name] as (v: TemplateVariables<N>) => RenderedEmail)(variables);
}
