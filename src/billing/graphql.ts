import { randomUUID } from "node:crypto";
import type { WithPgClient } from "postgraphile/@dataplan/pg";
import { access, context, SafeError, sideEffect } from "postgraphile/grafast";
import { extendSchema } from "postgraphile/utils";
import Stripe from "stripe";
import { asCaller, type PgSettings } from "../graphql/as-caller.ts";
import type { Logger } from "../logger.ts";

interface Deps {
  stripe: Stripe | undefined;
  /** Where the frontend's billing page lives: Stripe sends people back there. */
  publicUrl: string;
  logger: Logger;
}

const unavailable = () => new SafeError("Billing is not set up on this server.", { code: "billing_unavailable" });

/** Stripe object ids in Stripe's messages ("No such price: 'price_1N…'") are not for end users. */
const redactStripeIds = (message: string) => message.replace(/'?\b(?:acct|cs|cus|in|pi|pm|price|prod|seti|sub)_[A-Za-z0-9_]+'?/g, "(id withheld)");

/** Stripe lost the customer we hold for an organization (deleted in the dashboard, or test data wiped). */
const isMissingCustomer = (error: unknown) =>
  error instanceof Stripe.errors.StripeInvalidRequestError && error.code === "resource_missing" && error.param === "customer";

/**
 * createCheckoutSession and createBillingPortalSession: who may call them, and with what, is
 * decided in SQL (app_hidden.prepare_checkout / prepare_billing_portal, owners and admins only);
 * these plans only talk to Stripe. Stripe's refusals of the request itself (a card or an invalid
 * request) become `stripe_error` with Stripe's message; Stripe being down, rate limiting or
 * rejecting our key becomes `billing_unavailable`, logged for operators with Stripe's details.
 */
