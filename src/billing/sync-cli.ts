// `npm run stripe:sync`: pulls every active recurring price (with its product) from Stripe into
// app_public.plans, and marks plans whose price is no longer offered inactive. For a fresh
// deployment, or after editing products in the Stripe dashboard without a webhook. Only products
// with metadata plan = "true" become plans.
import { runOwnerCommand } from "../db/owner-command.ts";
import { createStripeClient } from "./stripe.ts";

function every(interval: string | null, count: number): string {
  return interval ? ` every ${count > 1 ? `${count} ${interval}s` : interval}` : "";
}

runOwnerCommand(async (client, config) => {
  const stripe = createStripeClient(config.stripe)!;
  // Taken before listing: a webhook sync that fetched later wins over this run.
  const { rows: clock } = await client.query<{ now: Date }>("select clock_timestamp() as now");
  const fetchedAt = clock[0]!.now;
  const seen: string[] = [];
  const lines: string[] = [];
  const skipped = new Set<string>();
  const failed: string[] = [];
  for await (const stripePrice of stripe.prices.list({ active: true, type: "recurring", expand: ["data.product"], limit: 100 })) {
    seen.push(stripePrice.id);
    let plan: { name: string | null; money: string; interval: string | null; interval_count: number; active: boolean } | undefined;
    try {
      const { rows } = await client.query(
        `select p.name, app_private.format_money(p.amount, p.currency) as money, p.interval, p.interval_count, p.active
         from app_private.sync_stripe_price($1::jsonb, $2) p`,
        [JSON.stringify(stripePrice), fetchedAt],
      );
      plan = rows[0];
    } catch (error) {
      // One product's bad metadata does not stop the others.
      failed.push(`  ${stripePrice.id}: ${error instanceof Error ? error.message : String(error)}`);
      continue;
    }
    if (plan?.name == null) {
      const product = stripePrice.product;
      skipped.add(typeof product === "string" ? product : "deleted" in product && product.deleted ? product.id : `${product.name} (${product.id})`);
      continue;
    }
    const shown = `${plan.name.padEnd(24)} ${plan.money}${every(plan.interval, plan.interval_count)}`;
    lines.push(`  ${shown}${plan.active ? "" : " (not offered: product inactive or no longer marked as a plan)"}`);
  }
  const retired = await client.query<{ name: string }>(
    `update app_public.plans set price_active = false, price_synced_at = $2
     where stripe_price_id is not null and price_active and not (stripe_price_id = any($1))
       and (price_synced_at is null or price_synced_at <= $2)
     returning name`,
    [seen, fetchedAt],
  );
  console.log(`Synced ${lines.length} plan${lines.length === 1 ? "" : "s"} from Stripe:`);
  console.log(lines.length ? lines.join("\n") : '  (none: give a product recurring prices and the metadata plan = "true" in Stripe first)');
  if (skipped.size) console.log(`Skipped prices of products not marked as plans (metadata plan = "true"): ${[...skipped].join(", ")}.`);
  if (retired.rowCount) console.log(`No longer offered: ${retired.rows.map((r) => r.name).join(", ")}.`);
  if (failed.length) {
    console.error(`Not synced (fix these in Stripe, then run this again):\n${failed.join("\n")}`);
    return 1;
  }
  return 0;
}, (config) => (config.stripe.secretKey ? undefined : "STRIPE_SECRET_KEY is not set: there is no Stripe account to sync plans from."));
