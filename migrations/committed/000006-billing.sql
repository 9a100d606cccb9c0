--! Previous: sha1:aee11db7828e0ff0217067e044b84a03562b8ba4
--! Hash: sha1:b9648638b518dce9a9c3909300900ceb33c9bad2
--! Message: Billing

--------------------------------------------------------------------------------
-- Billing: plans synced from Stripe, one current subscription per organization,
-- the Stripe event ledger, and plan limits enforced by the database.
--
-- Stripe is the source of truth. The webhook only records an event in the
-- ledger (app_private.record_stripe_event) and queues a job keyed by the Stripe
-- object; the job re-fetches the object and hands it to the sync functions
-- below, which write it only when it is not older than what is held
-- (last_synced_at <= the fetch time), so duplicate, replayed and out-of-order
-- deliveries end in the same state. Emails follow state, not events: each is
-- recorded in app_private.billing_notices and sent once.
--
-- Organizations without a live paid subscription get the default (Free) plan's
-- limits; past_due keeps the paid limits for a grace period (the request
-- setting app.past_due_grace_seconds, 7 days unless the API says otherwise).
--------------------------------------------------------------------------------

drop function if exists app_private.cleanup_expired();
drop function if exists app_hidden.prepare_billing_portal(uuid);
drop function if exists app_hidden.save_checkout_session(uuid, text);
drop function if exists app_hidden.checkout_subscription_arrived(uuid, text);
drop function if exists app_hidden.save_stripe_customer(uuid, text, boolean);
drop function if exists app_hidden.prepare_checkout(uuid, uuid);
drop function if exists app_public.projects_tasks_remaining(app_public.projects);
drop function if exists app_public.organizations_current_subscription(app_public.organizations);
drop function if exists app_public.organizations_entitlements(app_public.organizations);
drop trigger if exists _060_plan_limit on app_public.organization_memberships;
drop trigger if exists _060_plan_limit on app_public.tasks;
drop trigger if exists _060_plan_limit on app_public.projects;
drop function if exists app_private.tg_memberships__plan_limit();
drop function if exists app_private.tg_tasks__plan_limit();
drop function if exists app_private.tg_projects__plan_limit();
drop function if exists app_private.plan_limit_reached(app_public.plans, text, int);
drop function if exists app_private.effective_plan(uuid);
drop function if exists app_private.stripe_sync_failed(text, timestamptz, text);
drop function if exists app_private.stripe_sync_done(text, timestamptz);
drop function if exists app_private.sync_stripe_invoice(jsonb, timestamptz);
drop function if exists app_private.sync_stripe_subscription(jsonb, timestamptz);
drop function if exists app_private.sync_stripe_product(jsonb, timestamptz);
drop function if exists app_private.sync_stripe_price(jsonb, timestamptz);
drop function if exists app_private.notify_owners(uuid, text, text, jsonb);
drop function if exists app_private.format_money(numeric, text);
drop function if exists app_private.stripe_plan_limit(jsonb, text, text);
drop function if exists app_private.record_stripe_event(jsonb);
drop function if exists app_private.stripe_time(jsonb);
drop table if exists app_private.billing_notices;
drop table if exists app_private.stripe_held_subscriptions;
drop table if exists app_private.stripe_events;
drop table if exists app_private.stripe_customers;
drop table if exists app_public.subscription_payment_details;
drop table if exists app_public.subscriptions cascade; -- with the plans policy that reads it
drop table if exists app_public.plans;
drop type if exists app_public.organization_entitlements;
drop type if exists app_public.subscription_status;
drop type if exists app_public.billing_interval;

--------------------------------------------------------------------------------
-- Plans
--------------------------------------------------------------------------------

create type app_public.billing_interval as enum ('day', 'week', 'month', 'year');
comment on type app_public.billing_interval is 'How often a plan is billed.';

create table app_public.plans (
  id uuid primary key default gen_random_uuid(),
  stripe_product_id text,
  stripe_price_id text unique,
  is_default boolean not null default false,
  name text not null constraint name_length check (length(btrim(name)) between 1 and 100),
  description text,
  amount bigint not null default 0 constraint amount_not_negative check (amount >= 0),
  currency text not null default 'usd' constraint currency_format check (currency ~ '^[a-z]{3}$'),
  interval app_public.billing_interval,
  interval_count int not null default 1,
  price_active boolean not null default true,
  product_active boolean not null default true,
  active boolean not null generated always as (price_active and product_active) stored,
  sort_order int not null default 0,
  max_projects int constraint max_projects_positive check (max_projects >= 0),
  max_members int constraint max_members_positive check (max_members >= 1),
  max_tasks_per_project int constraint max_tasks_positive check (max_tasks_per_project >= 0),
  price_synced_at timestamptz,
  product_synced_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint stripe_plan_has_both_ids check ((stripe_price_id is null) = (stripe_product_id is null)),
  constraint default_plan_is_free check (not is_default or (stripe_price_id is null and amount = 0))
);
create unique index plans_one_default_idx on app_public.plans (is_default) where is_default;
create index plans_stripe_product_id_idx on app_public.plans (stripe_product_id);
comment on constraint plans_stripe_price_id_key on app_public.plans is E'@behavior -*';
comment on table app_public.plans is
  E'@behavior -insert -update -delete\nWhat an organization can subscribe to, with the limits it grants. One row per Stripe price (kept in sync from Stripe), plus the built-in free plan every organization has without a paid subscription. Anyone may list active plans.';
comment on column app_public.plans.stripe_product_id is 'The Stripe product (prod_…); null for the built-in free plan.';
comment on column app_public.plans.stripe_price_id is 'The Stripe price (price_…); null for the built-in free plan.';
comment on column app_public.plans.is_default is 'The plan of every organization without a live paid subscription (the free plan).';
comment on column app_public.plans.name is 'Display name, from the Stripe product.';
comment on column app_public.plans.description is 'What the plan offers, from the Stripe product.';
comment on column app_public.plans.amount is E'@behavior +orderBy\nPrice per interval in the currency''s smallest unit (cents).';
comment on column app_public.plans.currency is 'Three-letter ISO currency code, lower case.';
comment on column app_public.plans.interval is 'Billing interval; null for the free plan.';
comment on column app_public.plans.interval_count is 'Number of intervals per billing period (3 with month: quarterly).';
comment on column app_public.plans.price_active is 'Whether Stripe still offers the price (active, recurring, not deleted).';
comment on column app_public.plans.product_active is 'Whether the Stripe product is active, not deleted and still marked as a plan (metadata plan = "true").';
comment on column app_public.plans.active is E'@behavior +filterBy +orderBy\nWhether the plan can be chosen now (its price and its product are both offered); existing subscriptions keep an inactive plan.';
comment on column app_public.plans.sort_order is E'@behavior +orderBy\nOrder on a pricing page, ascending (product metadata sort_order).';
comment on column app_public.plans.max_projects is 'Projects per organization; null means unlimited (product metadata max_projects: a number or "unlimited"; without it, the free plan''s limit).';
comment on column app_public.plans.max_members is 'Members per organization, pending invitations included; null means unlimited (product metadata max_members).';
comment on column app_public.plans.max_tasks_per_project is 'Tasks per project; null means unlimited (product metadata max_tasks_per_project).';
comment on column app_public.plans.price_synced_at is 'When the price''s fields were last written from Stripe; older data never overwrites newer.';
comment on column app_public.plans.product_synced_at is 'When the product''s fields (name, description, limits, availability) were last written from Stripe.';

create trigger _100_timestamps before insert or update on app_public.plans
  for each row execute function app_private.tg__timestamps();

insert into app_public.plans (is_default, name, description, amount, currency, sort_order, max_projects, max_members, max_tasks_per_project)
  values (true, 'Free', 'For small teams getting started.', 0, 'usd', 0, 3, 5, 250);


--------------------------------------------------------------------------------
-- Subscriptions
--------------------------------------------------------------------------------

create type app_public.subscription_status as enum
  ('incomplete', 'incomplete_expired', 'trialing', 'active', 'past_due', 'canceled', 'unpaid', 'paused');
comment on type app_public.subscription_status is 'Stripe''s status of a subscription.';