export function makeBillingPlugin(deps: Deps): GraphileConfig.Plugin {
  const { stripe, publicUrl, logger } = deps;
  const billingPage = (organizationId: string, extra = "") => `${publicUrl}/billing?organization=${organizationId}${extra}`;

  /** Calls Stripe; its errors become GraphQL errors, except those `handled` by the caller. */
  const callStripe = async <T>(what: string, call: (client: Stripe) => Promise<T>, handled?: (error: unknown) => boolean): Promise<T> => {
    if (!stripe) throw unavailable();
    try {
      return await call(stripe);
    } catch (error) {
      if (!(error instanceof Stripe.errors.StripeError) || handled?.(error)) throw error;
      const details = { type: error.type, code: error.code, param: error.param, message: error.message, requestId: error.requestId };
      if (error instanceof Stripe.errors.StripeInvalidRequestError && error.code === "resource_missing" && error.param?.includes("price")) {
        logger.error({ err: details }, `Stripe refused ${what}: the plan's price is gone (run npm run stripe:sync)`);
        throw new SafeError("This plan is no longer sold; reload the plans and choose another.", { code: "stripe_error" });
      }
      if (error instanceof Stripe.errors.StripeCardError || error instanceof Stripe.errors.StripeInvalidRequestError) {
        logger.warn({ err: details }, `Stripe refused ${what}`);
        throw new SafeError(`Stripe: ${redactStripeIds(error.message)}`, { code: "stripe_error" });
      }
      logger.error({ err: details }, `Stripe failed ${what}`);
      throw new SafeError("Billing is temporarily unavailable; try again in a few minutes.", { code: "billing_unavailable" });
    }
  };

  /**
   * Before a new checkout, the previous one: still open, it is expired (so it can't also end in a
   * subscription); completed, its subscription must have arrived before another checkout starts.
   */
  const settlePreviousCheckout = async (withPgClient: WithPgClient, pgSettings: PgSettings, org: string, id: string) => {
    const previous = await callStripe("reading the previous checkout session", (client) => client.checkout.sessions.retrieve(id));
    if (previous.status === "open") {
      await callStripe("expiring the previous checkout session", (client) => client.checkout.sessions.expire(id));
      return;
    }
    const subscription = typeof previous.subscription === "string" ? previous.subscription : previous.subscription?.id;
    if (previous.status !== "complete" || !subscription) return;
    const { arrived } = await asCaller<{ arrived: boolean }>(
      withPgClient,
      pgSettings,
      "select app_hidden.checkout_subscription_arrived($1, $2) as arrived",
      [org, subscription],
    );
    if (!arrived) {
      throw new SafeError("The last checkout was completed a moment ago and its subscription is on its way; reload the billing page in a few seconds.", {
        code: "already_subscribed",
      });
    }
  };

  return extendSchema(
    () => ({
      typeDefs: /* GraphQL */ `
        input CreateCheckoutSessionInput {
          organizationId: UUID!
          """A plan with a price (not the free plan)."""
          planId: UUID!
        }
        input CreateBillingPortalSessionInput {
          organizationId: UUID!
        }
        """A page on Stripe to send the user to; it expires after a while, so ask for a fresh one each time."""
        type BillingRedirect {
          url: String!
        }
        extend type Mutation {
          """
          Starts a Stripe Checkout to subscribe the organization to a plan (owners and admins; only
          while it has no current subscription). Send the user to url; Stripe brings them back to
          PUBLIC_URL/billing, and the subscription arrives through the webhook.
          """
          createCheckoutSession(input: CreateCheckoutSessionInput!): BillingRedirect
          """
          Opens Stripe's billing portal for the organization: change plan, update the card, see
          invoices, cancel (owners and admins).
          """
          createBillingPortalSession(input: CreateBillingPortalSessionInput!): BillingRedirect
        }
      `,
      objects: {
        Mutation: {
          plans: {
            createCheckoutSession(_$root, fieldArgs) {
              return sideEffect(
                [fieldArgs.getRaw(["input", "organizationId"]), fieldArgs.getRaw(["input", "planId"]), context().get("withPgClient"), context().get("pgSettings")],
                async ([organizationId, planId, withPgClient, pgSettings]) => {
                  const prepared = await asCaller<{
                    stripe_customer_id: string | null;
                    stripe_price_id: string;
                    organization_name: string;
                    email: string;
                    open_checkout_session_id: string | null;
                  }>(withPgClient, pgSettings ?? null, "select * from app_hidden.prepare_checkout($1, $2)", [organizationId, planId]);
                  const org = String(organizationId);
                  // One open checkout per organization: two completed checkouts would be two subscriptions.
                  const previous = prepared.open_checkout_session_id;
                  if (previous) await settlePreviousCheckout(withPgClient, pgSettings ?? null, org, previous);
                  const newCustomer = async (replacing: string | null) => {
                    const created = await callStripe("creating a customer", (client) =>
                      client.customers.create(
                        { name: prepared.organization_name, email: prepared.email, metadata: { organization_id: org } },
                        { idempotencyKey: `customer:${org}:${replacing ?? "first"}` },
                      ),
                    );
                    const saved = await asCaller<{ customer: string }>(
                      withPgClient,
                      pgSettings ?? null,
                      "select app_hidden.save_stripe_customer($1, $2, $3) as customer",
                      [org, created.id, replacing !== null],
                    );
                    return saved.customer;
                  };
                  const createSession = (customer: string, handled?: (error: unknown) => boolean) =>
                    callStripe("a checkout session", (client) =>
                      client.checkout.sessions.create(
                        {
                          mode: "subscription",
                          customer,
                          line_items: [{ price: prepared.stripe_price_id, quantity: 1 }],
                          client_reference_id: org,
                          metadata: { organization_id: org },
                          subscription_data: { metadata: { organization_id: org } },
                          success_url: billingPage(org, "&checkout=success&session_id={CHECKOUT_SESSION_ID}"),
                          cancel_url: billingPage(org, "&checkout=canceled"),
                        },
                        { idempotencyKey: randomUUID() },
                      ),
                      handled,
                    );
                  let customer = prepared.stripe_customer_id ?? (await newCustomer(null));
                  let session: Stripe.Checkout.Session;
                  try {
                    session = await createSession(customer, isMissingCustomer);
                  } catch (error) {
                    if (!isMissingCustomer(error)) throw error;
                    logger.warn({ organizationId: org, customer }, "Stripe no longer has the organization's customer; creating a new one");
                    customer = await newCustomer(customer);
                    session = await createSession(customer);
                  }
                  const { replaced } = await asCaller<{ replaced: string | null }>(
                    withPgClient,
                    pgSettings ?? null,
                    "select app_hidden.save_checkout_session($1, $2) as replaced",
                    [org, session.id],
                  );
                  if (replaced && replaced !== previous) {
                    // Another checkout was started at the same moment (a double click): only the newest stays open.
                    await callStripe("expiring a concurrent checkout session", (client) => client.checkout.sessions.expire(replaced)).catch((error: unknown) =>
                      logger.warn({ err: error, organizationId: org }, "a concurrent checkout session could not be expired"),
                    );
                  }
                  if (!session.url) throw new SafeError("Stripe did not return a checkout page.", { code: "stripe_error" });
                  return { url: session.url };
                },
              );
            },
            createBillingPortalSession(_$root, fieldArgs) {
              return sideEffect(
                [fieldArgs.getRaw(["input", "organizationId"]), context().get("withPgClient"), context().get("pgSettings")],
                async ([organizationId, withPgClient, pgSettings]) => {
                  const { customer } = await asCaller<{ customer: string }>(
                    withPgClient,
                    pgSettings ?? null,
                    "select app_hidden.prepare_billing_portal($1) as customer",
                    [organizationId],
                  );
                  try {
                    const session = await callStripe(
                      "a billing portal session",
                      (client) => client.billingPortal.sessions.create({ customer, return_url: billingPage(String(organizationId)) }),
                      isMissingCustomer,
                    );
                    return { url: session.url };
                  } catch (error) {
                    if (!isMissingCustomer(error)) throw error;
                    logger.warn({ organizationId, customer }, "Stripe no longer has the organization's customer; the portal cannot open");
                    throw new SafeError(
                      "This organization's billing account no longer exists in Stripe; choose a plan again (createCheckoutSession) to make a new one.",
                      { code: "no_billing_account" },
                    );
                  }
                },
              );
            },
          },
        },
        BillingRedirect: {
          plans: {
            url: ($redirect) => access($redirect, "url"),
          },
        },
      },
    }),
    "BillingPlugin",
  );
}
