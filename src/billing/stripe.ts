import Stripe from "stripe";
import { loadConfig, type Config } from "../config.ts";

/** How old a webhook's signed timestamp may be (Stripe's recommended tolerance). */
export const WEBHOOK_TOLERANCE_SECONDS = 300;

/**
 * The Stripe API client, or undefined when STRIPE_SECRET_KEY is not set (billing is then off:
 * every organization has the free plan). STRIPE_API_URL points it elsewhere (tests use a local
 * fake of Stripe's HTTP API).
 */
export function createStripeClient(settings: Config["stripe"]): Stripe | undefined {
  if (!settings.secretKey) return undefined;
  const url = new URL(settings.apiUrl);
  return new Stripe(settings.secretKey, {
    host: url.hostname,
    port: url.port || (url.protocol === "http:" ? 80 : 443),
    protocol: url.protocol === "http:" ? "http" : "https",
    maxNetworkRetries: 2,
    timeout: 20_000,
    telemetry: false,
    appInfo: { name: "oddscenes-backend" },
  });
}

// Tasks have no constructor to inject into: their client is built from the environment on the
// first job, so they behave the same in-process and under the worker CLI.
let fromEnvironment: { client: Stripe | undefined } | undefined;

/** The client for worker tasks, from the environment; throws when Stripe is not configured. */
export function stripeForTasks(): Stripe {
  fromEnvironment ??= { client: createStripeClient(loadConfig(process.env, process.cwd(), "worker").stripe) };
  if (!fromEnvironment.client) throw new Error("STRIPE_SECRET_KEY is not set: Stripe events cannot be synced");
  return fromEnvironment.client;
}
