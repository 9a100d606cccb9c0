import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildTestApp, type TestApp } from "./helpers/app.ts";
import { RELAXED_LIMITS, signUp, type SignedUp } from "./helpers/auth.ts";
import { createTestDatabase, type TestDatabase } from "./helpers/database.ts";
import { runJobs } from "./helpers/jobs.ts";
import { deliver, startFakeStripe, stripeEnv, stripeEvent, type FakeStripe } from "./helpers/stripe.ts";
import { gqlError, gqlOk } from "./helpers/tenants.ts";

let db: TestDatabase;
let api: TestApp;
let stripe: FakeStripe;
let proPlanId: string;
let freePlanId: string;
let proPrice: Record<string, any>;

beforeAll(async () => {
  [db, stripe] = await Promise.all([createTestDatabase(), startFakeStripe()]);
  Object.assign(process.env, stripeEnv(stripe));
  process.env.PUBLIC_URL = "https://app.example.com";
  api = await buildTestApp(db, { env: { ...RELAXED_LIMITS, ...stripeEnv(stripe) } });
  ({ price: proPrice } = stripe.addPlan({ name: "Pro", amount: 2000, metadata: { max_projects: "25" } }));
  await deliver(api, stripeEvent("price.created", proPrice));
  await runJobs(db);
  const { rows } = await db.root.query<{ id: string; is_default: boolean }>("select id, is_default from app_public.plans where stripe_price_id = $1 or is_default", [proPrice.id]);
  proPlanId = rows.find((r) => !r.is_default)!.id;
  freePlanId = rows.find((r) => r.is_default)!.id;
});

afterAll(async () => {
  for (const key of Object.keys(stripeEnv(stripe))) delete process.env[key];
  delete process.env.PUBLIC_URL;
  await api?.close();
  await stripe?.close();
  await db?.drop();
});

const CHECKOUT = `mutation ($org: UUID!, $plan: UUID!) { createCheckoutSession(input: { organizationId: $org, planId: $plan }) { url } }`;
const PORTAL = `mutation ($org: UUID!) { createBillingPortalSession(input: { organizationId: $org }) { url } }`;

/** An organization with an owner, an admin, a member; and an outsider. */
async function organization() {
  const [owner, admin, member, outsider] = await Promise.all([signUp(api), signUp(api), signUp(api), signUp(api)]);
  const org = await gqlOk(api, owner.accessToken, `mutation ($slug: String!) { createOrganization(input: { slug: $slug, name: "Customer Co" }) { organization { rowId } } }`, {
    slug: `cust-${owner.id.slice(0, 12)}`,
  });
  const organizationId = org.createOrganization.organization.rowId as string;
  await db.root.query("insert into app_public.organization_memberships (organization_id, user_id, role) values ($1, $2, 'admin'), ($1, $3, 'member')", [
    organizationId,
    admin.id,
    member.id,
  ]);
  return { owner, admin, member, outsider, organizationId };
}

const requestsTo = (path: string) => stripe.requests.filter((r) => r.method === "POST" && r.path === path);

