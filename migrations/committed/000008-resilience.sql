--! Previous: sha1:b4626b0b8696fa48e3a96f4bd8abc57e8779260c
--! Hash: sha1:4f4f4b550e8bbee0e1fb10d5d762e8cdf03fbd61
--! Message: Resilience

--------------------------------------------------------------------------------
-- Jobs survive crashes: workers beat, the living unlock the dead's jobs, and an
-- email already sent is not sent again.
--
-- graphile-worker locks the jobs a worker takes with its id (locked_by) and only
-- unlocks them itself after 4 hours. Every worker process here records a
-- heartbeat under that id every few seconds; each one also looks for workers
-- whose heartbeat stopped and hands their jobs back with graphile-worker's own
-- force_unlock_workers, so the jobs of a process that was killed run again on a
-- live one within a minute.
--------------------------------------------------------------------------------

drop function if exists app_private.recover_dead_workers(interval);
drop function if exists app_private.worker_stopped(text);
drop function if exists app_private.worker_heartbeat(text, text, int);
drop table if exists app_private.worker_heartbeats;
drop table if exists app_private.email_deliveries;

create table app_private.worker_heartbeats (
  worker_id text primary key,
  host text not null,
  pid int not null,
  started_at timestamptz not null default now(),
  last_seen timestamptz not null default now()
);
comment on table app_private.worker_heartbeats is
  'Every running worker process (graphile-worker''s pool id, the locked_by of the jobs it holds) and when it last said it was alive.';
alter table app_private.worker_heartbeats enable row level security;

create function app_private.worker_heartbeat(worker_id text, host text, pid int) returns void
language sql volatile
set search_path = pg_catalog, public, pg_temp
as $$
  insert into app_private.worker_heartbeats as h (worker_id, host, pid) values (worker_id, host, pid)
    on conflict (worker_id) do update set last_seen = now();
$$;
comment on function app_private.worker_heartbeat(text, text, int) is 'A worker says it is alive (every few seconds, on the database''s clock).';

create function app_private.worker_stopped(worker_id text) returns void
language sql volatile
set search_path = pg_catalog, public, pg_temp
as $$
  delete from app_private.worker_heartbeats h where h.worker_id = worker_stopped.worker_id;
$$;
comment on function app_private.worker_stopped(text) is 'A worker that stopped cleanly (its jobs are already released) leaves.';

create function app_private.recover_dead_workers(silence interval)
returns table (worker_id text, jobs int)
language plpgsql volatile
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_dead text[];
begin
  -- Dead: silent for `silence`. Only workers that have beaten reliably for longer than that call
  -- this (after an outage every heartbeat is stale at once, and the living must not be taken
  -- for dead).
  with silent as (
    delete from app_private.worker_heartbeats h where h.last_seen < now() - silence returning h.worker_id
  )
  select array_agg(s.worker_id) into v_dead from silent s;
  if v_dead is null then
    return;
  end if;
  return query
    select d.id, (select count(*)::int from graphile_worker._private_jobs j where j.locked_by = d.id)
    from unnest(v_dead) as d (id);
  perform graphile_worker.force_unlock_workers(v_dead);
end;
$$;
comment on function app_private.recover_dead_workers(interval) is
  'Hands back the jobs of workers that stopped beating for `silence`, so live workers run them now instead of after graphile-worker''s 4 hours. Returns each dead worker and how many jobs it held.';

--------------------------------------------------------------------------------
-- Email deliveries: a retry after a send that succeeded sends nothing
--------------------------------------------------------------------------------

create table app_private.email_deliveries (
  delivery_key text primary key,
  message_id text not null,
  sent_at timestamptz not null default now()
);
comment on table app_private.email_deliveries is
  'Emails sent, by the job (id and revision) that sent them: recorded before the job is acknowledged, so a job retried after a crash knows its email went out. Each has a Message-ID of its own, the same on every attempt, so a duplicate that slips through collapses in mail clients. Kept 30 days.';
alter table app_private.email_deliveries enable row level security;

