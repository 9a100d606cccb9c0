import { spawn } from "node:child_process";
import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PROJECT_ROOT } from "../src/db/setup.ts";
import { buildTestApp, captureLogger, type TestApp } from "./helpers/app.ts";
import { RELAXED_LIMITS, signUp } from "./helpers/auth.ts";
import { createTestDatabase, type TestDatabase } from "./helpers/database.ts";
import { runJobs } from "./helpers/jobs.ts";
import { deliver, signature, startFakeStripe, STRIPE_TEST, stripeEnv, stripeEvent, type FakeStripe } from "./helpers/stripe.ts";
import { gqlError, gqlOk } from "./helpers/tenants.ts";

let db: TestDatabase;
let api: TestApp;
let stripe: FakeStripe;

beforeAll(async () => {
  [db, stripe] = await Promise.all([createTestDatabase(), startFakeStripe()]);
  // The worker reads its Stripe settings from its environment, as in production.
  Object.assign(process.env, stripeEnv(stripe));
  api = await buildTestApp(db, { env: { ...RELAXED_LIMITS, ...stripeEnv(stripe) } });
});

afterAll(async () => {
  for (const key of Object.keys(stripeEnv(stripe))) delete process.env[key];
  await api?.close();
  await stripe?.close();
  await db?.drop();
});

const ledger = async () => (await db.root.query("select id, type, object_id, processed_at, attempts, last_error from app_private.stripe_events order by received_at")).rows;
const jobsFor = async (key: string) => (await db.root.query("select task_identifier, attempts, last_error from graphile_worker.jobs where key = $1", [key])).rows;

/** An organization with a Stripe customer, as after its first checkout. */
async function customerOrganization() {
  const owner = await signUp(api);
  const org = await gqlOk(api, owner.accessToken, `mutation ($slug: String!) { createOrganization(input: { slug: $slug, name: "Paying" }) { organization { rowId } } }`, {
    slug: `pay-${owner.id.slice(0, 12)}`,
  });
  const organizationId = org.createOrganization.organization.rowId as string;
  const customer = `cus_${owner.id.replaceAll("-", "").slice(0, 14)}`;
  stripe.customers.set(customer, { id: customer, object: "customer", metadata: { organization_id: organizationId } });
  await db.root.query("insert into app_private.stripe_customers (organization_id, stripe_customer_id) values ($1, $2)", [organizationId, customer]);
  return { owner, organizationId, customer };
}

/** A price or subscription as the sync jobs fetch it: prices with their product. */
const withProduct = (price: Record<string, any>) => ({ ...price, product: stripe.products.get(price.product) });
const expanded = (subscription: Record<string, any>) => ({
  ...subscription,
  items: { ...subscription.items, data: subscription.items.data.map((item: Record<string, any>) => ({ ...item, price: withProduct(item.price) })) },
});

const subscriptionRow = async (stripeId: string) =>
  (await db.root.query("select status, cancel_at_period_end, plan_id, last_synced_at from app_public.subscriptions where stripe_subscription_id = $1", [stripeId])).rows[0];

