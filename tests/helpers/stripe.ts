import { randomBytes } from "node:crypto";
import type { AddressInfo } from "node:net";
import express, { type Request } from "express";
import Stripe from "stripe";
import request from "supertest";
import type { TestApp } from "./app.ts";

/** The test settings of a Stripe account (the webhook secret signs the deliveries below). */
export const STRIPE_TEST = { secretKey: "sk_test_oddscenes", webhookSecret: "whsec_test_oddscenes" } as const;

const id = (prefix: string) => `${prefix}_${randomBytes(10).toString("hex")}`;
const now = () => Math.floor(Date.now() / 1000);

type StripeObject = Record<string, any>;

export interface RecordedRequest {
  method: string;
  path: string;
  body: Record<string, any>;
  query: Record<string, unknown>;
  idempotencyKey: string | undefined;
}

export interface FakeStripe {
  /** STRIPE_API_URL for the app and the worker. */
  url: string;
  products: Map<string, StripeObject>;
  prices: Map<string, StripeObject>;
  subscriptions: Map<string, StripeObject>;
  invoices: Map<string, StripeObject>;
  customers: Map<string, StripeObject>;
  requests: RecordedRequest[];
  /** The next `times` API calls answer with this Stripe error instead (the SDK retries 5xx twice). */
  failNext(status: number, error: { type: string; code?: string; message: string }, times?: number): void;
  checkoutSessions: Map<string, StripeObject>;
  /**
   * A product with one recurring monthly price; `metadata` carries the plan limits, and the
   * product is marked as a plan (metadata plan = "true") unless `metadata.plan` says otherwise.
   */
  addPlan(options: { name: string; amount: number; metadata?: Record<string, string>; interval?: string; currency?: string }): { product: StripeObject; price: StripeObject };
  /** A subscription to `price` for `customer`; fields as Stripe would have them. */
  addSubscription(options: {
    customer: string;
    price: StripeObject;
    status?: string;
    organizationId?: string;
    periodEnd?: number;
    trialEnd?: number | null;
    cancelAtPeriodEnd?: boolean;
  }): StripeObject;
  /** An invoice of `subscription`, which becomes its latest_invoice. */
  addInvoice(subscription: StripeObject, options: { status: string; attempts?: number; amount?: number; nextAttempt?: number | null }): StripeObject;
  close(): Promise<void>;
}

/** Lists the expand[] parameters of a request, however the SDK encoded them. */
function expansions(req: Request): string[] {
  const found: string[] = [];
  const collect = (value: unknown) => {
    if (typeof value === "string") found.push(value);
    else if (Array.isArray(value)) value.forEach(collect);
    else if (value && typeof value === "object") Object.values(value).forEach(collect);
  };
  for (const [key, value] of Object.entries({ ...(req.query as object), ...(req.body as object) })) {
    if (key.startsWith("expand")) collect(value);
  }
  return found;
}

/**
 * A local stand-in for Stripe's HTTP API (the SDK talks to it through STRIPE_API_URL): it keeps
 * products, prices, subscriptions, invoices and customers in memory and answers like Stripe for
 * the calls this backend makes, expansions and error shapes included.
 */