create or replace function app_private.cleanup_batch(category text, batch_size int, now timestamptz) returns int
language plpgsql volatile
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_count int;
begin
  -- Never ahead of the database's clock, whatever the job was given.
  now := least(now, pg_catalog.now());
  -- Each call removes at most batch_size rows of one category and commits, so no lock is held long.
  case category
  when 'rate_limits' then
    delete from app_private.rate_limits where ctid = any(array(
      select ctid from app_private.rate_limits where window_start < now - interval '1 day' limit batch_size));
  when 'login_failures' then
    delete from app_private.login_failures where ctid = any(array(
      select ctid from app_private.login_failures where last_failed_at < now - interval '1 day' limit batch_size));
  when 'sessions' then
    -- Their refresh tokens go with them.
    delete from app_private.sessions where id = any(array(
      select id from app_private.sessions where expires_at < now - interval '7 days' or revoked_at < now - interval '7 days' limit batch_size));
  when 'refresh_tokens' then
    -- Spent tokens of live sessions, a month after use: too old for reuse detection to matter
    -- (presenting one is then simply refused). The newest token of a session is never spent.
    delete from app_private.refresh_tokens where id = any(array(
      select id from app_private.refresh_tokens where used_at < now - interval '30 days' limit batch_size));
  when 'email_tokens' then
    delete from app_private.email_tokens where id = any(array(
      select id from app_private.email_tokens where expires_at < now - interval '7 days' or used_at < now - interval '7 days' limit batch_size));
  when 'trusted_devices' then
    delete from app_private.trusted_devices where id = any(array(
      select id from app_private.trusted_devices where last_used_at < now - interval '90 days' limit batch_size));
  when 'invitations' then
    -- Expired a month ago: until then the invitee hears "expired" and managers see it.
    delete from app_public.organization_invitations where id = any(array(
      select id from app_public.organization_invitations where accepted_at is null and expires_at < now - interval '30 days' limit batch_size));
  when 'unverified_users' then
    -- Candidates are locked first, skipping any being verified or joining at this moment; the
    -- delete then checks them again as they are now.
    delete from app_public.users u where u.id = any(array(
      select c.id from app_public.users c
        where c.email_verified_at is null and c.created_at < now - interval '7 days' and not c.is_admin
        order by c.created_at limit batch_size
        for update skip locked))
      and u.email_verified_at is null and not u.is_admin
      and not exists (select 1 from app_public.organization_memberships m where m.user_id = u.id)
      -- Waiting on a pending invitation, or on a confirmation link sent this week: not abandoned.
      and not exists (select 1 from app_public.organization_invitations i
        where i.email = u.email and i.accepted_at is null and i.expires_at > now)
      and not exists (select 1 from app_private.email_tokens t
        where t.user_id = u.id and t.purpose = 'verify_email' and t.created_at > now - interval '7 days');
  when 'stripe_event_payloads' then
    update app_private.stripe_events set payload = null where id = any(array(
      select id from app_private.stripe_events where payload is not null and received_at < now - interval '90 days' limit batch_size));
  when 'usage_report_emails' then
    delete from app_private.usage_report_emails where ctid = any(array(
      select ctid from app_private.usage_report_emails where day < (now at time zone 'UTC')::date - 30 limit batch_size));
  when 'email_deliveries' then
    delete from app_private.email_deliveries where delivery_key = any(array(
      select delivery_key from app_private.email_deliveries where sent_at < now - interval '30 days' limit batch_size));
  when 'failed_jobs' then
    select count(*) into v_count from graphile_worker.complete_jobs(array(
      select id from graphile_worker.jobs where attempts >= max_attempts and locked_at is null and updated_at < now - interval '30 days'
        limit batch_size));
    return v_count;
  else
    raise exception 'Unknown cleanup category "%".', category;
  end case;
  get diagnostics v_count = row_count;
  return v_count;
end;
$$;
comment on function app_private.cleanup_batch(text, int, timestamptz) is
  E'For the cleanup job: removes at most batch_size rows of one category that are past retention at `now` (never later than the database''s clock), and returns how many. Categories: rate_limits and login_failures (1 day), sessions (with their refresh tokens) and email_tokens (7 days after they ended), refresh_tokens (spent 30 days ago), trusted_devices (unused 90 days), invitations (expired 30 days ago, never accepted), unverified_users (7 days old, no organization, not a site admin, no pending invitation, no confirmation link sent in the last 7 days), stripe_event_payloads (90 days; the ids stay), usage_report_emails and email_deliveries (30 days), failed_jobs (graphile-worker jobs that used up their attempts 30 days ago).';

-- The deprecated all-in-one cleanup covers what cleanup_batch now does too.
create or replace function app_private.cleanup_expired() returns json
language plpgsql volatile
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_category text;
  v_removed int;
  v_total int;
  v_counts jsonb := '{}';
begin
  foreach v_category in array array['rate_limits', 'login_failures', 'sessions', 'refresh_tokens', 'email_tokens', 'trusted_devices',
      'invitations', 'unverified_users', 'stripe_event_payloads', 'usage_report_emails', 'email_deliveries', 'failed_jobs'] loop
    v_total := 0;
    loop
      v_removed := app_private.cleanup_batch(v_category, 1000, now());
      v_total := v_total + v_removed;
      exit when v_removed < 1000;
    end loop;
    v_counts := v_counts || jsonb_build_object(v_category, v_total);
  end loop;
  return v_counts;
end;
$$;

--------------------------------------------------------------------------------
-- Deleting an organization: a live subscription held back as a duplicate is billed too
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
  if exists (select 1 from app_private.stripe_held_subscriptions h where h.organization_id = delete_organization.organization_id) then
    raise exception 'This organization has a second live subscription that Stripe still bills; cancel it in the billing portal (createBillingPortalSession) first, then delete the organization.'
      using errcode = 'OS409', detail = 'subscription_active';
  end if;
  delete from app_public.organizations o where o.id = delete_organization.organization_id returning * into v_organization;
  return v_organization;
end;
$$;