describe("POST /webhooks/stripe", () => {
  it("records a signed event once and answers 200, also for types it does not act on", async () => {
    const event = stripeEvent("charge.captured", { id: "ch_test_1", object: "charge" });
    const first = await deliver(api, event);
    expect(first.status).toBe(200);
    expect(first.body).toEqual({ received: true, duplicate: false });
    const again = await deliver(api, event);
    expect(again.body).toEqual({ received: true, duplicate: true });
    const rows = (await ledger()).filter((row) => row.id === event.id);
    expect(rows).toEqual([expect.objectContaining({ type: "charge.captured", object_id: "ch_test_1", processed_at: expect.any(Date) })]);
    expect(await jobsFor("stripe:ch_test_1")).toEqual([]);
  });

  it("refuses bad, stale, wrongly keyed, tampered, malformed and oversized deliveries, and stores none of them", async () => {
    const before = (await ledger()).length;
    const event = stripeEvent("customer.subscription.updated", { id: "sub_refused", object: "subscription" });
    const payload = JSON.stringify(event);
    const cases: Array<[string, () => request.Test, number, string]> = [
      ["no signature", () => request(api.app).post("/webhooks/stripe").set("content-type", "application/json").send(payload), 400, "invalid_signature"],
      ["wrong secret", () => deliver(api, event, { secret: "whsec_someone_else" }), 400, "invalid_signature"],
      ["stale timestamp", () => deliver(api, event, { timestamp: Math.floor(Date.now() / 1000) - 301 }), 400, "invalid_signature"],
      ["forged header", () => deliver(api, event, { signatureHeader: "t=1,v1=deadbeef" }), 400, "invalid_signature"],
      [
        "tampered body",
        () => request(api.app).post("/webhooks/stripe").set("content-type", "application/json").set("Stripe-Signature", signature(payload)).send(payload.replace("sub_refused", "sub_tampered")),
        400,
        "invalid_signature",
      ],
      ["signed but not JSON", () => deliver(api, "{not json"), 400, "invalid_payload"],
      ["signed but not an event", () => deliver(api, JSON.stringify({ hello: "world" })), 400, "invalid_payload"],
    ];
    for (const [label, send, status, code] of cases) {
      const res = await send();
      expect(res.status, label).toBe(status);
      expect(res.body.error.code, label).toBe(code);
    }
    const small = await buildTestApp(db, { env: { ...RELAXED_LIMITS, ...stripeEnv(stripe), BODY_LIMIT: "1kb" } });
    try {
      const huge = stripeEvent("customer.subscription.updated", { id: "sub_huge", object: "subscription", padding: "x".repeat(4096) });
      const res = await deliver(small, huge);
      expect(res.status).toBe(413);
      expect(res.body.error.code).toBe("payload_too_large");
    } finally {
      await small.close();
    }
    expect((await ledger()).length).toBe(before);
  });

  it("accepts every configured secret while one is being rotated", async () => {
    const rotating = await buildTestApp(db, { env: { ...RELAXED_LIMITS, ...stripeEnv(stripe), STRIPE_WEBHOOK_SECRET: `whsec_new_secret, ${STRIPE_TEST.webhookSecret}` } });
    try {
      expect((await deliver(rotating, stripeEvent("charge.captured", { id: "ch_old" }))).status).toBe(200);
      expect((await deliver(rotating, stripeEvent("charge.captured", { id: "ch_new" }), { secret: "whsec_new_secret" })).status).toBe(200);
    } finally {
      await rotating.close();
    }
  });

  it("answers 503 billing_unavailable when Stripe is not configured", async () => {
    const plain = await buildTestApp(db, { env: { ...RELAXED_LIMITS, STRIPE_SECRET_KEY: "", STRIPE_WEBHOOK_SECRET: "" } });
    try {
      const res = await deliver(plain, stripeEvent("charge.captured", { id: "ch_none" }));
      expect(res.status).toBe(503);
      expect(res.body.error.code).toBe("billing_unavailable");
    } finally {
      await plain.close();
    }
  });
});