create table app_public.subscriptions (
  id uuid primary key default gen_random_uuid(),
  organization_id uuid not null references app_public.organizations on delete cascade,
  stripe_subscription_id text not null unique,
  plan_id uuid references app_public.plans on delete set null,
  status app_public.subscription_status not null,
  current_period_start timestamptz,
  current_period_end timestamptz,
  cancel_at_period_end boolean not null default false,
  cancel_at timestamptz,
  canceled_at timestamptz,
  ended_at timestamptz,
  trial_start timestamptz,
  trial_end timestamptz,
  past_due_since timestamptz,
  last_synced_at timestamptz not null,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
create index subscriptions_organization_id_idx on app_public.subscriptions (organization_id);
comment on constraint subscriptions_stripe_subscription_id_key on app_public.subscriptions is E'@behavior -*';
create index subscriptions_plan_id_idx on app_public.subscriptions (plan_id);
-- A subscription Stripe still bills (or may bill) is "current"; an organization has at most one.
create unique index subscriptions_one_current_idx on app_public.subscriptions (organization_id)
  where status in ('incomplete', 'trialing', 'active', 'past_due', 'unpaid', 'paused');
comment on table app_public.subscriptions is
  E'@name organization_subscriptions\n@behavior -insert -update -delete\nAn organization''s Stripe subscription, kept in sync from Stripe (nobody writes it through the API). Members see their organization''s; at most one is current at a time.';
comment on column app_public.subscriptions.stripe_subscription_id is 'The Stripe subscription (sub_…); not exposed through the API.';
comment on column app_public.subscriptions.plan_id is 'The plan subscribed to.';
comment on column app_public.subscriptions.status is 'Stripe''s status: trialing and active grant the plan; past_due keeps it for a grace period; anything else falls back to the free plan.';
comment on column app_public.subscriptions.current_period_start is 'Start of the period paid for.';
comment on column app_public.subscriptions.current_period_end is 'End of the period paid for: the next renewal.';
comment on column app_public.subscriptions.cancel_at_period_end is 'True when the subscription ends at current_period_end instead of renewing.';
comment on column app_public.subscriptions.cancel_at is 'When the subscription is set to end, if it is.';
comment on column app_public.subscriptions.canceled_at is 'When cancellation was requested.';
comment on column app_public.subscriptions.ended_at is 'When the subscription ended.';
comment on column app_public.subscriptions.trial_start is 'Start of the trial, if any.';
comment on column app_public.subscriptions.trial_end is 'End of the trial, if any.';
comment on column app_public.subscriptions.past_due_since is 'Since when a renewal payment has been failing (status past_due); the grace period runs from here.';
comment on column app_public.subscriptions.last_synced_at is 'When this row was last written from Stripe; older data never overwrites newer.';

create trigger _100_timestamps before insert or update on app_public.subscriptions
  for each row execute function app_private.tg__timestamps();

create table app_public.subscription_payment_details (
  subscription_id uuid primary key references app_public.subscriptions on delete cascade,
  organization_id uuid not null references app_public.organizations on delete cascade,
  latest_invoice_status text,
  latest_invoice_amount_due bigint,
  latest_invoice_currency text,
  latest_invoice_url text,
  latest_invoice_created_at timestamptz,
  payment_attempts int,
  next_payment_attempt timestamptz,
  card_brand text,
  card_last4 text,
  card_exp_month int,
  card_exp_year int,
  last_synced_at timestamptz not null,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
create index subscription_payment_details_organization_id_idx on app_public.subscription_payment_details (organization_id);
comment on table app_public.subscription_payment_details is
  E'@behavior -insert -update -delete\nThe latest invoice and the card on file of a subscription. Only owners and admins of the organization see it.';
comment on column app_public.subscription_payment_details.latest_invoice_status is 'draft, open, paid, uncollectible or void.';
comment on column app_public.subscription_payment_details.latest_invoice_amount_due is 'Amount due in the currency''s smallest unit.';
comment on column app_public.subscription_payment_details.latest_invoice_url is 'Stripe''s page to view and pay the invoice.';
comment on column app_public.subscription_payment_details.payment_attempts is 'How many times Stripe tried to collect the latest invoice.';
comment on column app_public.subscription_payment_details.next_payment_attempt is 'When Stripe tries again, if it will.';
comment on column app_public.subscription_payment_details.card_brand is 'Brand of the default card (visa, mastercard…).';
comment on column app_public.subscription_payment_details.card_last4 is 'Last four digits of the default card.';
comment on constraint subscription_payment_details_subscription_id_fkey on app_public.subscription_payment_details is
  E'@fieldName subscription\n@foreignFieldName paymentDetails';

create trigger _100_timestamps before insert or update on app_public.subscription_payment_details
  for each row execute function app_private.tg__timestamps();

alter table app_public.subscriptions enable row level security;
create policy select_member on app_public.subscriptions for select
  using (organization_id in (select app_hidden.current_user_organization_ids()) or (select app_public.current_user_is_admin()));
grant select (id, organization_id, plan_id, status, current_period_start, current_period_end, cancel_at_period_end,
  cancel_at, canceled_at, ended_at, trial_start, trial_end, past_due_since, last_synced_at, created_at, updated_at)
  on app_public.subscriptions to :DATABASE_ANONYMOUS, :DATABASE_USER;

alter table app_public.subscription_payment_details enable row level security;
create policy select_manager on app_public.subscription_payment_details for select
  using (app_hidden.current_user_manages(organization_id) or (select app_public.current_user_is_admin()));
grant select on app_public.subscription_payment_details to :DATABASE_ANONYMOUS, :DATABASE_USER;

alter table app_public.plans enable row level security;
-- A retired plan stays visible to the organizations still subscribed to it.
create policy select_active on app_public.plans for select
  using (active or (select app_public.current_user_is_admin())
    or id in (select s.plan_id from app_public.subscriptions s where s.organization_id in (select app_hidden.current_user_organization_ids())));
grant select (id, is_default, name, description, amount, currency, interval, interval_count, active, sort_order,
  max_projects, max_members, max_tasks_per_project, created_at, updated_at)
  on app_public.plans to :DATABASE_ANONYMOUS, :DATABASE_USER;

--------------------------------------------------------------------------------
-- Private billing state: customers, the event ledger, notices sent
--------------------------------------------------------------------------------

create table app_private.stripe_customers (
  organization_id uuid primary key references app_public.organizations on delete cascade,
  stripe_customer_id text not null unique,
  checkout_session_id text,
  created_at timestamptz not null default now()
);
comment on table app_private.stripe_customers is 'The Stripe customer (cus_…) that pays for each organization; made on its first checkout.';
comment on column app_private.stripe_customers.checkout_session_id is 'The newest checkout session (cs_…); a new checkout expires it, so two cannot both end in a subscription.';
alter table app_private.stripe_customers enable row level security;

create table app_private.stripe_events (
  id text primary key constraint id_format check (id ~ '^evt_[A-Za-z0-9_]{1,250}$'),
  type text not null,
  object_id text,
  livemode boolean not null,
  created timestamptz not null,
  received_at timestamptz not null default now(),
  processed_at timestamptz,
  attempts int not null default 0,
  last_error text,
  payload jsonb
);
create index stripe_events_object_id_idx on app_private.stripe_events (object_id, created);
create index stripe_events_unprocessed_idx on app_private.stripe_events (received_at) where processed_at is null;
comment on table app_private.stripe_events is
  'Every Stripe event received (a redelivery adds nothing), what became of it and, for 90 days, its payload. Stripe''s own retries and replays are harmless: the work re-fetches objects.';
comment on column app_private.stripe_events.object_id is 'The Stripe object the event is about (data.object.id); the sync job for it is keyed by this id.';
comment on column app_private.stripe_events.processed_at is 'When the object it is about was synced (or, for a type we do not act on, when it arrived).';
comment on column app_private.stripe_events.attempts is 'How many sync attempts failed for it so far.';
comment on column app_private.stripe_events.last_error is 'Why the latest attempt failed.';
alter table app_private.stripe_events enable row level security;

create table app_private.billing_notices (
  kind text not null,
  key text not null,
  organization_id uuid references app_public.organizations on delete cascade,
  sent_at timestamptz not null default now(),
  primary key (kind, key)
);
comment on table app_private.billing_notices is
  'Billing emails already queued (payment failed per invoice attempt, trial ending per trial, subscription canceled), so none goes out twice.';
alter table app_private.billing_notices enable row level security;

create table app_private.stripe_held_subscriptions (
  stripe_subscription_id text primary key,
  organization_id uuid not null references app_public.organizations on delete cascade,
  current_stripe_subscription_id text not null,
  held_since timestamptz not null default now()
);
create index stripe_held_subscriptions_organization_id_idx on app_private.stripe_held_subscriptions (organization_id);
comment on table app_private.stripe_held_subscriptions is
  'Live Stripe subscriptions not written because their organization already had a current one (Stripe bills both until a person cancels one). When the current one ends, these are synced again.';
alter table app_private.stripe_held_subscriptions enable row level security;

--------------------------------------------------------------------------------
-- The effective plan and its limits
--------------------------------------------------------------------------------

create function app_private.effective_plan(organization_id uuid,
  out plan app_public.plans, out status app_public.subscription_status, out grace_ends_at timestamptz)
language plpgsql stable
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_subscription app_public.subscriptions;
  v_grace interval := make_interval(secs => coalesce(nullif(pg_catalog.current_setting('app.past_due_grace_seconds', true), '')::int, 604800));
begin
  select * into v_subscription from app_public.subscriptions s
    where s.organization_id = effective_plan.organization_id
      and s.status in ('incomplete', 'trialing', 'active', 'past_due', 'unpaid', 'paused');
  status := v_subscription.status;
  if v_subscription.status = 'past_due' then
    grace_ends_at := v_subscription.past_due_since + v_grace;
  end if;
  if v_subscription.plan_id is not null
    and (v_subscription.status in ('trialing', 'active') or (v_subscription.status = 'past_due' and grace_ends_at > now()))
  then
    select * into plan from app_public.plans p where p.id = v_subscription.plan_id;
  end if;
  if plan.id is null then
    select * into plan from app_public.plans p where p.is_default;
  end if;
end;
$$;
comment on function app_private.effective_plan(uuid) is
  'The plan whose limits apply to an organization now: its subscription''s while trialing or active (or past_due within the grace period), else the default (free) plan; with the subscription status and when the grace period ends.';

create function app_private.plan_limit_reached(plan app_public.plans, what text, allowed int) returns void
language plpgsql stable
set search_path = pg_catalog, public, pg_temp
as $$
begin
  raise exception 'Your % plan allows % %; upgrade to add more.', plan.name, allowed, what
    using errcode = 'OSPLN', detail = 'plan_limit_reached';
end;
$$;
comment on function app_private.plan_limit_reached(app_public.plans, text, int) is 'Raises plan_limit_reached naming the plan and the limit.';

create function app_private.tg_projects__plan_limit() returns trigger
language plpgsql security definer
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_plan app_public.plans;
begin
  -- Someone who may not create projects here is refused by row-level security, not told the plan.
  if app_public.current_user_id() is not null and app_hidden.current_user_role_in(new.organization_id) is null then
    return new;
  end if;
  v_plan := (app_private.effective_plan(new.organization_id)).plan;
  if v_plan.max_projects is null then
    return new;
  end if;
  -- Racing inserts take turns, so the last free slot goes to one of them.
  perform app_private.lock_organization(new.organization_id);
  if (select count(*) from app_public.projects p where p.organization_id = new.organization_id) >= v_plan.max_projects then
    perform app_private.plan_limit_reached(v_plan, 'projects', v_plan.max_projects);
  end if;
  return new;
end;
$$;
comment on function app_private.tg_projects__plan_limit() is 'Trigger: refuses a project beyond the organization''s plan (plan_limit_reached).';
create trigger _060_plan_limit before insert on app_public.projects
  for each row execute function app_private.tg_projects__plan_limit();

create function app_private.tg_tasks__plan_limit() returns trigger
language plpgsql security definer
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_plan app_public.plans;
begin
  if app_public.current_user_id() is not null and app_hidden.current_user_role_in(new.organization_id) is null then
    return new;
  end if;
  v_plan := (app_private.effective_plan(new.organization_id)).plan;
  if v_plan.max_tasks_per_project is null then
    return new;
  end if;
  -- The project's position lock (taken by _050_before_write) makes racing inserts take turns.
  if (select count(*) from app_public.tasks t where t.project_id = new.project_id) >= v_plan.max_tasks_per_project then
    perform app_private.plan_limit_reached(v_plan, 'tasks per project', v_plan.max_tasks_per_project);
  end if;
  return new;
end;
$$;
comment on function app_private.tg_tasks__plan_limit() is 'Trigger: refuses a task beyond the plan''s tasks per project (plan_limit_reached).';
create trigger _060_plan_limit before insert on app_public.tasks
  for each row execute function app_private.tg_tasks__plan_limit();

create function app_private.tg_memberships__plan_limit() returns trigger
language plpgsql security definer
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_plan app_public.plans := (app_private.effective_plan(new.organization_id)).plan;
begin
  if v_plan.max_members is null then
    return new;
  end if;
  perform app_private.lock_organization(new.organization_id);
  if (select count(*) from app_public.organization_memberships m where m.organization_id = new.organization_id) >= v_plan.max_members then
    perform app_private.plan_limit_reached(v_plan, 'members', v_plan.max_members);
  end if;
  return new;
end;
$$;
comment on function app_private.tg_memberships__plan_limit() is 'Trigger: refuses a member beyond the organization''s plan (plan_limit_reached).';
create trigger _060_plan_limit before insert on app_public.organization_memberships
  for each row execute function app_private.tg_memberships__plan_limit();

-- Inviting counts pending invitations too, so a team cannot invite past its plan and find out
-- only when people accept.
create or replace function app_public.invite_to_organization(organization_id uuid, email citext, role app_public.organization_role default 'member')
returns app_public.organization_invitations
language plpgsql volatile security definer
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_my_role app_public.organization_role;
  v_invitation app_public.organization_invitations;
  v_plan app_public.plans;
begin
  perform app_private.require_role(invite_to_organization.organization_id, '{owner,admin}', 'invite people');
  perform app_private.lock_organization(invite_to_organization.organization_id);
  v_my_role := app_private.require_role(invite_to_organization.organization_id, '{owner,admin}', 'invite people');
  if invite_to_organization.role = 'owner' and v_my_role <> 'owner' then
    raise exception 'Only owners can invite new owners.' using errcode = 'OS403';
  end if;
  if exists (
    select 1 from app_public.organization_memberships m join app_public.users u on u.id = m.user_id
    where m.organization_id = invite_to_organization.organization_id and u.email = btrim(invite_to_organization.email)::citext
  ) then
    raise exception '% is already a member.', btrim(invite_to_organization.email) using errcode = 'OS409', detail = 'already_member';
  end if;
  -- Inviting again replaces the pending invitation (new link, new expiry).
  delete from app_public.organization_invitations i
    where i.organization_id = invite_to_organization.organization_id
      and i.email = btrim(invite_to_organization.email)::citext and i.accepted_at is null;
  v_plan := (app_private.effective_plan(invite_to_organization.organization_id)).plan;
  if v_plan.max_members is not null and (
    (select count(*) from app_public.organization_memberships m where m.organization_id = invite_to_organization.organization_id)
    + (select count(*) from app_public.organization_invitations i
       where i.organization_id = invite_to_organization.organization_id and i.accepted_at is null and i.expires_at > now())
  ) >= v_plan.max_members then
    perform app_private.plan_limit_reached(v_plan, 'members (pending invitations included)', v_plan.max_members);
  end if;
  insert into app_public.organization_invitations (organization_id, email, role, invited_by)
    values (invite_to_organization.organization_id, btrim(invite_to_organization.email), invite_to_organization.role, app_public.current_user_id())
    returning * into v_invitation;
  perform graphile_worker.add_job('organizations__send_invitation', json_build_object('id', v_invitation.id), max_attempts := 10);
  return v_invitation;
end;
$$;
comment on function app_public.invite_to_organization(uuid, citext, app_public.organization_role) is
  E'@resultFieldName invitation\nEmails an invitation to join the organization (owners and admins; only owners invite owners). Inviting the same address again sends a fresh link. Members and pending invitations together stay within the plan.';

--------------------------------------------------------------------------------
-- Entitlements: what the frontend may offer, without guessing
--------------------------------------------------------------------------------

create type app_public.organization_entitlements as (
  plan_id uuid,
  plan_name text,
  subscription_status app_public.subscription_status,
  grace_ends_at timestamptz,
  max_projects int,
  projects int,
  can_create_project boolean,
  max_members int,
  members int,
  pending_invitations int,
  can_invite_member boolean,
  max_tasks_per_project int
);
comment on type app_public.organization_entitlements is 'The plan that applies to an organization now, its limits, what is used, and what may still be added.';
comment on column app_public.organization_entitlements.plan_id is 'The plan whose limits apply now.';
comment on column app_public.organization_entitlements.subscription_status is 'The current subscription''s status; null without one.';
comment on column app_public.organization_entitlements.grace_ends_at is 'For a past_due subscription: when its paid limits stop applying.';
comment on column app_public.organization_entitlements.max_projects is 'Null means unlimited.';
comment on column app_public.organization_entitlements.max_members is 'Null means unlimited; pending invitations count.';
comment on column app_public.organization_entitlements.max_tasks_per_project is 'Null means unlimited; see Project.tasksRemaining.';

create function app_public.organizations_entitlements(o app_public.organizations) returns app_public.organization_entitlements
language plpgsql stable security definer
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_effective record := app_private.effective_plan(o.id);
  v_result app_public.organization_entitlements;
begin
  if app_hidden.current_user_role_in(o.id) is null and not app_public.current_user_is_admin() then
    return null;
  end if;
  v_result.plan_id := (v_effective.plan).id;
  v_result.plan_name := (v_effective.plan).name;
  v_result.subscription_status := v_effective.status;
  v_result.grace_ends_at := v_effective.grace_ends_at;
  v_result.max_projects := (v_effective.plan).max_projects;
  v_result.projects := (select count(*) from app_public.projects p where p.organization_id = o.id);
  v_result.can_create_project := v_result.max_projects is null or v_result.projects < v_result.max_projects;
  v_result.max_members := (v_effective.plan).max_members;
  v_result.members := (select count(*) from app_public.organization_memberships m where m.organization_id = o.id);
  v_result.pending_invitations := (select count(*) from app_public.organization_invitations i
    where i.organization_id = o.id and i.accepted_at is null and i.expires_at > now());
  v_result.can_invite_member := v_result.max_members is null or v_result.members + v_result.pending_invitations < v_result.max_members;
  v_result.max_tasks_per_project := (v_effective.plan).max_tasks_per_project;
  return v_result;
end;
$$;
comment on function app_public.organizations_entitlements(app_public.organizations) is
  'The plan that applies now, its limits, what is used and whether each kind of thing may still be added, so a frontend can grey out buttons without guessing. Members and site administrators only.';
grant execute on function app_public.organizations_entitlements(app_public.organizations) to :DATABASE_ANONYMOUS, :DATABASE_USER;

create function app_public.organizations_current_subscription(o app_public.organizations) returns app_public.subscriptions
language sql stable security definer
set search_path = pg_catalog, public, pg_temp
as $$
  -- The same rule as the subscriptions policy, checked here so the answer does not depend on
  -- how the caller reached the organization row.
  select s.* from app_public.subscriptions s
  where s.organization_id = o.id and s.status in ('incomplete', 'trialing', 'active', 'past_due', 'unpaid', 'paused')
    and (app_hidden.current_user_role_in(o.id) is not null or app_public.current_user_is_admin());
$$;
comment on function app_public.organizations_current_subscription(app_public.organizations) is
  'The organization''s current subscription (the one Stripe bills), or null on the free plan. Members and site administrators only.';
grant execute on function app_public.organizations_current_subscription(app_public.organizations) to :DATABASE_ANONYMOUS, :DATABASE_USER;

create function app_public.projects_tasks_remaining(p app_public.projects) returns int
language plpgsql stable security definer
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_plan app_public.plans;
begin
  if app_hidden.current_user_role_in(p.organization_id) is null and not app_public.current_user_is_admin() then
    return null;
  end if;
  v_plan := (app_private.effective_plan(p.organization_id)).plan;
  if v_plan.max_tasks_per_project is null then
    return null;
  end if;
  return greatest(0, v_plan.max_tasks_per_project - (select count(*) from app_public.tasks t where t.project_id = p.id)::int);
end;
$$;
comment on function app_public.projects_tasks_remaining(app_public.projects) is
  'How many more tasks this project may hold on the organization''s plan; null means unlimited.';
grant execute on function app_public.projects_tasks_remaining(app_public.projects) to :DATABASE_ANONYMOUS, :DATABASE_USER;

--------------------------------------------------------------------------------
-- The ledger and the jobs it queues
--------------------------------------------------------------------------------

create function app_private.stripe_time(value jsonb) returns timestamptz
language sql immutable
set search_path = pg_catalog, public, pg_temp
as $$
  select case when value is null or jsonb_typeof(value) <> 'number' then null else to_timestamp((value #>> '{}')::numeric) end;
$$;
comment on function app_private.stripe_time(jsonb) is 'A Stripe timestamp (seconds since the epoch, or null) as timestamptz.';

create function app_private.record_stripe_event(event jsonb) returns boolean
language plpgsql volatile
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_type text := event ->> 'type';
  v_object jsonb := event -> 'data' -> 'object';
  v_task text;
  v_object_id text;
begin
  -- Which object to re-fetch, and how. Anything else is recorded and needs no work.
  v_task := case
    when v_type like 'customer.subscription.%' then 'stripe__sync_subscription'
    when v_type like 'checkout.session.%' and v_object ->> 'mode' = 'subscription' and v_object ->> 'subscription' is not null then 'stripe__sync_subscription'
    when v_type like 'invoice.%' then 'stripe__sync_invoice'
    when v_type like 'product.%' then 'stripe__sync_product'
    when v_type like 'price.%' then 'stripe__sync_price'
  end;
  v_object_id := case when v_type like 'checkout.session.%' then v_object ->> 'subscription' else v_object ->> 'id' end;

  insert into app_private.stripe_events (id, type, object_id, livemode, created, payload, processed_at)
    values (event ->> 'id', v_type, v_object_id, coalesce((event ->> 'livemode')::boolean, false),
      app_private.stripe_time(event -> 'created'), event, case when v_task is null or v_object_id is null then now() end)
    on conflict (id) do nothing;
  if not found then
    return false;
  end if;
  if v_task is not null and v_object_id is not null then
    -- One job per Stripe object: a burst of events for it collapses into one re-fetch.
    perform graphile_worker.add_job(v_task, json_build_object('id', v_object_id),
      job_key := 'stripe:' || v_object_id, job_key_mode := 'replace', max_attempts := 12);
  end if;
  return true;
end;
$$;
comment on function app_private.record_stripe_event(jsonb) is
  'Stores a verified Stripe event once (false when it was already there) and queues the re-fetch of its object, keyed by the object id.';

create function app_private.stripe_sync_done(object_id text, fetched_at timestamptz) returns void
language sql volatile
set search_path = pg_catalog, public, pg_temp
as $$
  update app_private.stripe_events e set processed_at = now(), last_error = null
    where e.object_id = stripe_sync_done.object_id and e.processed_at is null and e.received_at <= stripe_sync_done.fetched_at;
$$;
comment on function app_private.stripe_sync_done(text, timestamptz) is 'Marks the events about an object as processed once a fetch made after they arrived has been synced.';

create function app_private.stripe_sync_failed(object_id text, fetched_at timestamptz, error text) returns void
language sql volatile
set search_path = pg_catalog, public, pg_temp
as $$
  update app_private.stripe_events e set attempts = e.attempts + 1, last_error = left(stripe_sync_failed.error, 2000)
    where e.object_id = stripe_sync_failed.object_id and e.processed_at is null and e.received_at <= stripe_sync_failed.fetched_at;
$$;
comment on function app_private.stripe_sync_failed(text, timestamptz, text) is 'Records a failed sync attempt on the events about an object.';

--------------------------------------------------------------------------------
-- Sync functions: Stripe objects in, rows out, never older over newer
--------------------------------------------------------------------------------

create function app_private.stripe_plan_limit(metadata jsonb, key text, product_id text) returns int
language plpgsql stable
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_value text := nullif(btrim(metadata ->> key), '');
  v_default int;
begin
  if v_value is null then
    -- Not set on the product: the free plan's limit, as it is now.
    select case key when 'max_projects' then p.max_projects when 'max_members' then p.max_members
        when 'max_tasks_per_project' then p.max_tasks_per_project end
      into v_default from app_public.plans p where p.is_default;
    return v_default;
  end if;
  if lower(v_value) = 'unlimited' then
    return null;
  end if;
  if v_value !~ '^[0-9]{1,9}$' then
    raise exception 'Stripe product %: metadata % must be a whole number or "unlimited", not "%".', product_id, key, v_value;
  end if;
  if key = 'max_members' and v_value::int < 1 then
    raise exception 'Stripe product %: metadata max_members must be at least 1 (the owner counts), not "%".', product_id, v_value;
  end if;
  return v_value::int;
end;
$$;
comment on function app_private.stripe_plan_limit(jsonb, text, text) is
  'A plan limit from Stripe product metadata: a whole number, "unlimited" (null), or, when the key is missing, the free plan''s limit.';

create function app_private.sync_stripe_product(product jsonb, fetched_at timestamptz) returns int
language plpgsql volatile
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_metadata jsonb := coalesce(product -> 'metadata', '{}');
  -- Only products marked as plans (metadata plan = "true") are offered: the same Stripe account
  -- may sell other things.
  v_offered boolean := coalesce((product ->> 'active')::boolean, false) and not coalesce((product ->> 'deleted')::boolean, false)
    and coalesce(v_metadata ->> 'plan' = 'true', false);
  v_count int;
begin
  -- Price and product syncs of one product write the same rows: one at a time.
  perform pg_advisory_xact_lock(hashtextextended('stripe product ' || (product ->> 'id'), 0));
  update app_public.plans p set
    name = coalesce(left(nullif(btrim(product ->> 'name'), ''), 100), p.name),
    description = case when product ? 'description' then product ->> 'description' else p.description end,
    product_active = v_offered,
    sort_order = case when v_metadata ->> 'sort_order' ~ '^-?[0-9]{1,9}$' then (v_metadata ->> 'sort_order')::int else p.sort_order end,
    -- A product that is no longer offered keeps the limits its subscribers have.
    max_projects = case when v_offered then app_private.stripe_plan_limit(v_metadata, 'max_projects', product ->> 'id') else p.max_projects end,
    max_members = case when v_offered then app_private.stripe_plan_limit(v_metadata, 'max_members', product ->> 'id') else p.max_members end,
    max_tasks_per_project = case when v_offered then app_private.stripe_plan_limit(v_metadata, 'max_tasks_per_project', product ->> 'id')
      else p.max_tasks_per_project end,
    product_synced_at = fetched_at
  where p.stripe_product_id = product ->> 'id' and (p.product_synced_at is null or p.product_synced_at <= fetched_at);
  get diagnostics v_count = row_count;
  return v_count;
end;
$$;
comment on function app_private.sync_stripe_product(jsonb, timestamptz) is
  'Writes a Stripe product''s name, description, limits and availability to the plans of its prices, unless a newer sync already did: a deleted or inactive product, or one no longer marked as a plan (metadata plan = "true"), makes them inactive. Returns how many plans.';

create function app_private.sync_stripe_price(price jsonb, fetched_at timestamptz) returns app_public.plans
language plpgsql volatile
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_product jsonb := case when jsonb_typeof(price -> 'product') = 'object' then price -> 'product' end;
  v_metadata jsonb := coalesce(v_product -> 'metadata', '{}');
  -- A plan is a flat recurring price: one unit per period, not metered or tiered.
  v_plan_price boolean := coalesce(price ->> 'type' = 'recurring' and jsonb_typeof(price -> 'recurring') = 'object'
    and coalesce(price ->> 'billing_scheme', 'per_unit') = 'per_unit'
    and coalesce(price -> 'recurring' ->> 'usage_type', 'licensed') = 'licensed', false);
  v_plan app_public.plans;
begin
  if coalesce((price ->> 'deleted')::boolean, false) then
    -- Stripe no longer has the price.
    update app_public.plans p set price_active = false, price_synced_at = fetched_at
      where p.stripe_price_id = price ->> 'id' and (p.price_synced_at is null or p.price_synced_at <= fetched_at);
    select * into v_plan from app_public.plans p where p.stripe_price_id = price ->> 'id';
    return v_plan;
  end if;
  if v_product is null then
    raise exception 'sync_stripe_price needs the price with its product expanded';
  end if;
  perform pg_advisory_xact_lock(hashtextextended('stripe product ' || (v_product ->> 'id'), 0));

  -- The price's own fields; a plan that stops qualifying stays (subscriptions refer to it) but
  -- is no longer offered.
  update app_public.plans p set
    amount = coalesce((price ->> 'unit_amount')::bigint, 0), currency = lower(price ->> 'currency'),
    interval = coalesce((price -> 'recurring' ->> 'interval')::app_public.billing_interval, p.interval),
    interval_count = coalesce((price -> 'recurring' ->> 'interval_count')::int, p.interval_count),
    price_active = coalesce((price ->> 'active')::boolean, false) and v_plan_price,
    price_synced_at = fetched_at
  where p.stripe_price_id = price ->> 'id' and (p.price_synced_at is null or p.price_synced_at <= fetched_at);

  if not exists (select 1 from app_public.plans p where p.stripe_price_id = price ->> 'id') then
    -- A price becomes a plan when it is a plan price and its product is marked as one.
    if not (v_plan_price and coalesce(v_metadata ->> 'plan' = 'true', false)) then
      return null;
    end if;
    insert into app_public.plans (stripe_product_id, stripe_price_id, name, amount, currency, interval, interval_count,
        price_active, product_active, price_synced_at)
      values (v_product ->> 'id', price ->> 'id', price ->> 'id', coalesce((price ->> 'unit_amount')::bigint, 0), lower(price ->> 'currency'),
        (price -> 'recurring' ->> 'interval')::app_public.billing_interval, coalesce((price -> 'recurring' ->> 'interval_count')::int, 1),
        coalesce((price ->> 'active')::boolean, false), false, fetched_at)
      on conflict (stripe_price_id) do nothing;
  end if;
  -- Name, description, limits and availability are the product's.
  perform app_private.sync_stripe_product(v_product, fetched_at);
  select * into v_plan from app_public.plans p where p.stripe_price_id = price ->> 'id';
  return v_plan;
end;
$$;
comment on function app_private.sync_stripe_price(jsonb, timestamptz) is
  'Upserts the plan of a Stripe price (with its product expanded), unless a newer sync already wrote it. Only flat recurring prices (per unit, licensed) of products with metadata plan = "true" become plans; limits come from the product''s metadata max_projects, max_members and max_tasks_per_project (a number or "unlimited"; missing: the free plan''s), the order from sort_order. Returns the plan, or null for a price that is not one.';

create function app_private.format_money(amount numeric, currency text) returns text
language sql immutable
set search_path = pg_catalog, public, pg_temp
as $$
  -- Stripe amounts are in the currency's smallest unit: most have 2 decimals, some none, a few 3.
  select case
    when lower(currency) in ('bif', 'clp', 'djf', 'gnf', 'jpy', 'kmf', 'krw', 'mga', 'pyg', 'rwf', 'ugx', 'vnd', 'vuv', 'xaf', 'xof', 'xpf')
      then to_char(amount, 'FM999999999999990')
    when lower(currency) in ('bhd', 'jod', 'kwd', 'omr', 'tnd') then to_char(amount / 1000, 'FM999999999990.000')
    else to_char(amount / 100, 'FM999999999990.00')
  end || ' ' || upper(currency);
$$;
comment on function app_private.format_money(numeric, text) is 'An amount in a currency''s smallest unit, written for people: 2000 usd is "20.00 USD", 500 jpy is "500 JPY".';

create function app_private.notify_owners(organization_id uuid, kind text, key text, variables jsonb) returns boolean
language plpgsql volatile
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_owner record;
begin
  insert into app_private.billing_notices (kind, key, organization_id) values (notify_owners.kind, notify_owners.key, notify_owners.organization_id)
    on conflict on constraint billing_notices_pkey do nothing;
  if not found then
    return false;
  end if;
  for v_owner in
    select u.email, u.name, o.name as organization_name from app_public.organization_memberships m
      join app_public.users u on u.id = m.user_id join app_public.organizations o on o.id = m.organization_id
      where m.organization_id = notify_owners.organization_id and m.role = 'owner'
  loop
    perform graphile_worker.add_job('send_email', json_build_object(
      'to', v_owner.email, 'template', notify_owners.kind,
      'variables', variables || jsonb_build_object('name', v_owner.name, 'organizationName', v_owner.organization_name,
        'billingLink', '/billing?organization=' || notify_owners.organization_id)
    ), max_attempts := 10);
  end loop;
  return true;
end;
$$;
comment on function app_private.notify_owners(uuid, text, text, jsonb) is
  'Queues a billing email (template `kind`) to every owner of the organization, once per (kind, key); false when it was already sent.';

create function app_private.sync_stripe_invoice(invoice jsonb, fetched_at timestamptz) returns text
language plpgsql volatile
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_subscription_id text := coalesce(invoice -> 'parent' -> 'subscription_details' ->> 'subscription', invoice ->> 'subscription');
  v_subscription app_public.subscriptions;
  v_created timestamptz := app_private.stripe_time(invoice -> 'created');
begin
  select * into v_subscription from app_public.subscriptions s where s.stripe_subscription_id = v_subscription_id;
  if v_subscription.id is null then
    return 'unattributed';
  end if;
  insert into app_public.subscription_payment_details as d (subscription_id, organization_id, latest_invoice_status,
      latest_invoice_amount_due, latest_invoice_currency, latest_invoice_url, latest_invoice_created_at, payment_attempts,
      next_payment_attempt, last_synced_at)
    values (v_subscription.id, v_subscription.organization_id, invoice ->> 'status', (invoice ->> 'amount_due')::bigint,
      invoice ->> 'currency', invoice ->> 'hosted_invoice_url', v_created, (invoice ->> 'attempt_count')::int,
      app_private.stripe_time(invoice -> 'next_payment_attempt'), fetched_at)
  on conflict (subscription_id) do update set
    latest_invoice_status = excluded.latest_invoice_status, latest_invoice_amount_due = excluded.latest_invoice_amount_due,
    latest_invoice_currency = excluded.latest_invoice_currency, latest_invoice_url = excluded.latest_invoice_url,
    latest_invoice_created_at = excluded.latest_invoice_created_at, payment_attempts = excluded.payment_attempts,
    next_payment_attempt = excluded.next_payment_attempt, last_synced_at = excluded.last_synced_at
    -- An older invoice never replaces a newer one, and an invoice never goes back in time.
    where d.latest_invoice_created_at is null or excluded.latest_invoice_created_at > d.latest_invoice_created_at
      or (excluded.latest_invoice_created_at = d.latest_invoice_created_at and d.last_synced_at <= excluded.last_synced_at);

  -- An open invoice Stripe already tried to collect: a payment failed (or needs the customer's
  -- action, such as confirming with their bank on the invoice page). Tell the owners once per attempt.
  if invoice ->> 'status' = 'open' and coalesce((invoice ->> 'attempt_count')::int, 0) > 0 then
    perform app_private.notify_owners(v_subscription.organization_id, 'payment_failed',
      (invoice ->> 'id') || ':' || (invoice ->> 'attempt_count'),
      jsonb_build_object('amount', app_private.format_money(coalesce((invoice ->> 'amount_due')::numeric, 0), coalesce(invoice ->> 'currency', 'usd')),
        'nextAttempt', coalesce(to_char(app_private.stripe_time(invoice -> 'next_payment_attempt'), 'YYYY-MM-DD'), '')));
  end if;
  return 'updated';
end;
$$;
comment on function app_private.sync_stripe_invoice(jsonb, timestamptz) is
  'Writes the latest invoice of a subscription (never an older invoice over a newer) and emails owners once per failed collection attempt (pointing to the billing page, which shows latestInvoiceUrl). Returns updated, or unattributed when the subscription is not held yet.';

create function app_private.sync_stripe_subscription(subscription jsonb, fetched_at timestamptz) returns text
language plpgsql volatile
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_customer jsonb := case when jsonb_typeof(subscription -> 'customer') = 'object' then subscription -> 'customer' end;
  v_customer_id text := coalesce(v_customer ->> 'id', subscription ->> 'customer');
  v_invoice jsonb := case when jsonb_typeof(subscription -> 'latest_invoice') = 'object' then subscription -> 'latest_invoice' end;
  v_claimed text;
  v_item jsonb;
  v_candidate jsonb;
  v_organization_id uuid;
  v_plan app_public.plans;
  v_status app_public.subscription_status;
  v_before app_public.subscriptions;
  v_after app_public.subscriptions;
  v_constraint text;
  v_current text;
  v_held record;
begin
  select * into v_before from app_public.subscriptions s where s.stripe_subscription_id = subscription ->> 'id';
  -- One organization's subscriptions are written one at a time, so "one current subscription"
  -- is decided on what is really there.
  perform app_private.lock_organization(coalesce(v_before.organization_id, (select c.organization_id
    from app_private.stripe_customers c where c.stripe_customer_id = coalesce(subscription -> 'customer' ->> 'id', subscription ->> 'customer'))));
  select * into v_before from app_public.subscriptions s where s.stripe_subscription_id = subscription ->> 'id' for update;

  if coalesce((subscription ->> 'deleted')::boolean, false) then
    -- Stripe no longer has it (deleted in test mode, or long gone): it bills nothing.
    update app_public.subscriptions s set status = 'canceled', ended_at = coalesce(s.ended_at, fetched_at), last_synced_at = fetched_at
      where s.id = v_before.id and s.status not in ('canceled', 'incomplete_expired') and s.last_synced_at <= fetched_at
      returning * into v_after;
    if v_after.id is null then
      return 'gone';
    end if;
    v_organization_id := v_after.organization_id;
    select * into v_plan from app_public.plans p where p.id = v_after.plan_id;
  else
    -- Whose subscription: the organization in its metadata (set at checkout), else the one that
    -- owns the customer, else the one in the customer's metadata (set when we created it).
    v_claimed := coalesce(subscription -> 'metadata' ->> 'organization_id', v_customer -> 'metadata' ->> 'organization_id');
    select o.id into v_organization_id from app_public.organizations o where o.id::text = subscription -> 'metadata' ->> 'organization_id';
    if v_organization_id is null then
      select c.organization_id into v_organization_id from app_private.stripe_customers c where c.stripe_customer_id = v_customer_id;
    end if;
    if v_organization_id is null then
      select o.id into v_organization_id from app_public.organizations o where o.id::text = v_customer -> 'metadata' ->> 'organization_id';
    end if;
    if v_organization_id is null then
      -- Named an organization that has since been deleted: nothing left to bill for here.
      return case when v_claimed is not null then 'organization deleted' else 'unattributed' end;
    end if;
    perform app_private.lock_organization(v_organization_id);
    if v_customer_id is not null then
      insert into app_private.stripe_customers (organization_id, stripe_customer_id) values (v_organization_id, v_customer_id)
        on conflict do nothing;
    end if;

    -- The item whose price is a plan decides the plan and the period (a subscription may carry
    -- add-ons too).
    for v_candidate in select value from jsonb_array_elements(coalesce(subscription -> 'items' -> 'data', '[]')) loop
      v_plan := null;
      if jsonb_typeof(v_candidate -> 'price' -> 'product') = 'object' then
        begin
          v_plan := app_private.sync_stripe_price(v_candidate -> 'price', fetched_at);
        exception when raise_exception then
          -- A product whose metadata cannot be read (its own price job reports it) must not stop
          -- the subscription from syncing: keep the plan as it is held.
          null;
        end;
      end if;
      if v_plan.id is null then
        select * into v_plan from app_public.plans p where p.stripe_price_id = coalesce(v_candidate -> 'price' ->> 'id', v_candidate ->> 'price');
      end if;
      if v_plan.id is not null then
        v_item := v_candidate;
        exit;
      end if;
    end loop;
    v_item := coalesce(v_item, subscription -> 'items' -> 'data' -> 0);
    v_status := (subscription ->> 'status')::app_public.subscription_status;

    begin
      insert into app_public.subscriptions as s (organization_id, stripe_subscription_id, plan_id, status, current_period_start,
          current_period_end, cancel_at_period_end, cancel_at, canceled_at, ended_at, trial_start, trial_end, past_due_since, last_synced_at)
        values (v_organization_id, subscription ->> 'id', v_plan.id, v_status,
          app_private.stripe_time(v_item -> 'current_period_start'), app_private.stripe_time(v_item -> 'current_period_end'),
          coalesce((subscription ->> 'cancel_at_period_end')::boolean, false), app_private.stripe_time(subscription -> 'cancel_at'),
          app_private.stripe_time(subscription -> 'canceled_at'), app_private.stripe_time(subscription -> 'ended_at'),
          app_private.stripe_time(subscription -> 'trial_start'), app_private.stripe_time(subscription -> 'trial_end'),
          -- The grace period runs from the first failed renewal: when its invoice was finalized.
          case when v_status = 'past_due' then coalesce(
            case when v_before.status = 'past_due' then v_before.past_due_since end,
            app_private.stripe_time(v_invoice -> 'status_transitions' -> 'finalized_at'),
            app_private.stripe_time(v_invoice -> 'created'),
            fetched_at) end,
          fetched_at)
      on conflict (stripe_subscription_id) do update set
        organization_id = excluded.organization_id, plan_id = excluded.plan_id, status = excluded.status,
        current_period_start = excluded.current_period_start, current_period_end = excluded.current_period_end,
        cancel_at_period_end = excluded.cancel_at_period_end, cancel_at = excluded.cancel_at, canceled_at = excluded.canceled_at,
        ended_at = excluded.ended_at, trial_start = excluded.trial_start, trial_end = excluded.trial_end,
        past_due_since = excluded.past_due_since, last_synced_at = excluded.last_synced_at
        where s.last_synced_at <= excluded.last_synced_at
      returning * into v_after;
    exception when unique_violation then
      get stacked diagnostics v_constraint = constraint_name;
      if v_constraint is distinct from 'subscriptions_one_current_idx' then
        raise;
      end if;
      -- Two live subscriptions for one organization (two checkouts completed, or one made in
      -- the dashboard): Stripe bills both. A person has to cancel one; the job reports it, and
      -- this one is synced again when the current one ends.
      select s.stripe_subscription_id into v_current from app_public.subscriptions s
        where s.organization_id = v_organization_id and s.status in ('incomplete', 'trialing', 'active', 'past_due', 'unpaid', 'paused');
      insert into app_private.stripe_held_subscriptions as h (stripe_subscription_id, organization_id, current_stripe_subscription_id)
        values (subscription ->> 'id', v_organization_id, v_current)
        on conflict (stripe_subscription_id) do update set organization_id = excluded.organization_id,
          current_stripe_subscription_id = excluded.current_stripe_subscription_id;
      return 'duplicate of ' || v_current;
    end;
    if v_after.id is null then
      return 'stale';
    end if;
    delete from app_private.stripe_held_subscriptions h where h.stripe_subscription_id = v_after.stripe_subscription_id;
    if jsonb_typeof(subscription -> 'default_payment_method' -> 'card') = 'object' then
      insert into app_public.subscription_payment_details as d (subscription_id, organization_id, card_brand, card_last4,
          card_exp_month, card_exp_year, last_synced_at)
        values (v_after.id, v_organization_id, subscription -> 'default_payment_method' -> 'card' ->> 'brand',
          subscription -> 'default_payment_method' -> 'card' ->> 'last4',
          (subscription -> 'default_payment_method' -> 'card' ->> 'exp_month')::int,
          (subscription -> 'default_payment_method' -> 'card' ->> 'exp_year')::int, fetched_at)
      on conflict (subscription_id) do update set card_brand = excluded.card_brand, card_last4 = excluded.card_last4,
        card_exp_month = excluded.card_exp_month, card_exp_year = excluded.card_exp_year;
    end if;
    if v_invoice is not null then
      perform app_private.sync_stripe_invoice(v_invoice, fetched_at);
    end if;
  end if;

  -- Owners hear that their subscription ended, unless another one is current or about to be
  -- (a live one held back as a duplicate).
  if v_after.status = 'canceled' and v_before.id is not null and v_before.status is distinct from 'canceled'
    and not exists (select 1 from app_public.subscriptions s where s.organization_id = v_organization_id
      and s.status in ('incomplete', 'trialing', 'active', 'past_due', 'unpaid', 'paused'))
    and not exists (select 1 from app_private.stripe_held_subscriptions h where h.organization_id = v_organization_id) then
    perform app_private.notify_owners(v_organization_id, 'subscription_canceled', v_after.stripe_subscription_id,
      jsonb_build_object('planName', coalesce(v_plan.name, 'paid'), 'endedAt', to_char(coalesce(v_after.ended_at, now()), 'YYYY-MM-DD')));
  end if;
  if v_before.status in ('incomplete', 'trialing', 'active', 'past_due', 'unpaid', 'paused')
    and v_after.status not in ('incomplete', 'trialing', 'active', 'past_due', 'unpaid', 'paused') then
    -- The organization's current subscription ended: one held back as a duplicate may take its place.
    for v_held in delete from app_private.stripe_held_subscriptions h where h.organization_id = v_organization_id
        returning h.stripe_subscription_id loop
      perform graphile_worker.add_job('stripe__sync_subscription', json_build_object('id', v_held.stripe_subscription_id),
        job_key := 'stripe:' || v_held.stripe_subscription_id, job_key_mode := 'replace', max_attempts := 12);
    end loop;
  end if;
  if v_after.status = 'trialing' and v_after.trial_end > now() and v_after.trial_end <= now() + interval '3 days' then
    perform app_private.notify_owners(v_organization_id, 'trial_ending', v_after.stripe_subscription_id || ':' || extract(epoch from v_after.trial_end)::bigint,
      jsonb_build_object('planName', coalesce(v_plan.name, 'paid'), 'trialEnd', to_char(v_after.trial_end, 'YYYY-MM-DD')));
  end if;
  return case when v_after.status = 'canceled' and coalesce((subscription ->> 'deleted')::boolean, false) then 'gone'
    when v_before.id is null then 'created' else 'updated' end;
end;
$$;
comment on function app_private.sync_stripe_subscription(jsonb, timestamptz) is
  E'Upserts a Stripe subscription (items.data.price.product, default_payment_method, latest_invoice and customer expanded) for the organization in its metadata, owning its customer, or in the customer''s metadata, unless a newer sync already wrote it; keeps the card and the latest invoice; emails owners when it is canceled or its trial ends within 3 days. {"deleted": true} marks one Stripe no longer has as canceled.\nReturns created, updated, stale, gone, "duplicate of sub_…" (the organization already has that current subscription: nothing written, and it is synced again when that one ends), unattributed or organization deleted.';

--------------------------------------------------------------------------------
-- What the billing mutations ask the database (they run as the caller)
--------------------------------------------------------------------------------

create function app_hidden.prepare_checkout(organization_id uuid, plan_id uuid,
  out stripe_customer_id text, out stripe_price_id text, out organization_name text, out email citext,
  out open_checkout_session_id text)
language plpgsql stable security definer
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_plan app_public.plans;
begin
  perform app_private.require_role(prepare_checkout.organization_id, '{owner,admin}', 'manage billing');
  select * into v_plan from app_public.plans p where p.id = prepare_checkout.plan_id and p.active;
  if v_plan.id is null then
    raise exception 'Plan not found.' using errcode = 'OS404';
  end if;
  if v_plan.stripe_price_id is null then
    raise exception 'The % plan needs no checkout; every organization has it without paying.', v_plan.name using errcode = 'OS400';
  end if;
  if exists (select 1 from app_public.subscriptions s where s.organization_id = prepare_checkout.organization_id
      and s.status in ('incomplete', 'trialing', 'active', 'past_due', 'unpaid', 'paused')) then
    raise exception 'This organization already has a subscription; change or cancel it in the billing portal (createBillingPortalSession).'
      using errcode = 'OS409', detail = 'already_subscribed';
  end if;
  stripe_price_id := v_plan.stripe_price_id;
  select c.stripe_customer_id, c.checkout_session_id into stripe_customer_id, open_checkout_session_id
    from app_private.stripe_customers c where c.organization_id = prepare_checkout.organization_id;
  select o.name into organization_name from app_public.organizations o where o.id = prepare_checkout.organization_id;
  select u.email into email from app_public.users u where u.id = app_public.current_user_id();
end;
$$;
comment on function app_hidden.prepare_checkout(uuid, uuid) is
  'For createCheckoutSession: checks the caller may manage billing, the plan can be bought and the organization has no current subscription; returns what the Stripe calls need, the previous checkout session (to expire) included.';

create function app_hidden.save_stripe_customer(organization_id uuid, stripe_customer_id text, replace boolean default false) returns text
language plpgsql volatile security definer
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_customer text;
begin
  perform app_private.require_role(save_stripe_customer.organization_id, '{owner,admin}', 'manage billing');
  insert into app_private.stripe_customers as c (organization_id, stripe_customer_id)
    values (save_stripe_customer.organization_id, save_stripe_customer.stripe_customer_id)
    on conflict on constraint stripe_customers_pkey do update set stripe_customer_id = excluded.stripe_customer_id, checkout_session_id = null
      where save_stripe_customer.replace;
  select c.stripe_customer_id into v_customer from app_private.stripe_customers c where c.organization_id = save_stripe_customer.organization_id;
  return v_customer;
end;
$$;
comment on function app_hidden.save_stripe_customer(uuid, text, boolean) is
  'For createCheckoutSession: remembers the organization''s new Stripe customer (the first one wins, unless `replace`: Stripe lost the old one) and returns the one to use.';

create function app_hidden.save_checkout_session(organization_id uuid, checkout_session_id text) returns text
language plpgsql volatile security definer
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_replaced text;
begin
  perform app_private.require_role(save_checkout_session.organization_id, '{owner,admin}', 'manage billing');
  select c.checkout_session_id into v_replaced from app_private.stripe_customers c
    where c.organization_id = save_checkout_session.organization_id for update;
  update app_private.stripe_customers c set checkout_session_id = save_checkout_session.checkout_session_id
    where c.organization_id = save_checkout_session.organization_id;
  return v_replaced;
end;
$$;
comment on function app_hidden.save_checkout_session(uuid, text) is
  'For createCheckoutSession: remembers the newest checkout session, so the next one expires it (one open checkout per organization). Returns the session it replaces, which the caller expires if it is not the one it already did (two clicks at once).';

create function app_hidden.checkout_subscription_arrived(organization_id uuid, stripe_subscription_id text) returns boolean
language plpgsql stable security definer
set search_path = pg_catalog, public, pg_temp
as $$
begin
  perform app_private.require_role(checkout_subscription_arrived.organization_id, '{owner,admin}', 'manage billing');
  return exists (select 1 from app_public.subscriptions s where s.organization_id = checkout_subscription_arrived.organization_id
    and s.stripe_subscription_id = checkout_subscription_arrived.stripe_subscription_id);
end;
$$;
comment on function app_hidden.checkout_subscription_arrived(uuid, text) is
  'For createCheckoutSession: whether the subscription of the previous, completed checkout is already held. Until it is, a new checkout would make a second subscription.';

create function app_hidden.prepare_billing_portal(organization_id uuid) returns text
language plpgsql stable security definer
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_customer text;
begin
  perform app_private.require_role(prepare_billing_portal.organization_id, '{owner,admin}', 'manage billing');
  select c.stripe_customer_id into v_customer from app_private.stripe_customers c where c.organization_id = prepare_billing_portal.organization_id;
  if v_customer is null then
    raise exception 'This organization has no billing account yet; choose a plan first (createCheckoutSession).'
      using errcode = 'OS409', detail = 'no_billing_account';
  end if;
  return v_customer;
end;
$$;
comment on function app_hidden.prepare_billing_portal(uuid) is
  'For createBillingPortalSession: checks the caller may manage billing and returns the organization''s Stripe customer.';

grant execute on function app_hidden.prepare_checkout(uuid, uuid), app_hidden.save_stripe_customer(uuid, text, boolean),
  app_hidden.save_checkout_session(uuid, text), app_hidden.checkout_subscription_arrived(uuid, text),
  app_hidden.prepare_billing_portal(uuid) to :DATABASE_ANONYMOUS, :DATABASE_USER;

--------------------------------------------------------------------------------
-- Deleting an organization that Stripe still bills would leave the bill running
--------------------------------------------------------------------------------

create or replace function app_public.delete_organization(organization_id uuid) returns app_public.organizations
language plpgsql volatile security definer
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_organization app_public.organizations;
  v_subscription app_public.subscriptions;
begin
  perform app_private.require_role(delete_organization.organization_id, '{owner}', 'delete it');
  perform app_private.lock_organization(delete_organization.organization_id);
  perform app_private.require_role(delete_organization.organization_id, '{owner}', 'delete it');
  select * into v_subscription from app_public.subscriptions s
    where s.organization_id = delete_organization.organization_id and not s.cancel_at_period_end
      and not coalesce(s.cancel_at <= coalesce(s.current_period_end, s.cancel_at), false)
      and s.status in ('incomplete', 'trialing', 'active', 'past_due', 'unpaid', 'paused');
  if v_subscription.id is not null then
    raise exception 'This organization''s % subscription %; cancel it in the billing portal (createBillingPortalSession) first, then delete the organization.',
      replace(v_subscription.status::text, '_', ' '),
      coalesce('renews on ' || to_char(v_subscription.current_period_end, 'YYYY-MM-DD'), 'would renew')
      using errcode = 'OS409', detail = 'subscription_active';
  end if;
  delete from app_public.organizations o where o.id = delete_organization.organization_id returning * into v_organization;
  return v_organization;
end;
$$;
comment on function app_public.delete_organization(uuid) is
  E'@resultFieldName organization\nDeletes the organization with all its projects, tasks and comments (owners only). Refused while it has a subscription that would renew: cancel it first (it may run to the end of the period).';

--------------------------------------------------------------------------------
-- Accepting an invitation as an existing member adds nobody, so no plan limit applies
--------------------------------------------------------------------------------

create or replace function app_public.accept_invitation(token text) returns app_public.organization_memberships
language plpgsql volatile security definer
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_user_id uuid := app_private.require_user();
  v_organization_id uuid;
  v_invitation app_public.organization_invitations;
  v_membership app_public.organization_memberships;
begin
  perform app_private.assert_email_verified();
  select i.organization_id into v_organization_id
    from app_public.organization_invitations i
    join app_private.organization_invitation_secrets s on s.invitation_id = i.id
    where s.token_hash = app_private.token_hash(accept_invitation.token);
  if v_organization_id is not null then
    perform app_private.lock_organization(v_organization_id);
  end if;
  select i.* into v_invitation
    from app_public.organization_invitations i
    join app_private.organization_invitation_secrets s on s.invitation_id = i.id
    where s.token_hash = app_private.token_hash(accept_invitation.token)
    for update of i;
  if not found then
    raise exception 'This invitation link is not valid; ask for a new invitation.' using errcode = 'OS404', detail = 'invitation_not_found';
  end if;
  if v_invitation.accepted_at is not null then
    raise exception 'This invitation has already been accepted.' using errcode = 'OS409', detail = 'invitation_used';
  end if;
  if v_invitation.expires_at <= now() then
    raise exception 'This invitation expired on %; ask for a new one.', to_char(v_invitation.expires_at, 'YYYY-MM-DD')
      using errcode = 'OS400', detail = 'invitation_expired';
  end if;
  if not exists (select 1 from app_public.users u where u.id = v_user_id and u.email = v_invitation.email) then
    raise exception 'This invitation was sent to another email address; sign in with that address to accept it.'
      using errcode = 'OS403', detail = 'invitation_for_another_email';
  end if;
  update app_public.organization_invitations i set accepted_at = now() where i.id = v_invitation.id;
  select * into v_membership from app_public.organization_memberships m
    where m.organization_id = v_invitation.organization_id and m.user_id = v_user_id;
  if v_membership.id is null then
    insert into app_public.organization_memberships (organization_id, user_id, role)
      values (v_invitation.organization_id, v_user_id, v_invitation.role)
      returning * into v_membership;
  end if;
  return v_membership;
end;
$$;

--------------------------------------------------------------------------------
-- Cleanup keeps event ids but not payloads older than 90 days
--------------------------------------------------------------------------------

create function app_private.cleanup_expired() returns json
language plpgsql volatile
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_rate_limits int;
  v_sessions int;
  v_email_tokens int;
  v_login_failures int;
  v_trusted_devices int;
  v_stripe_payloads int;
begin
  delete from app_private.rate_limits where window_start < now() - interval '1 day';
  get diagnostics v_rate_limits = row_count;
  delete from app_private.sessions
    where expires_at < now() - interval '7 days' or revoked_at < now() - interval '7 days';
  get diagnostics v_sessions = row_count;
  delete from app_private.email_tokens
    where expires_at < now() - interval '7 days' or used_at < now() - interval '7 days';
  get diagnostics v_email_tokens = row_count;
  delete from app_private.login_failures where last_failed_at < now() - interval '1 day';
  get diagnostics v_login_failures = row_count;
  delete from app_private.trusted_devices where last_used_at < now() - interval '90 days';
  get diagnostics v_trusted_devices = row_count;
  update app_private.stripe_events set payload = null where payload is not null and received_at < now() - interval '90 days';
  get diagnostics v_stripe_payloads = row_count;
  return json_build_object('rate_limits', v_rate_limits, 'sessions', v_sessions, 'email_tokens', v_email_tokens,
    'login_failures', v_login_failures, 'trusted_devices', v_trusted_devices, 'stripe_event_payloads', v_stripe_payloads);
end;
$$;
comment on function app_private.cleanup_expired() is
  'Deletes stale rate-limit counters and sign-in failures, sessions and email tokens that ended over a week ago, device tokens unused for 90 days, and Stripe event payloads older than 90 days (their ids stay); returns how many of each.';