describe("createCheckoutSession", () => {
  it("gives owners and admins a Stripe Checkout page, creating the customer once", async () => {
    const { owner, admin, organizationId } = await organization();
    const customersBefore = requestsTo("/v1/customers").length;
    const first = await gqlOk(api, owner.accessToken, CHECKOUT, { org: organizationId, plan: proPlanId });
    expect(first.createCheckoutSession.url).toMatch(/^https:\/\/checkout\.stripe\.com\/c\/pay\/cs_test_/);
    const second = await gqlOk(api, admin.accessToken, CHECKOUT, { org: organizationId, plan: proPlanId });
    expect(second.createCheckoutSession.url).not.toBe(first.createCheckoutSession.url);

    const customers = requestsTo("/v1/customers").slice(customersBefore);
    expect(customers).toHaveLength(1);
    expect(customers[0]!.body).toMatchObject({ name: "Customer Co", email: owner.email, metadata: { organization_id: organizationId } });
    expect(customers[0]!.idempotencyKey).toBe(`customer:${organizationId}:first`);

    const sessions = requestsTo("/v1/checkout/sessions").slice(-2);
    for (const session of sessions) {
      expect(session.body).toMatchObject({
        mode: "subscription",
        customer: customers[0]!.body.id ?? expect.stringMatching(/^cus_/),
        line_items: [{ price: proPrice.id, quantity: "1" }],
        client_reference_id: organizationId,
        metadata: { organization_id: organizationId },
        subscription_data: { metadata: { organization_id: organizationId } },
        success_url: `https://app.example.com/billing?organization=${organizationId}&checkout=success&session_id={CHECKOUT_SESSION_ID}`,
        cancel_url: `https://app.example.com/billing?organization=${organizationId}&checkout=canceled`,
      });
      expect(session.idempotencyKey).toMatch(/^[0-9a-f-]{36}$/);
    }
    expect(sessions[0]!.idempotencyKey).not.toBe(sessions[1]!.idempotencyKey);
    expect(sessions[0]!.body.customer).toBe(sessions[1]!.body.customer);

    // One open checkout per organization: the second expired the first, so both cannot be paid.
    const firstSession = String(first.createCheckoutSession.url).split("/").at(-1)!;
    expect(requestsTo(`/v1/checkout/sessions/${firstSession}/expire`)).toHaveLength(1);
    expect(stripe.checkoutSessions.get(firstSession)!.status).toBe("expired");
    const secondSession = String(second.createCheckoutSession.url).split("/").at(-1)!;
    expect(stripe.checkoutSessions.get(secondSession)!.status).toBe("open");
  });

  it("replaces a customer Stripe no longer has instead of failing every checkout", async () => {
    const { owner, organizationId } = await organization();
    await gqlOk(api, owner.accessToken, CHECKOUT, { org: organizationId, plan: proPlanId });
    const held = async () =>
      (await db.root.query("select stripe_customer_id from app_private.stripe_customers where organization_id = $1", [organizationId])).rows[0]?.stripe_customer_id;
    const lost = await held();
    stripe.customers.delete(lost); // deleted in the dashboard

    const again = await gqlOk(api, owner.accessToken, CHECKOUT, { org: organizationId, plan: proPlanId });
    expect(again.createCheckoutSession.url).toMatch(/^https:\/\/checkout\.stripe\.com\/c\/pay\/cs_test_/);
    const replacement = await held();
    expect(replacement).not.toBe(lost);
    expect(stripe.customers.get(replacement)).toMatchObject({ metadata: { organization_id: organizationId } });
    expect(requestsTo("/v1/checkout/sessions").at(-1)!.body.customer).toBe(replacement);
  });

  it("waits for a just-completed checkout's subscription instead of starting a second one", async () => {
    const { owner, organizationId } = await organization();
    const first = await gqlOk(api, owner.accessToken, CHECKOUT, { org: organizationId, plan: proPlanId });
    const session = stripe.checkoutSessions.get(String(first.createCheckoutSession.url).split("/").at(-1)!)!;
    // The customer pays; Stripe's webhooks have not arrived yet.
    const subscription = stripe.addSubscription({ customer: session.customer, price: proPrice, organizationId });
    Object.assign(session, { status: "complete", subscription: subscription.id, url: null });
    const sessionsBefore = requestsTo("/v1/checkout/sessions").length;
    expect(await gqlError(api, owner.accessToken, CHECKOUT, { org: organizationId, plan: proPlanId })).toEqual({
      code: "already_subscribed",
      message: "The last checkout was completed a moment ago and its subscription is on its way; reload the billing page in a few seconds.",
    });
    expect(requestsTo("/v1/checkout/sessions").length).toBe(sessionsBefore);

    // Once it has arrived, the organization is subscribed; once that ends, it may check out again.
    await deliver(api, stripeEvent("customer.subscription.created", subscription));
    await runJobs(db);
    expect((await gqlError(api, owner.accessToken, CHECKOUT, { org: organizationId, plan: proPlanId })).code).toBe("already_subscribed");
    Object.assign(subscription, { status: "canceled", ended_at: Math.floor(Date.now() / 1000) });
    await deliver(api, stripeEvent("customer.subscription.deleted", subscription));
    await runJobs(db);
    const again = await gqlOk(api, owner.accessToken, CHECKOUT, { org: organizationId, plan: proPlanId });
    expect(again.createCheckoutSession.url).toMatch(/^https:\/\/checkout\.stripe\.com\/c\/pay\/cs_test_/);
  });

  it("does not start a second checkout when the first cannot be expired", async () => {
    const { owner, organizationId } = await organization();
    await gqlOk(api, owner.accessToken, CHECKOUT, { org: organizationId, plan: proPlanId });
    const sessionsBefore = requestsTo("/v1/checkout/sessions").length;
    stripe.failNext(500, { type: "api_error", message: "Internal server error at Stripe" }, 3);
    expect((await gqlError(api, owner.accessToken, CHECKOUT, { org: organizationId, plan: proPlanId })).code).toBe("billing_unavailable");
    expect(requestsTo("/v1/checkout/sessions").length).toBe(sessionsBefore);
  });

  it("a plan whose price Stripe lost is explained without Stripe's ids", async () => {
    const { owner, organizationId } = await organization();
    const { price } = stripe.addPlan({ name: "Vanishing", amount: 500 });
    await deliver(api, stripeEvent("price.created", price));
    await runJobs(db);
    const { rows } = await db.root.query("select id from app_public.plans where stripe_price_id = $1", [price.id]);
    stripe.prices.delete(price.id); // deleted in the dashboard, and the webhook is not here yet
    const refused = await gqlError(api, owner.accessToken, CHECKOUT, { org: organizationId, plan: rows[0].id });
    expect(refused).toEqual({ code: "stripe_error", message: "This plan is no longer sold; reload the plans and choose another." });
    expect(JSON.stringify(refused)).not.toContain(price.id);
  });

  it("members, outsiders and anonymous callers are refused as usual", async () => {
    const { member, outsider, organizationId } = await organization();
    const before = stripe.requests.length;
    expect((await gqlError(api, member.accessToken, CHECKOUT, { org: organizationId, plan: proPlanId })).code).toBe("forbidden");
    expect((await gqlError(api, outsider.accessToken, CHECKOUT, { org: organizationId, plan: proPlanId })).code).toBe("not_found");
    expect((await gqlError(api, undefined, CHECKOUT, { org: organizationId, plan: proPlanId })).code).toBe("unauthenticated");
    expect(stripe.requests.length).toBe(before);
  });

  it("explains why there is nothing to buy: the free plan, an unknown plan, an existing subscription", async () => {
    const { owner, organizationId } = await organization();
    expect(await gqlError(api, owner.accessToken, CHECKOUT, { org: organizationId, plan: freePlanId })).toEqual({
      code: "validation_failed",
      message: "The Free plan needs no checkout; every organization has it without paying.",
    });
    expect((await gqlError(api, owner.accessToken, CHECKOUT, { org: organizationId, plan: "00000000-0000-4000-8000-000000000000" })).code).toBe("not_found");

    await gqlOk(api, owner.accessToken, CHECKOUT, { org: organizationId, plan: proPlanId });
    const { rows } = await db.root.query("select stripe_customer_id from app_private.stripe_customers where organization_id = $1", [organizationId]);
    const subscription = stripe.addSubscription({ customer: rows[0].stripe_customer_id, price: proPrice, organizationId });
    await deliver(api, stripeEvent("customer.subscription.created", subscription));
    await runJobs(db);
    expect((await gqlError(api, owner.accessToken, CHECKOUT, { org: organizationId, plan: proPlanId })).code).toBe("already_subscribed");
  });

  it("Stripe being down or refusing our key is billing_unavailable, without Stripe's words", async () => {
    const { owner, organizationId } = await organization();
    const unavailable = { code: "billing_unavailable", message: "Billing is temporarily unavailable; try again in a few minutes." };
    stripe.failNext(500, { type: "api_error", message: "Internal server error at Stripe" }, 3); // the SDK retries twice
    expect(await gqlError(api, owner.accessToken, CHECKOUT, { org: organizationId, plan: proPlanId })).toEqual(unavailable);
    stripe.failNext(401, { type: "invalid_request_error", message: "Invalid API Key provided: sk_test_****kend" });
    const refused = await gqlError(api, owner.accessToken, CHECKOUT, { org: organizationId, plan: proPlanId });
    expect(refused).toEqual(unavailable);
    expect(JSON.stringify(refused)).not.toContain("sk_test");
  });

  it("turns Stripe's refusal into stripe_error with Stripe's message", async () => {
    const { owner, organizationId } = await organization();
    stripe.failNext(402, { type: "invalid_request_error", code: "account_invalid", message: "Your account cannot currently make live charges." });
    expect(await gqlError(api, owner.accessToken, CHECKOUT, { org: organizationId, plan: proPlanId })).toEqual({
      code: "stripe_error",
      message: "Stripe: Your account cannot currently make live charges.",
    });
  });
});