describe("syncing subscriptions", () => {
  it("a completed checkout brings in the subscription and its plan, re-fetched from Stripe", async () => {
    const { organizationId, customer } = await customerOrganization();
    const { price } = stripe.addPlan({ name: "Team", amount: 2900, metadata: { max_projects: "20", max_members: "unlimited", sort_order: "2" } });
    const subscription = stripe.addSubscription({ customer, price, organizationId });
    const session = { id: "cs_test_done", object: "checkout.session", mode: "subscription", subscription: subscription.id, customer, client_reference_id: organizationId };
    expect((await deliver(api, stripeEvent("checkout.session.completed", session))).status).toBe(200);
    await runJobs(db);

    expect(await subscriptionRow(subscription.id)).toMatchObject({ status: "active", cancel_at_period_end: false });
    const { rows } = await db.root.query("select name, amount, interval, max_projects, max_members, max_tasks_per_project, sort_order, active from app_public.plans where stripe_price_id = $1", [price.id]);
    // max_tasks_per_project is not set on the product: the free plan's limit applies.
    expect(rows).toEqual([{ name: "Team", amount: "2900", interval: "month", max_projects: 20, max_members: null, max_tasks_per_project: 250, sort_order: 2, active: true }]);
    expect((await ledger()).find((row) => row.object_id === subscription.id)).toMatchObject({ processed_at: expect.any(Date), last_error: null });
    expect(stripe.requests.some((r) => r.path === `/v1/subscriptions/${subscription.id}`)).toBe(true);
  });

  it("duplicate, replayed, out-of-order and same-second deliveries end where Stripe is", async () => {
    const { organizationId, customer } = await customerOrganization();
    const { price } = stripe.addPlan({ name: "Order", amount: 1000 });
    const subscription = stripe.addSubscription({ customer, price, organizationId });
    const second = Math.floor(Date.now() / 1000);
    const created = stripeEvent("customer.subscription.created", { ...subscription }, { created: second - 10 });
    const updated = stripeEvent("customer.subscription.updated", { ...subscription, cancel_at_period_end: true }, { created: second });
    subscription.cancel_at_period_end = true;
    subscription.status = "past_due";
    // The newest event first, then the older one, then the newest again (a replay).
    await deliver(api, updated);
    await runJobs(db);
    await deliver(api, created);
    await deliver(api, updated);
    await runJobs(db);
    expect(await subscriptionRow(subscription.id)).toMatchObject({ status: "past_due", cancel_at_period_end: true });

    // Two events in the same second: the second one still lands (no strict "newer than" check).
    subscription.status = "active";
    subscription.cancel_at_period_end = false;
    await deliver(api, stripeEvent("customer.subscription.updated", { ...subscription }, { created: second }));
    await runJobs(db);
    expect(await subscriptionRow(subscription.id)).toMatchObject({ status: "active", cancel_at_period_end: false });
  });

  it("a fetch older than what is held never overwrites it", async () => {
    const { organizationId, customer } = await customerOrganization();
    const { price } = stripe.addPlan({ name: "Guarded", amount: 1500 });
    const subscription = stripe.addSubscription({ customer, price, organizationId });
    await deliver(api, stripeEvent("customer.subscription.created", subscription));
    await runJobs(db);
    const held = await subscriptionRow(subscription.id);
    const stale = { ...subscription, status: "canceled", items: { ...subscription.items, data: [{ ...subscription.items.data[0], price: price.id }] } };
    const { rows } = await db.root.query("select app_private.sync_stripe_subscription($1::jsonb, $2::timestamptz - interval '1 minute') as outcome", [
      JSON.stringify(stale),
      held.last_synced_at,
    ]);
    expect(rows[0].outcome).toBe("stale");
    expect(await subscriptionRow(subscription.id)).toMatchObject({ status: "active" });
  });

  it("a burst of events about one subscription is one job", async () => {
    const { organizationId, customer } = await customerOrganization();
    const { price } = stripe.addPlan({ name: "Burst", amount: 500 });
    const subscription = stripe.addSubscription({ customer, price, organizationId });
    for (let i = 0; i < 5; i++) await deliver(api, stripeEvent("customer.subscription.updated", subscription));
    expect(await jobsFor(`stripe:${subscription.id}`)).toHaveLength(1);
    await runJobs(db);
    expect((await ledger()).filter((row) => row.object_id === subscription.id && row.processed_at)).toHaveLength(5);
  });

  it("a failing sync records its error, retries with backoff, and is visible to operators when it gives up", async () => {
    const log = captureLogger("info");
    const { organizationId, customer } = await customerOrganization();
    const { price } = stripe.addPlan({ name: "Flaky", amount: 700 });
    const subscription = stripe.addSubscription({ customer, price, organizationId });
    await deliver(api, stripeEvent("customer.subscription.created", subscription));
    stripe.failNext(500, { type: "api_error", message: "Stripe had a hiccup" }, 3);
    await runJobs(db, log.logger);
    const [job] = await jobsFor(`stripe:${subscription.id}`);
    expect(job).toMatchObject({ task_identifier: "stripe__sync_subscription", attempts: 1, last_error: expect.stringContaining("hiccup") });
    expect((await ledger()).find((row) => row.object_id === subscription.id)).toMatchObject({ processed_at: null, attempts: 1, last_error: expect.stringContaining("hiccup") });
    const metrics = await request(api.app).get("/metrics");
    expect(metrics.text).toMatch(/stripe_events_unprocessed\{state="failing"\} [1-9]/);

    // The last attempt fails too: an error line, and the metric of permanently failed jobs.
    await db.root.query("update graphile_worker._private_jobs set run_at = now(), max_attempts = 2 where key = $1", [`stripe:${subscription.id}`]);
    stripe.failNext(500, { type: "api_error", message: "Stripe had a hiccup" }, 3);
    await runJobs(db, log.logger);
    expect(log.lines().some((line) => line.level === 50 && String(line.msg).includes(`giving up on ${subscription.id}`))).toBe(true);
    expect((await request(api.app).get("/metrics")).text).toMatch(/worker_jobs_failed_permanently\{task="stripe__sync_subscription"\} 1/);
  });
});

