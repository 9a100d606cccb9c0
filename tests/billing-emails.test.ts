import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildTestApp, type TestApp } from "./helpers/app.ts";
import { RELAXED_LIMITS, recipient, signUp } from "./helpers/auth.ts";
import { createTestDatabase, type TestDatabase } from "./helpers/database.ts";
import { runJobs } from "./helpers/jobs.ts";
import { startSmtpSink, type SmtpSink } from "./helpers/smtp.ts";
import { deliver, startFakeStripe, stripeEnv, stripeEvent, type FakeStripe } from "./helpers/stripe.ts";
import { gqlOk } from "./helpers/tenants.ts";

let db: TestDatabase;
let api: TestApp;
let stripe: FakeStripe;
let smtp: SmtpSink;

beforeAll(async () => {
  [db, stripe, smtp] = await Promise.all([createTestDatabase(), startFakeStripe(), startSmtpSink()]);
  Object.assign(process.env, stripeEnv(stripe), { SMTP_URL: smtp.url, PUBLIC_URL: "https://app.example.com" });
  api = await buildTestApp(db, { env: { ...RELAXED_LIMITS, ...stripeEnv(stripe) } });
});

afterAll(async () => {
  for (const key of Object.keys(stripeEnv(stripe))) delete process.env[key];
  delete process.env.PUBLIC_URL;
  await api?.close();
  await smtp?.close();
  await stripe?.close();
  await db?.drop();
});

/** A subscribed organization with two owners, an admin and a member. */
async function subscribed(options: { status?: string; trialEnd?: number | null } = {}) {
  const [owner, coOwner, admin, member] = await Promise.all([signUp(api, { name: "Owen" }), signUp(api, { name: "Cora" }), signUp(api), signUp(api)]);
  const org = await gqlOk(api, owner.accessToken, `mutation ($slug: String!) { createOrganization(input: { slug: $slug, name: "Billed Inc" }) { organization { rowId } } }`, {
    slug: `billed-${owner.id.slice(0, 12)}`,
  });
  const organizationId = org.createOrganization.organization.rowId as string;
  await db.root.query(
    "insert into app_public.organization_memberships (organization_id, user_id, role) values ($1, $2, 'owner'), ($1, $3, 'admin'), ($1, $4, 'member')",
    [organizationId, coOwner.id, admin.id, member.id],
  );
  const customer = `cus_${organizationId.replaceAll("-", "").slice(0, 14)}`;
  stripe.customers.set(customer, { id: customer, object: "customer" });
  const { price } = stripe.addPlan({ name: "Pro", amount: 2000 });
  const subscription = stripe.addSubscription({ customer, price, organizationId, status: options.status ?? "active", trialEnd: options.trialEnd ?? null });
  await deliver(api, stripeEvent("customer.subscription.created", subscription));
  await runJobs(db);
  return { owners: [owner.email, coOwner.email], others: [admin.email, member.email], organizationId, subscription };
}

const mailTo = (addresses: string[], subject: string) => smtp.messages.filter((m) => addresses.includes(recipient(m)) && m.subject === subject);

describe("billing emails", () => {
  it("a failed payment tells every owner once per attempt, pointing to the billing page", async () => {
    const { owners, others, organizationId, subscription } = await subscribed();
    const invoice = stripe.addInvoice(subscription, { status: "open", attempts: 1, amount: 2000, nextAttempt: Math.floor(Date.now() / 1000) + 3 * 86400 });
    const failed = stripeEvent("invoice.payment_failed", invoice);
    await deliver(api, failed);
    await runJobs(db);
    await deliver(api, failed); // Stripe redelivers
    await deliver(api, stripeEvent("invoice.updated", invoice)); // and says more about the same attempt
    await runJobs(db);

    const subject = "Payment failed for Billed Inc";
    for (const owner of owners) await smtp.waitFor((m) => recipient(m) === owner && m.subject === subject);
    const sent = mailTo(owners, subject);
    expect(sent).toHaveLength(2);
    expect(sent[0]!.text).toContain("We could not collect 20.00 USD for Billed Inc's subscription");
    expect(sent[0]!.text).toContain(`Pay or update payment details: https://app.example.com/billing?organization=${organizationId}`);
    // The invoice's page is a bearer link: it is shown on the billing page, never queued in an email job.
    expect(sent[0]!.text).not.toContain(invoice.hosted_invoice_url);
    expect(mailTo(others, subject)).toEqual([]);

    invoice.attempt_count = 2;
    await deliver(api, stripeEvent("invoice.payment_failed", invoice));
    await runJobs(db);
    await expect.poll(() => mailTo(owners, subject).length).toBe(4);

    const details = await db.root.query("select latest_invoice_status, payment_attempts, latest_invoice_amount_due from app_public.subscription_payment_details where organization_id = $1", [organizationId]);
    expect(details.rows).toEqual([{ latest_invoice_status: "open", payment_attempts: 2, latest_invoice_amount_due: "2000" }]);
  });

  it("amounts are written in each currency's own unit", async () => {
    const { rows } = await db.root.query(
      "select app_private.format_money(2000, 'usd') as usd, app_private.format_money(500, 'jpy') as jpy, app_private.format_money(12345, 'kwd') as kwd, app_private.format_money(5, 'eur') as eur",
    );
    expect(rows[0]).toEqual({ usd: "20.00 USD", jpy: "500 JPY", kwd: "12.345 KWD", eur: "0.05 EUR" });
  });

  it("a trial ending within three days is announced to owners once", async () => {
    const trialEnd = Math.floor(Date.now() / 1000) + 2 * 86400;
    const { owners, others, subscription } = await subscribed({ status: "trialing", trialEnd });
    await deliver(api, stripeEvent("customer.subscription.trial_will_end", subscription));
    await runJobs(db);
    await deliver(api, stripeEvent("customer.subscription.updated", subscription));
    await runJobs(db);
    const day = new Date(trialEnd * 1000).toISOString().slice(0, 10);
    const subject = `Your Pro trial for Billed Inc ends on ${day}`;
    await expect.poll(() => mailTo(owners, subject).length).toBe(2);
    await runJobs(db);
    expect(mailTo(owners, subject)).toHaveLength(2);
    expect(mailTo(others, subject)).toEqual([]);
  });

  it("a canceled subscription is announced once, and the organization falls back to the free plan", async () => {
    const { owners, organizationId, subscription } = await subscribed();
    subscription.status = "canceled";
    subscription.ended_at = Math.floor(Date.now() / 1000);
    const deleted = stripeEvent("customer.subscription.deleted", subscription);
    await deliver(api, deleted);
    await runJobs(db);
    await deliver(api, stripeEvent("customer.subscription.updated", subscription));
    await runJobs(db);
    const subject = "Billed Inc's Pro subscription has ended";
    await expect.poll(() => mailTo(owners, subject).length).toBe(2);
    expect(mailTo(owners, subject)[0]!.text).toContain("Your projects and tasks are all still there");
    const { rows } = await db.root.query("select ((app_private.effective_plan($1)).plan).name as plan", [organizationId]);
    expect(rows[0].plan).toBe("Free");
  });
});