export async function startFakeStripe(): Promise<FakeStripe> {
  const products = new Map<string, StripeObject>();
  const prices = new Map<string, StripeObject>();
  const subscriptions = new Map<string, StripeObject>();
  const invoices = new Map<string, StripeObject>();
  const customers = new Map<string, StripeObject>();
  const checkoutSessions = new Map<string, StripeObject>();
  const requests: RecordedRequest[] = [];
  const failures: Array<{ status: number; error: object }> = [];

  const withProduct = (price: StripeObject, expand: boolean) => (expand ? { ...price, product: products.get(price.product) ?? price.product } : price);
  const missing = (kind: string, key: string, param = "id") => ({
    error: { type: "invalid_request_error", code: "resource_missing", message: `No such ${kind}: '${key}'`, param },
  });

  const app = express();
  app.use(express.urlencoded({ extended: true }));
  app.use((req, res, next) => {
    requests.push({ method: req.method, path: req.path, body: req.body ?? {}, query: req.query as Record<string, unknown>, idempotencyKey: req.get("idempotency-key") });
    res.set("Request-Id", id("req"));
    const failure = failures.shift();
    if (failure) {
      res.status(failure.status).json({ error: failure.error });
      return;
    }
    next();
  });

  app.get("/v1/products/:id", (req, res) => {
    const product = products.get(req.params.id);
    if (!product || product.deleted) return res.status(404).json(missing("product", req.params.id));
    res.json(product);
  });
  app.get("/v1/prices/:id", (req, res) => {
    const price = prices.get(req.params.id);
    if (!price) return res.status(404).json(missing("price", req.params.id));
    res.json(withProduct(price, expansions(req).includes("product")));
  });
  app.get("/v1/prices", (req, res) => {
    const expand = expansions(req).includes("data.product");
    const data = [...prices.values()]
      .filter(
        (price) =>
          (req.query.active === undefined || String(price.active) === req.query.active) &&
          (!req.query.type || price.type === req.query.type) &&
          (!req.query.product || price.product === req.query.product),
      )
      .map((price) => withProduct(price, expand));
    res.json({ object: "list", data, has_more: false, url: "/v1/prices" });
  });
  app.get("/v1/subscriptions/:id", (req, res) => {
    const subscription = subscriptions.get(req.params.id);
    if (!subscription) return res.status(404).json(missing("subscription", req.params.id));
    const expand = expansions(req);
    const items = subscription.items.data.map((item: StripeObject) => ({ ...item, price: withProduct(item.price, expand.includes("items.data.price.product")) }));
    const paymentMethod = expand.includes("default_payment_method") && subscription.default_payment_method
      ? { id: subscription.default_payment_method, object: "payment_method", type: "card", card: { brand: "visa", last4: "4242", exp_month: 12, exp_year: 2030 } }
      : subscription.default_payment_method;
    const latestInvoice = expand.includes("latest_invoice") && subscription.latest_invoice ? invoices.get(subscription.latest_invoice) : subscription.latest_invoice;
    const customer = expand.includes("customer") ? (customers.get(subscription.customer) ?? { id: subscription.customer, object: "customer", deleted: true }) : subscription.customer;
    res.json({ ...subscription, items: { ...subscription.items, data: items }, default_payment_method: paymentMethod, latest_invoice: latestInvoice ?? null, customer });
  });
  app.get("/v1/invoices/:id", (req, res) => {
    const invoice = invoices.get(req.params.id);
    if (!invoice) return res.status(404).json(missing("invoice", req.params.id));
    res.json(invoice);
  });
  app.post("/v1/customers", (req, res) => {
    const customer = { id: id("cus"), object: "customer", created: now(), name: req.body.name ?? null, email: req.body.email ?? null, metadata: req.body.metadata ?? {}, livemode: false };
    customers.set(customer.id, customer);
    res.json(customer);
  });
  app.post("/v1/checkout/sessions", (req, res) => {
    if (!req.body.customer || !customers.has(req.body.customer)) return res.status(400).json(missing("customer", String(req.body.customer), "customer"));
    const priceId = req.body.line_items?.[0]?.price;
    if (!prices.has(priceId)) return res.status(400).json(missing("price", String(priceId), "line_items[0][price]"));
    const session = id("cs_test");
    const created = {
      id: session,
      object: "checkout.session",
      mode: req.body.mode,
      customer: req.body.customer,
      client_reference_id: req.body.client_reference_id ?? null,
      metadata: req.body.metadata ?? {},
      success_url: req.body.success_url,
      cancel_url: req.body.cancel_url,
      status: "open",
      subscription: null,
      url: `https://checkout.stripe.com/c/pay/${session}`,
      livemode: false,
    };
    checkoutSessions.set(session, created);
    res.json(created);
  });
  app.get("/v1/checkout/sessions/:id", (req, res) => {
    const session = checkoutSessions.get(req.params.id);
    if (!session) return res.status(404).json(missing("checkout.session", req.params.id));
    res.json(session);
  });
  app.post("/v1/checkout/sessions/:id/expire", (req, res) => {
    const session = checkoutSessions.get(req.params.id);
    if (!session) return res.status(404).json(missing("checkout.session", req.params.id));
    if (session.status !== "open") {
      return res.status(400).json({ error: { type: "invalid_request_error", code: "checkout_session_not_open", message: `Only open sessions can be expired; this one is ${session.status}.` } });
    }
    session.status = "expired";
    session.url = null;
    res.json(session);
  });
  app.post("/v1/billing_portal/sessions", (req, res) => {
    if (!customers.has(req.body.customer)) return res.status(400).json(missing("customer", String(req.body.customer), "customer"));
    const session = id("bps");
    res.json({ id: session, object: "billing_portal.session", customer: req.body.customer, return_url: req.body.return_url, url: `https://billing.stripe.com/p/session/${session}`, livemode: false });
  });
  app.use((req, res) => {
    res.status(404).json({ error: { type: "invalid_request_error", message: `Unrecognized request URL (${req.method}: ${req.path}).` } });
  });

  const server = app.listen(0, "127.0.0.1");
  await new Promise((resolve) => server.once("listening", resolve));
  const { port } = server.address() as AddressInfo;

  return {
    url: `http://127.0.0.1:${port}`,
    products,
    prices,
    subscriptions,
    invoices,
    customers,
    checkoutSessions,
    requests,
    failNext(status, error, times = 1) {
      for (let i = 0; i < times; i++) failures.push({ status, error });
    },
    addPlan({ name, amount, metadata = {}, interval = "month", currency = "usd" }) {
      const product = {
        id: id("prod"),
        object: "product",
        active: true,
        name,
        description: `${name} plan`,
        metadata: { plan: "true", ...metadata },
        created: now(),
        updated: now(),
        livemode: false,
      };
      const price = {
        id: id("price"),
        object: "price",
        active: true,
        currency,
        unit_amount: amount,
        type: "recurring",
        recurring: { interval, interval_count: 1, usage_type: "licensed" },
        product: product.id,
        created: now(),
        livemode: false,
      };
      products.set(product.id, product);
      prices.set(price.id, price);
      return { product, price };
    },
    addSubscription({ customer, price, status = "active", organizationId, periodEnd = now() + 30 * 86400, trialEnd = null, cancelAtPeriodEnd = false }) {
      const subscription = {
        id: id("sub"),
        object: "subscription",
        customer,
        status,
        created: now(),
        start_date: now(),
        cancel_at_period_end: cancelAtPeriodEnd,
        cancel_at: cancelAtPeriodEnd ? periodEnd : null,
        canceled_at: null,
        ended_at: null,
        trial_start: trialEnd ? now() : null,
        trial_end: trialEnd,
        currency: "usd",
        default_payment_method: id("pm"),
        latest_invoice: null as string | null,
        metadata: organizationId ? { organization_id: organizationId } : {},
        items: {
          object: "list",
          data: [{ id: id("si"), object: "subscription_item", price: prices.get(price.id) ?? price, quantity: 1, current_period_start: periodEnd - 30 * 86400, current_period_end: periodEnd }],
          has_more: false,
        },
        livemode: false,
      };
      subscriptions.set(subscription.id, subscription);
      return subscription;
    },
    addInvoice(subscription, { status, attempts = 0, amount = 2000, nextAttempt = null }) {
      const invoice = {
        id: id("in"),
        object: "invoice",
        customer: subscription.customer,
        status,
        amount_due: amount,
        amount_paid: status === "paid" ? amount : 0,
        currency: "usd",
        attempt_count: attempts,
        next_payment_attempt: nextAttempt,
        hosted_invoice_url: `https://invoice.stripe.com/i/${id("acct")}`,
        created: now(),
        status_transitions: { finalized_at: status === "draft" ? null : now(), paid_at: status === "paid" ? now() : null, voided_at: null, marked_uncollectible_at: null },
        parent: { type: "subscription_details", quote_details: null, subscription_details: { subscription: subscription.id, metadata: {} } },
        livemode: false,
      };
      invoices.set(invoice.id, invoice);
      subscription.latest_invoice = invoice.id;
      return invoice;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** A Stripe event about `object`, shaped like the ones Stripe sends. */
export function stripeEvent(type: string, object: StripeObject, options: { id?: string; created?: number } = {}): StripeObject {
  return {
    id: options.id ?? id("evt"),
    object: "event",
    api_version: "2026-10-28.endive",
    created: options.created ?? now(),
    livemode: false,
    pending_webhooks: 1,
    request: { id: null, idempotency_key: null },
    type,
    data: { object },
  };
}

const signer = new Stripe(STRIPE_TEST.secretKey);

/** Signs a payload with the Stripe SDK's own test helper, as Stripe signs its deliveries. */
export function signature(payload: string, options: { secret?: string; timestamp?: number } = {}): string {
  return signer.webhooks.generateTestHeaderString({ payload, secret: options.secret ?? STRIPE_TEST.webhookSecret, timestamp: options.timestamp });
}

/** Delivers an event to the webhook endpoint, signed (or signed wrongly, as asked). */
export function deliver(api: TestApp, event: StripeObject | string, options: { secret?: string; timestamp?: number; signatureHeader?: string } = {}) {
  const payload = typeof event === "string" ? event : JSON.stringify(event);
  return request(api.app)
    .post("/webhooks/stripe")
    .set("content-type", "application/json; charset=utf-8")
    .set("Stripe-Signature", options.signatureHeader ?? signature(payload, options))
    .send(payload);
}

/** Environment for an app and worker that talk to `fake` with the test account's keys. */
export function stripeEnv(fake: FakeStripe): Record<string, string> {
  return { STRIPE_SECRET_KEY: STRIPE_TEST.secretKey, STRIPE_WEBHOOK_SECRET: STRIPE_TEST.webhookSecret, STRIPE_API_URL: fake.url };
}