describe("syncing plans", () => {
  it("product and price events update limits, availability and names", async () => {
    const { product, price } = stripe.addPlan({ name: "Business", amount: 9900, metadata: { max_projects: "50" } });
    await deliver(api, stripeEvent("price.created", price));
    await runJobs(db);
    const plan = async () =>
      (await db.root.query("select name, active, max_projects from app_public.plans where stripe_price_id = $1", [price.id])).rows[0];
    expect(await plan()).toEqual({ name: "Business", active: true, max_projects: 50 });

    product.name = "Business Plus";
    product.metadata = { plan: "true", max_projects: "unlimited" };
    await deliver(api, stripeEvent("product.updated", product));
    await runJobs(db);
    expect(await plan()).toEqual({ name: "Business Plus", active: true, max_projects: null });

    // No longer marked as a plan: not offered, and its subscribers keep the limits they had.
    product.metadata = { max_projects: "3" };
    await deliver(api, stripeEvent("product.updated", product));
    await runJobs(db);
    expect(await plan()).toEqual({ name: "Business Plus", active: false, max_projects: null });
    product.metadata = { plan: "true", max_projects: "75" };
    await deliver(api, stripeEvent("product.updated", product));
    await runJobs(db);
    expect(await plan()).toEqual({ name: "Business Plus", active: true, max_projects: 75 });

    product.deleted = true;
    await deliver(api, stripeEvent("product.deleted", { id: product.id, object: "product", deleted: true }));
    await runJobs(db);
    expect(await plan()).toMatchObject({ active: false });
  });

  it("npm run stripe:sync pulls active prices into plans, retires the rest and names what it could not sync", async () => {
    const { price } = stripe.addPlan({ name: "Synced", amount: 4200, metadata: { max_members: "25" } });
    stripe.addPlan({ name: "Merch", amount: 900, metadata: { plan: "false" } });
    const { price: typo } = stripe.addPlan({ name: "Typo", amount: 100, metadata: { max_projects: "lots" } });
    await db.root.query(
      "insert into app_public.plans (stripe_product_id, stripe_price_id, name, amount, price_synced_at) values ('prod_gone', 'price_gone', 'Gone', 100, now() - interval '1 minute')",
    );
    // Not spawnSync: the fake Stripe the command calls runs in this process.
    const result = await new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, ["src/billing/sync-cli.ts"], {
        cwd: PROJECT_ROOT,
        env: { PATH: process.env.PATH, DATABASE_URL: db.urls.owner, AUTH_DATABASE_URL: db.urls.authenticator, ...stripeEnv(stripe) },
      });
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (chunk) => (stdout += chunk));
      child.stderr.on("data", (chunk) => (stderr += chunk));
      child.on("close", (status) => resolve({ status, stdout, stderr }));
    });
    expect(result.stderr).toContain(`Not synced (fix these in Stripe, then run this again):\n  ${typo.id}: Stripe product ${typo.product}: metadata max_projects must be a whole number or "unlimited", not "lots".`);
    expect(result.status).toBe(1);
    expect(result.stdout).toMatch(/^Synced \d+ plans from Stripe:/);
    expect(result.stdout).toMatch(/Synced\s+42\.00 USD every month/);
    expect(result.stdout).toMatch(/Skipped prices of products not marked as plans \(metadata plan = "true"\): .*Merch \(prod_\w+\)/);
    const { rows: merch } = await db.root.query("select 1 from app_public.plans where name = 'Merch'");
    expect(merch).toEqual([]);
    expect(result.stdout).toContain("No longer offered: Gone.");
    const { rows } = await db.root.query("select name, max_members, active from app_public.plans where stripe_price_id in ($1, 'price_gone') order by name", [price.id]);
    expect(rows).toEqual([
      { name: "Gone", max_members: null, active: false },
      { name: "Synced", max_members: 25, active: true },
    ]);
  });

  it("only recurring prices of products marked as plans become plans; marking a product offers its prices", async () => {
    const { product, price } = stripe.addPlan({ name: "Seats add-on", amount: 300, metadata: { plan: "false" } });
    const oneTime = { ...price, id: `price_once_${price.id.slice(6)}`, type: "one_time", recurring: null };
    stripe.prices.set(oneTime.id, oneTime);
    await deliver(api, stripeEvent("price.created", price));
    await deliver(api, stripeEvent("price.created", oneTime));
    await runJobs(db);
    const plans = async () => (await db.root.query("select stripe_price_id, active from app_public.plans where stripe_product_id = $1", [product.id])).rows;
    expect(await plans()).toEqual([]);
    expect((await ledger()).filter((row) => row.object_id === price.id || row.object_id === oneTime.id)).toEqual([
      expect.objectContaining({ processed_at: expect.any(Date), last_error: null }),
      expect.objectContaining({ processed_at: expect.any(Date), last_error: null }),
    ]);

    // Marking the product in the dashboard is enough: its recurring prices come with it.
    product.metadata = { plan: "true" };
    await deliver(api, stripeEvent("product.updated", product));
    await runJobs(db);
    expect(await plans()).toEqual([{ stripe_price_id: price.id, active: true }]);
  });

  it("limits that are not numbers are reported on the ledger and change nothing", async () => {
    const { product, price } = stripe.addPlan({ name: "Typo", amount: 1200, metadata: { max_projects: "10" } });
    await deliver(api, stripeEvent("price.created", price));
    await runJobs(db);
    product.metadata = { plan: "true", max_projects: "lots" };
    await deliver(api, stripeEvent("product.updated", product));
    await runJobs(db);
    expect((await ledger()).find((row) => row.object_id === product.id)).toMatchObject({
      processed_at: null,
      last_error: `Stripe product ${product.id}: metadata max_projects must be a whole number or "unlimited", not "lots".`,
    });
    const { rows } = await db.root.query("select max_projects from app_public.plans where stripe_price_id = $1", [price.id]);
    expect(rows).toEqual([{ max_projects: 10 }]);
  });

  it("a product's bad metadata does not stop its subscriptions from syncing", async () => {
    const { organizationId, customer } = await customerOrganization();
    const { product, price } = stripe.addPlan({ name: "Typo later", amount: 1200, metadata: { max_projects: "10" } });
    const subscription = stripe.addSubscription({ customer, price, organizationId });
    await deliver(api, stripeEvent("customer.subscription.created", subscription));
    await runJobs(db);
    product.metadata = { plan: "true", max_projects: "ten" };
    subscription.cancel_at_period_end = true;
    await deliver(api, stripeEvent("customer.subscription.updated", subscription));
    await runJobs(db);
    expect(await subscriptionRow(subscription.id)).toMatchObject({ status: "active", cancel_at_period_end: true });
    const { rows } = await db.root.query("select max_projects from app_public.plans where stripe_price_id = $1", [price.id]);
    expect(rows).toEqual([{ max_projects: 10 }]);
  });

  it("an add-on item listed before the plan's item does not hide the plan", async () => {
    const { organizationId, customer } = await customerOrganization();
    const { price: addOn } = stripe.addPlan({ name: "Extra seats", amount: 300, metadata: { plan: "false" } });
    const { price } = stripe.addPlan({ name: "Base", amount: 3000 });
    const subscription = stripe.addSubscription({ customer, price, organizationId });
    subscription.items.data.unshift({ ...subscription.items.data[0], id: `si_addon${subscription.id.slice(4)}`, price: addOn });
    await deliver(api, stripeEvent("customer.subscription.created", subscription));
    await runJobs(db);
    const { rows } = await db.root.query(
      "select p.name from app_public.subscriptions s join app_public.plans p on p.id = s.plan_id where s.stripe_subscription_id = $1",
      [subscription.id],
    );
    expect(rows).toEqual([{ name: "Base" }]);
  });

  it("price and product fields each keep the newest fetch of their own object", async () => {
    const { product, price } = stripe.addPlan({ name: "Clocked", amount: 1000, metadata: { max_projects: "5" } });
    const at = (secondsAgo: number) => new Date(Date.now() - secondsAgo * 1000);
    const write = (fn: string, object: unknown, fetchedAt: Date) => db.root.query(`select app_private.${fn}($1::jsonb, $2)`, [JSON.stringify(object), fetchedAt]);
    const plan = async () => (await db.root.query("select name, max_projects, amount, price_active from app_public.plans where stripe_price_id = $1", [price.id])).rows[0];
    await write("sync_stripe_price", withProduct(price), at(60));
    // The price is deleted (fetched at -10 s); a product fetch from -30 s still brings the product's news.
    await write("sync_stripe_price", { id: price.id, object: "price", deleted: true }, at(10));
    await write("sync_stripe_product", { ...product, name: "Clocked v2", metadata: { plan: "true", max_projects: "7" } }, at(30));
    expect(await plan()).toEqual({ name: "Clocked v2", max_projects: 7, amount: "1000", price_active: false });
    // Older copies of either change nothing.
    await write("sync_stripe_product", { ...product, name: "Clocked v0", metadata: { plan: "true", max_projects: "1" } }, at(40));
    await write("sync_stripe_price", withProduct({ ...price, unit_amount: 900 }), at(50));
    expect(await plan()).toEqual({ name: "Clocked v2", max_projects: 7, amount: "1000", price_active: false });
  });

  it("a price Stripe no longer has stops being offered", async () => {
    const { price } = stripe.addPlan({ name: "Vanishing", amount: 800 });
    await deliver(api, stripeEvent("price.created", price));
    await runJobs(db);
    stripe.prices.delete(price.id);
    await deliver(api, stripeEvent("price.deleted", price));
    await runJobs(db);
    const { rows } = await db.root.query("select active from app_public.plans where stripe_price_id = $1", [price.id]);
    expect(rows).toEqual([{ active: false }]);
    expect((await ledger()).filter((row) => row.object_id === price.id).every((row) => row.processed_at)).toBe(true);
  });
});