describe("createBillingPortalSession", () => {
  it("opens the portal for owners and admins of an organization with a billing account", async () => {
    const { owner, admin, member, organizationId } = await organization();
    expect(await gqlError(api, owner.accessToken, PORTAL, { org: organizationId })).toEqual({
      code: "no_billing_account",
      message: "This organization has no billing account yet; choose a plan first (createCheckoutSession).",
    });
    await gqlOk(api, owner.accessToken, CHECKOUT, { org: organizationId, plan: proPlanId });
    for (const who of [owner, admin] as SignedUp[]) {
      const portal = await gqlOk(api, who.accessToken, PORTAL, { org: organizationId });
      expect(portal.createBillingPortalSession.url).toMatch(/^https:\/\/billing\.stripe\.com\/p\/session\//);
    }
    expect(requestsTo("/v1/billing_portal/sessions").at(-1)!.body.return_url).toBe(`https://app.example.com/billing?organization=${organizationId}`);
    expect((await gqlError(api, member.accessToken, PORTAL, { org: organizationId })).code).toBe("forbidden");
  });

  it("says so when Stripe lost the organization's customer", async () => {
    const { owner, organizationId } = await organization();
    await gqlOk(api, owner.accessToken, CHECKOUT, { org: organizationId, plan: proPlanId });
    const { rows } = await db.root.query("select stripe_customer_id from app_private.stripe_customers where organization_id = $1", [organizationId]);
    stripe.customers.delete(rows[0].stripe_customer_id);
    const refused = await gqlError(api, owner.accessToken, PORTAL, { org: organizationId });
    expect(refused).toEqual({
      code: "no_billing_account",
      message: "This organization's billing account no longer exists in Stripe; choose a plan again (createCheckoutSession) to make a new one.",
    });
  });
});

describe("deleteOrganization", () => {
  it("is refused while Stripe would renew the subscription, and allowed once it is set to end", async () => {
    const { owner, organizationId } = await organization();
    await gqlOk(api, owner.accessToken, CHECKOUT, { org: organizationId, plan: proPlanId });
    const { rows } = await db.root.query("select stripe_customer_id from app_private.stripe_customers where organization_id = $1", [organizationId]);
    const periodEnd = Math.floor(Date.now() / 1000) + 10 * 86400;
    const subscription = stripe.addSubscription({ customer: rows[0].stripe_customer_id, price: proPrice, organizationId, periodEnd });
    await deliver(api, stripeEvent("customer.subscription.created", subscription));
    await runJobs(db);

    const DELETE = `mutation ($id: UUID!) { deleteOrganization(input: { organizationId: $id }) { __typename } }`;
    expect(await gqlError(api, owner.accessToken, DELETE, { id: organizationId })).toEqual({
      code: "subscription_active",
      message: `This organization's active subscription renews on ${new Date(periodEnd * 1000).toISOString().slice(0, 10)}; cancel it in the billing portal (createBillingPortalSession) first, then delete the organization.`,
    });
    subscription.cancel_at_period_end = true;
    await deliver(api, stripeEvent("customer.subscription.updated", subscription));
    await runJobs(db);
    await gqlOk(api, owner.accessToken, DELETE, { id: organizationId });
    expect((await db.root.query("select 1 from app_public.organizations where id = $1", [organizationId])).rowCount).toBe(0);
  });

  it("is allowed when the subscription is set to end on a date within its period (cancel_at)", async () => {
    const { owner, organizationId } = await organization();
    await gqlOk(api, owner.accessToken, CHECKOUT, { org: organizationId, plan: proPlanId });
    const { rows } = await db.root.query("select stripe_customer_id from app_private.stripe_customers where organization_id = $1", [organizationId]);
    const periodEnd = Math.floor(Date.now() / 1000) + 10 * 86400;
    const subscription = stripe.addSubscription({ customer: rows[0].stripe_customer_id, price: proPrice, organizationId, periodEnd });
    subscription.cancel_at = periodEnd - 86400;
    await deliver(api, stripeEvent("customer.subscription.created", subscription));
    await runJobs(db);
    await gqlOk(api, owner.accessToken, `mutation ($id: UUID!) { deleteOrganization(input: { organizationId: $id }) { __typename } }`, { id: organizationId });
    expect((await db.root.query("select 1 from app_public.organizations where id = $1", [organizationId])).rowCount).toBe(0);
  });
});

describe("without STRIPE_SECRET_KEY", () => {
  it("everything still works on the free plan, and the billing mutations answer billing_unavailable", async () => {
    const plain = await buildTestApp(db, { env: { ...RELAXED_LIMITS, STRIPE_SECRET_KEY: "", STRIPE_WEBHOOK_SECRET: "" } });
    try {
      const { owner, organizationId } = await organization();
      expect(await gqlError(plain, owner.accessToken, CHECKOUT, { org: organizationId, plan: proPlanId })).toEqual({
        code: "billing_unavailable",
        message: "Billing is not set up on this server.",
      });
      await db.root.query("insert into app_private.stripe_customers (organization_id, stripe_customer_id) values ($1, 'cus_offline')", [organizationId]);
      expect((await gqlError(plain, owner.accessToken, PORTAL, { org: organizationId })).code).toBe("billing_unavailable");
      const plans = await gqlOk(plain, undefined, "{ plans { nodes { name } } }");
      expect(plans.plans.nodes.map((p: { name: string }) => p.name)).toContain("Free");
    } finally {
      await plain.close();
    }
  });
});
