import type { TestDatabase } from "./database.ts";

/**
 * Puts an organization on an active subscription to a plan without limits, so suites that are
 * not about plan limits can add members, projects and tasks freely (the free plan allows 3
 * projects and 5 members). Written as Stripe's sync would write it.
 */
export async function grantUnlimitedPlan(db: TestDatabase, organizationId: string): Promise<void> {
  const { rows } = await db.root.query<{ id: string }>(
    `insert into app_public.plans (stripe_product_id, stripe_price_id, name, amount, currency, interval, price_synced_at, product_synced_at)
     values ('prod_test_unlimited', 'price_test_unlimited', 'Unlimited (tests)', 100000, 'usd', 'month', now(), now())
     on conflict (stripe_price_id) do update set name = excluded.name
     returning id`,
  );
  await db.root.query(
    `insert into app_public.subscriptions (organization_id, stripe_subscription_id, plan_id, status, last_synced_at)
     values ($1, $2, $3, 'active', now())`,
    [organizationId, `sub_test_${organizationId.replaceAll("-", "")}`, rows[0]!.id],
  );
}