describe("whose subscription, and when Stripe and we disagree", () => {
  it("a subscription made outside our checkout is found through its customer's metadata", async () => {
    const owner = await signUp(api);
    const org = await gqlOk(api, owner.accessToken, `mutation ($slug: String!) { createOrganization(input: { slug: $slug, name: "Dashboard-made" }) { organization { rowId } } }`, {
      slug: `dash-${owner.id.slice(0, 12)}`,
    });
    const organizationId = org.createOrganization.organization.rowId as string;
    const customer = `cus_dash${owner.id.replaceAll("-", "").slice(0, 10)}`;
    stripe.customers.set(customer, { id: customer, object: "customer", metadata: { organization_id: organizationId } });
    const { price } = stripe.addPlan({ name: "Manual", amount: 5000 });
    const subscription = stripe.addSubscription({ customer, price }); // no metadata of its own
    await deliver(api, stripeEvent("customer.subscription.created", subscription));
    await runJobs(db);
    expect(await subscriptionRow(subscription.id)).toMatchObject({ status: "active" });
    const { rows } = await db.root.query("select organization_id from app_private.stripe_customers where stripe_customer_id = $1", [customer]);
    expect(rows).toEqual([{ organization_id: organizationId }]);
  });

  it("a subscription nobody here owns is reported once, not retried", async () => {
    const log = captureLogger("info");
    const customer = "cus_strangerstranger";
    stripe.customers.set(customer, { id: customer, object: "customer", metadata: {} });
    const { price } = stripe.addPlan({ name: "Elsewhere", amount: 100 });
    const subscription = stripe.addSubscription({ customer, price });
    await deliver(api, stripeEvent("customer.subscription.created", subscription));
    await runJobs(db, log.logger);
    expect(await subscriptionRow(subscription.id)).toBeUndefined();
    expect(await jobsFor(`stripe:${subscription.id}`)).toEqual([]);
    expect((await ledger()).find((row) => row.object_id === subscription.id)).toMatchObject({
      processed_at: null,
      attempts: 1,
      last_error: expect.stringContaining("belongs to no organization here"),
    });
    expect(log.lines().some((line) => line.level === 50 && String(line.msg).includes(`${subscription.id}: ${subscription.id} belongs to no organization here`))).toBe(true);
  });

  it("a subscription of a deleted organization is settled without noise", async () => {
    const { owner, organizationId, customer } = await customerOrganization();
    const { price } = stripe.addPlan({ name: "Ending", amount: 100 });
    const subscription = stripe.addSubscription({ customer, price, organizationId, cancelAtPeriodEnd: true });
    await deliver(api, stripeEvent("customer.subscription.created", subscription));
    await runJobs(db);
    await gqlOk(api, owner.accessToken, `mutation ($id: UUID!) { deleteOrganization(input: { organizationId: $id }) { __typename } }`, { id: organizationId });
    subscription.status = "canceled";
    await deliver(api, stripeEvent("customer.subscription.deleted", subscription));
    await runJobs(db);
    expect((await ledger()).filter((row) => row.object_id === subscription.id).every((row) => row.processed_at && !row.last_error)).toBe(true);
  });

  it("a live subscription that arrives after its organization was deleted is reported, not settled quietly", async () => {
    const log = captureLogger("info");
    const { owner, organizationId, customer } = await customerOrganization();
    await gqlOk(api, owner.accessToken, `mutation ($id: UUID!) { deleteOrganization(input: { organizationId: $id }) { __typename } }`, { id: organizationId });
    // The checkout was paid just before the deletion; its webhook comes after.
    const { price } = stripe.addPlan({ name: "Too late", amount: 100 });
    const subscription = stripe.addSubscription({ customer, price, organizationId });
    await deliver(api, stripeEvent("customer.subscription.created", subscription));
    await runJobs(db, log.logger);
    expect((await ledger()).find((row) => row.object_id === subscription.id)).toMatchObject({ processed_at: null, last_error: expect.stringContaining("its organization was deleted") });
    expect(log.lines().some((line) => line.level === 50 && String(line.msg).includes(`${subscription.id} is active in Stripe, but its organization was deleted`))).toBe(true);
  });

  it("a second live subscription for one organization is reported, held back, and takes over when the first ends", async () => {
    const log = captureLogger("info");
    const { organizationId, customer } = await customerOrganization();
    const { price } = stripe.addPlan({ name: "Twice", amount: 1000 });
    const first = stripe.addSubscription({ customer, price, organizationId });
    await deliver(api, stripeEvent("customer.subscription.created", first));
    await runJobs(db);
    const second = stripe.addSubscription({ customer, price, organizationId });
    await deliver(api, stripeEvent("customer.subscription.created", second));
    await runJobs(db, log.logger);
    expect(await subscriptionRow(first.id)).toMatchObject({ status: "active" });
    expect(await subscriptionRow(second.id)).toBeUndefined();
    expect(await jobsFor(`stripe:${second.id}`)).toEqual([]);
    expect((await ledger()).find((row) => row.object_id === second.id)).toMatchObject({ processed_at: null, last_error: expect.stringContaining("second live subscription") });
    const reported = log.lines().find((line) => line.level === 50 && String(line.msg).includes("Cancel one of them in the Stripe dashboard"));
    expect(String(reported?.msg)).toContain(`${second.id} is a second live subscription for an organization that already has ${first.id}`);

    // The first one is canceled: the held one is synced again and becomes the current one; the
    // organization never went without a plan, so nobody is told it was canceled.
    first.status = "canceled";
    first.ended_at = Math.floor(Date.now() / 1000);
    await deliver(api, stripeEvent("customer.subscription.deleted", first));
    await runJobs(db);
    expect(await subscriptionRow(first.id)).toMatchObject({ status: "canceled" });
    expect(await subscriptionRow(second.id)).toMatchObject({ status: "active" });
    expect((await ledger()).filter((row) => row.object_id === second.id).every((row) => row.processed_at)).toBe(true);
    const notices = await db.root.query("select kind from app_private.billing_notices where organization_id = $1", [organizationId]);
    expect(notices.rows).toEqual([]);
    const held = await db.root.query("select 1 from app_private.stripe_held_subscriptions where organization_id = $1", [organizationId]);
    expect(held.rowCount).toBe(0);
  });

  it("an organization with a live subscription held back as a duplicate cannot be deleted", async () => {
    const { owner, organizationId, customer } = await customerOrganization();
    const { price } = stripe.addPlan({ name: "Held", amount: 1000 });
    const first = stripe.addSubscription({ customer, price, organizationId, cancelAtPeriodEnd: true });
    await deliver(api, stripeEvent("customer.subscription.created", first));
    await runJobs(db);
    const second = stripe.addSubscription({ customer, price, organizationId });
    await deliver(api, stripeEvent("customer.subscription.created", second));
    await runJobs(db);
    const refused = await gqlError(api, owner.accessToken, `mutation ($id: UUID!) { deleteOrganization(input: { organizationId: $id }) { __typename } }`, { id: organizationId });
    expect(refused).toEqual({
      code: "subscription_active",
      message: "This organization has a second live subscription that Stripe still bills; cancel it in the billing portal (createBillingPortalSession) first, then delete the organization.",
    });
  });

  it("two live subscriptions synced at the same moment leave exactly one current", async () => {
    const { organizationId, customer } = await customerOrganization();
    const { price } = stripe.addPlan({ name: "Race", amount: 1000 });
    const subscriptions = [stripe.addSubscription({ customer, price, organizationId }), stripe.addSubscription({ customer, price, organizationId })];
    const outcomes = await Promise.all(
      subscriptions.map(expanded).map((object) => db.root.query("select app_private.sync_stripe_subscription($1::jsonb, clock_timestamp()) as outcome", [JSON.stringify(object)])),
    );
    expect(outcomes.map((r) => r.rows[0].outcome).sort()).toEqual(["created", expect.stringMatching(/^duplicate of sub_/)]);
    const { rows } = await db.root.query("select count(*)::int as n from app_public.subscriptions where organization_id = $1", [organizationId]);
    expect(rows).toEqual([{ n: 1 }]);
  });

  it("a subscription Stripe no longer has is marked canceled", async () => {
    const { organizationId, customer } = await customerOrganization();
    const { price } = stripe.addPlan({ name: "Purged", amount: 100 });
    const subscription = stripe.addSubscription({ customer, price, organizationId });
    await deliver(api, stripeEvent("customer.subscription.created", subscription));
    await runJobs(db);
    stripe.subscriptions.delete(subscription.id); // a test-mode subscription deleted with its customer
    await deliver(api, stripeEvent("customer.subscription.deleted", subscription));
    await runJobs(db);
    const { rows } = await db.root.query("select status, ended_at from app_public.subscriptions where stripe_subscription_id = $1", [subscription.id]);
    expect(rows).toEqual([{ status: "canceled", ended_at: expect.any(Date) }]);
    const plan = await db.root.query("select ((app_private.effective_plan($1)).plan).name as name", [organizationId]);
    expect(plan.rows[0].name).toBe("Free");
  });

  it("an invoice that arrives before its subscription brings the subscription in", async () => {
    const { organizationId, customer } = await customerOrganization();
    const { price } = stripe.addPlan({ name: "Early invoice", amount: 1900 });
    const subscription = stripe.addSubscription({ customer, price, organizationId });
    const invoice = stripe.addInvoice(subscription, { status: "paid", amount: 1900 });
    await deliver(api, stripeEvent("invoice.paid", invoice));
    await runJobs(db);
    expect(await subscriptionRow(subscription.id)).toMatchObject({ status: "active" });
    const { rows } = await db.root.query(
      "select d.latest_invoice_status, d.latest_invoice_amount_due from app_public.subscription_payment_details d join app_public.subscriptions s on s.id = d.subscription_id where s.stripe_subscription_id = $1",
      [subscription.id],
    );
    expect(rows).toEqual([{ latest_invoice_status: "paid", latest_invoice_amount_due: "1900" }]);
    expect((await ledger()).find((row) => row.object_id === invoice.id)).toMatchObject({ processed_at: expect.any(Date), last_error: null });
  });

  it("the grace period of a past_due subscription runs from its failed invoice, not from when we heard of it", async () => {
    const { organizationId, customer } = await customerOrganization();
    const { price } = stripe.addPlan({ name: "Late", amount: 1000 });
    const subscription = stripe.addSubscription({ customer, price, organizationId, status: "past_due" });
    const invoice = stripe.addInvoice(subscription, { status: "open", attempts: 2 });
    const finalized = Math.floor(Date.now() / 1000) - 5 * 86400;
    invoice.status_transitions.finalized_at = finalized;
    await deliver(api, stripeEvent("customer.subscription.updated", subscription));
    await runJobs(db);
    const { rows } = await db.root.query("select extract(epoch from past_due_since)::bigint as since from app_public.subscriptions where stripe_subscription_id = $1", [
      subscription.id,
    ]);
    expect(Number(rows[0].since)).toBe(finalized);
    const grace = await db.root.query("select (app_private.effective_plan($1)).grace_ends_at as ends", [organizationId]);
    expect(Math.round((grace.rows[0].ends.getTime() / 1000 - finalized) / 86400)).toBe(7);
  });

  it("an event about no object in particular is recorded as done", async () => {
    const event = stripeEvent("invoice.upcoming", { object: "invoice", customer: "cus_x", subscription: "sub_x" });
    expect((await deliver(api, event)).status).toBe(200);
    expect((await ledger()).find((row) => row.id === event.id)).toMatchObject({ object_id: null, processed_at: expect.any(Date) });
  });
});
