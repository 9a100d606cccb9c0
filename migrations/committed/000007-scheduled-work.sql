--! Previous: sha1:b9648638b518dce9a9c3909300900ceb33c9bad2
--! Hash: sha1:b4626b0b8696fa48e3a96f4bd8abc57e8779260c
--! Message: Scheduled work

--------------------------------------------------------------------------------
-- Scheduled work: daily usage reports, renewal reminders and cleanup.
--
-- graphile-worker runs these from the crontab (UTC). Every scheduled job may run
-- twice (two workers, a retry, a backfill after downtime), so each one is
-- idempotent here: reports are upserts keyed by (organization, day), and every
-- email is recorded in the same transaction that queues it, once per recipient
-- and day (reports) or per subscription and period (reminders). Every function
-- takes its "now" or its day as an argument: the job passes the time it was
-- scheduled for, never the time it happens to run.
--------------------------------------------------------------------------------

drop function if exists app_private.cleanup_batch(text, int, timestamptz);
drop function if exists app_private.send_renewal_reminders(timestamptz);
drop function if exists app_private.queue_usage_reports(date);
drop function if exists app_private.deliver_usage_report(uuid, date);
drop function if exists app_private.compute_usage_report(uuid, date);
drop function if exists app_public.update_membership_preferences(uuid, boolean);
drop table if exists app_private.usage_report_emails;
drop table if exists app_public.usage_reports;
drop trigger if exists _200_preferences on app_public.organization_memberships;
drop function if exists app_private.tg_memberships__preferences();
drop table if exists app_public.membership_preferences;

--------------------------------------------------------------------------------
-- A member's own preferences: nobody else's business, so a table of their own
--------------------------------------------------------------------------------

create table app_public.membership_preferences (
  membership_id uuid primary key references app_public.organization_memberships on delete cascade,
  email_daily_report boolean not null default true,
  updated_at timestamptz not null default now()
);
comment on table app_public.membership_preferences is
  E'@behavior -insert -update -delete\nYour own settings in an organization (one row per membership, made with it); only you see them. Change them with updateMembershipPreferences.';
comment on constraint membership_preferences_membership_id_fkey on app_public.membership_preferences is
  E'@fieldName membership\n@foreignFieldName preferences';
comment on column app_public.membership_preferences.email_daily_report is
  'Whether you receive the daily usage report by email (it goes to owners and admins).';

alter table app_public.membership_preferences enable row level security;
create policy select_own on app_public.membership_preferences for select
  using (exists (select 1 from app_public.organization_memberships m
    where m.id = membership_id and m.user_id = (select app_public.current_user_id())));
grant select on app_public.membership_preferences to :DATABASE_ANONYMOUS, :DATABASE_USER;

create function app_private.tg_memberships__preferences() returns trigger
language plpgsql security definer
set search_path = pg_catalog, public, pg_temp
as $$
begin
  insert into app_public.membership_preferences (membership_id) values (new.id) on conflict do nothing;
  return null;
end;
$$;
comment on function app_private.tg_memberships__preferences() is 'Trigger: every membership has its preferences row, with the defaults.';
create trigger _200_preferences after insert on app_public.organization_memberships
  for each row execute function app_private.tg_memberships__preferences();
insert into app_public.membership_preferences (membership_id) select id from app_public.organization_memberships;

create function app_public.update_membership_preferences(organization_id uuid, email_daily_report boolean)
returns app_public.membership_preferences
language plpgsql volatile security definer
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_membership_id uuid;
  v_preferences app_public.membership_preferences;
begin
  perform app_private.require_user();
  select m.id into v_membership_id from app_public.organization_memberships m
    where m.organization_id = update_membership_preferences.organization_id and m.user_id = app_public.current_user_id();
  if v_membership_id is null then
    raise exception 'Organization not found.' using errcode = 'OS404';
  end if;
  insert into app_public.membership_preferences as p (membership_id, email_daily_report)
    values (v_membership_id, coalesce(update_membership_preferences.email_daily_report, true))
    on conflict (membership_id) do update set
      email_daily_report = coalesce(update_membership_preferences.email_daily_report, p.email_daily_report), updated_at = now()
    returning * into v_preferences;
  return v_preferences;
end;
$$;
comment on function app_public.update_membership_preferences(uuid, boolean) is
  E'@resultFieldName preferences\nChanges your own preferences in an organization you belong to: emailDailyReport turns the daily usage report email on or off (it goes to owners and admins). Omitted settings stay as they are.';
grant execute on function app_public.update_membership_preferences(uuid, boolean) to :DATABASE_USER;

--------------------------------------------------------------------------------
-- Daily usage reports
--------------------------------------------------------------------------------

create table app_public.usage_reports (
  organization_id uuid not null references app_public.organizations on delete cascade,
  day date not null,
  tasks_created int not null,
  tasks_completed int not null,
  tasks_overdue int not null,
  comments int not null,
  active_members int not null,
  actions int not null,
  projects int not null,
  members int not null,
  tasks int not null,
  computed_at timestamptz not null default now(),
  primary key (organization_id, day)
);
create index usage_reports_day_idx on app_public.usage_reports (day);
comment on table app_public.usage_reports is
  E'@behavior -insert -update -delete\nOne row per organization and UTC day, computed after the day by the daily_usage_report job from the activity log and the tables. Members read their organization''s.';
comment on column app_public.usage_reports.day is E'@behavior +orderBy +filterBy\nThe UTC day the numbers are for.';
comment on column app_public.usage_reports.tasks_created is 'Tasks created that day.';
comment on column app_public.usage_reports.tasks_completed is 'Times a task was marked done that day.';
comment on column app_public.usage_reports.tasks_overdue is 'Tasks past their due time at the end of the day and not done by then (canceled ones excluded).';
comment on column app_public.usage_reports.comments is 'Comments written that day.';
comment on column app_public.usage_reports.active_members is 'People who changed anything in the organization that day.';
comment on column app_public.usage_reports.actions is 'Everything people did that day (activity log entries); 0 means a quiet day, with no email.';
comment on column app_public.usage_reports.projects is 'Projects at the end of the day.';
comment on column app_public.usage_reports.members is 'Members at the end of the day.';
comment on column app_public.usage_reports.tasks is 'Tasks at the end of the day.';
comment on column app_public.usage_reports.computed_at is 'When the numbers were computed; a rerun recomputes them.';

alter table app_public.usage_reports enable row level security;
create policy select_member on app_public.usage_reports for select
  using (organization_id in (select app_hidden.current_user_organization_ids()) or (select app_public.current_user_is_admin()));
grant select on app_public.usage_reports to :DATABASE_ANONYMOUS, :DATABASE_USER;

create table app_private.usage_report_emails (
  organization_id uuid not null references app_public.organizations on delete cascade,
  day date not null,
  user_id uuid not null references app_public.users on delete cascade,
  queued_at timestamptz not null default now(),
  primary key (organization_id, day, user_id)
);
comment on table app_private.usage_report_emails is 'Daily report emails already queued, so a rerun sends none twice.';
alter table app_private.usage_report_emails enable row level security;

create function app_private.compute_usage_report(organization_id uuid, day date) returns app_public.usage_reports
language sql volatile
set search_path = pg_catalog, public, pg_temp
as $$
  with bounds as (
    select (day::timestamp at time zone 'UTC') as starts, ((day + 1)::timestamp at time zone 'UTC') as ends
  ), done_by_people as (
    -- The system's own changes (cleanup, Stripe) are not activity.
    select a.* from app_public.activity a, bounds b
      where a.organization_id = compute_usage_report.organization_id and a.created_at >= b.starts and a.created_at < b.ends
        and a.actor_id is not null
  )
  insert into app_public.usage_reports as r (organization_id, day, tasks_created, tasks_completed, tasks_overdue, comments,
      active_members, actions, projects, members, tasks, computed_at)
  select compute_usage_report.organization_id, compute_usage_report.day,
    (select count(*) from done_by_people where entity_type = 'task' and action = 'created'),
    (select count(*) from done_by_people where entity_type = 'task' and action = 'updated' and diff -> 'status' ->> 1 = 'done'),
    (select count(*) from app_public.tasks t where t.organization_id = compute_usage_report.organization_id
       and t.created_at < b.ends and t.due_at < b.ends and t.status <> 'canceled' and (t.completed_at is null or t.completed_at >= b.ends)),
    (select count(*) from done_by_people where entity_type = 'comment' and action = 'created'),
    (select count(distinct actor_id) from done_by_people),
    (select count(*) from done_by_people),
    (select count(*) from app_public.projects p where p.organization_id = compute_usage_report.organization_id and p.created_at < b.ends),
    (select count(*) from app_public.organization_memberships m where m.organization_id = compute_usage_report.organization_id and m.created_at < b.ends),
    (select count(*) from app_public.tasks t where t.organization_id = compute_usage_report.organization_id and t.created_at < b.ends),
    now()
  from bounds b
  where exists (select 1 from app_public.organizations o where o.id = compute_usage_report.organization_id)
  -- The first computation, made just after the day, stands: the tables have moved on since.
  on conflict (organization_id, day) do nothing
  returning r.*;
$$;
comment on function app_private.compute_usage_report(uuid, date) is
  'Computes an organization''s usage report for a UTC day from the activity log and the tables and stores it, unless it is already stored (the first computation, made just after the day, stands). Returns the new row, or nothing.';

create function app_private.deliver_usage_report(organization_id uuid, day date) returns int
language plpgsql volatile
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_report app_public.usage_reports;
  v_averages record;
  v_metrics jsonb;
  v_recipient record;
  v_queued int := 0;
begin
  if not exists (select 1 from app_public.organizations o where o.id = deliver_usage_report.organization_id) then
    return 0;  -- deleted since the job was queued
  end if;
  -- The week before, as far as the organization existed, so the average does not depend on
  -- which day's job ran first (backfilled days run side by side).
  perform app_private.compute_usage_report(deliver_usage_report.organization_id, d::date)
    from generate_series(deliver_usage_report.day - 7, deliver_usage_report.day, interval '1 day') d
    where not exists (select 1 from app_public.usage_reports r where r.organization_id = deliver_usage_report.organization_id and r.day = d::date)
      and exists (select 1 from app_public.organizations o where o.id = deliver_usage_report.organization_id
        and o.created_at < ((d::date + 1)::timestamp at time zone 'UTC'));
  select * into v_report from app_public.usage_reports r
    where r.organization_id = deliver_usage_report.organization_id and r.day = deliver_usage_report.day;
  if v_report.actions is null or v_report.actions = 0 then
    return 0;  -- a quiet day: the row is kept, nobody is emailed
  end if;
  select count(*) as days, avg(r.tasks_created) as tasks_created, avg(r.tasks_completed) as tasks_completed,
      avg(r.tasks_overdue) as tasks_overdue, avg(r.comments) as comments, avg(r.active_members) as active_members
    into v_averages
    from app_public.usage_reports r
    where r.organization_id = deliver_usage_report.organization_id and r.day between deliver_usage_report.day - 7 and deliver_usage_report.day - 1;
  v_metrics := jsonb_build_array(
    jsonb_build_object('label', 'Tasks created', 'value', v_report.tasks_created, 'average', round(v_averages.tasks_created, 1)),
    jsonb_build_object('label', 'Tasks completed', 'value', v_report.tasks_completed, 'average', round(v_averages.tasks_completed, 1)),
    jsonb_build_object('label', 'Overdue at day end', 'value', v_report.tasks_overdue, 'average', round(v_averages.tasks_overdue, 1)),
    jsonb_build_object('label', 'Comments', 'value', v_report.comments, 'average', round(v_averages.comments, 1)),
    jsonb_build_object('label', 'Active members', 'value', v_report.active_members, 'average', round(v_averages.active_members, 1)));
  for v_recipient in
    select u.id, u.email, u.name, o.name as organization_name
      from app_public.organization_memberships m
      join app_public.users u on u.id = m.user_id
      join app_public.organizations o on o.id = m.organization_id
      left join app_public.membership_preferences p on p.membership_id = m.id
      where m.organization_id = deliver_usage_report.organization_id and m.role in ('owner', 'admin')
        and coalesce(p.email_daily_report, true)
        -- Only confirmed addresses: nobody can sign a stranger's address up for daily mail.
        and u.email_verified_at is not null
      order by u.id
  loop
    insert into app_private.usage_report_emails (organization_id, day, user_id)
      values (deliver_usage_report.organization_id, deliver_usage_report.day, v_recipient.id)
      on conflict on constraint usage_report_emails_pkey do nothing;
    if found then
      perform graphile_worker.add_job('send_email', json_build_object(
        'to', v_recipient.email, 'template', 'daily_usage_report',
        'variables', jsonb_build_object('name', v_recipient.name, 'organizationName', v_recipient.organization_name,
          'day', to_char(deliver_usage_report.day, 'YYYY-MM-DD'), 'averageDays', v_averages.days, 'metrics', v_metrics,
          'projects', v_report.projects, 'members', v_report.members, 'tasks', v_report.tasks,
          'reportLink', '/organizations/' || deliver_usage_report.organization_id || '/reports?day=' || to_char(deliver_usage_report.day, 'YYYY-MM-DD'),
          'settingsLink', '/organizations/' || deliver_usage_report.organization_id || '/settings/notifications')
      ), max_attempts := 10);
      v_queued := v_queued + 1;
    end if;
  end loop;
  return v_queued;
end;
$$;
comment on function app_private.deliver_usage_report(uuid, date) is
  'For the usage_report job: stores the day''s report (and any missing day of the week before) and, unless nobody did anything, emails it with the previous 7 days'' averages to owners and admins with a confirmed address who want it, each once. Returns how many emails were queued.';

create function app_private.queue_usage_reports(day date) returns int
language plpgsql volatile
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_organization_id uuid;
  v_count int := 0;
begin
  -- One job per organization (a few milliseconds each), never one long transaction for all.
  for v_organization_id in
    select o.id from app_public.organizations o where o.created_at < ((day + 1)::timestamp at time zone 'UTC') order by o.id
  loop
    perform graphile_worker.add_job('usage_report', json_build_object('organizationId', v_organization_id, 'day', to_char(day, 'YYYY-MM-DD')),
      job_key := 'usage_report:' || v_organization_id || ':' || to_char(day, 'YYYY-MM-DD'), max_attempts := 5);
    v_count := v_count + 1;
  end loop;
  return v_count;
end;
$$;
comment on function app_private.queue_usage_reports(date) is
  'For the daily_usage_report job: queues one usage_report job per organization that existed on the day (job key usage_report:<organization>:<day>). Returns how many.';

--------------------------------------------------------------------------------
-- Renewal and trial reminders
--------------------------------------------------------------------------------

create function app_private.send_renewal_reminders(now timestamptz) returns json
language plpgsql volatile
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_subscription record;
  v_renewals int := 0;
  v_trials int := 0;
begin
  for v_subscription in
    select s.organization_id, s.stripe_subscription_id, s.current_period_end, p.name as plan_name,
        app_private.format_money(p.amount, p.currency) as amount
      from app_public.subscriptions s join app_public.plans p on p.id = s.plan_id
      where s.status = 'active' and not s.cancel_at_period_end and (s.cancel_at is null or s.cancel_at > s.current_period_end)
        and s.current_period_end > send_renewal_reminders.now and s.current_period_end <= send_renewal_reminders.now + interval '7 days'
  loop
    -- Once per subscription and period (the key), whoever runs it and however often.
    if app_private.notify_owners(v_subscription.organization_id, 'renewal_reminder',
        v_subscription.stripe_subscription_id || ':' || extract(epoch from v_subscription.current_period_end)::bigint,
        jsonb_build_object('planName', v_subscription.plan_name, 'amount', v_subscription.amount,
          'renewsOn', to_char(v_subscription.current_period_end at time zone 'UTC', 'YYYY-MM-DD'))) then
      v_renewals := v_renewals + 1;
    end if;
  end loop;
  for v_subscription in
    select s.organization_id, s.stripe_subscription_id, s.trial_end, coalesce(p.name, 'paid') as plan_name
      from app_public.subscriptions s left join app_public.plans p on p.id = s.plan_id
      where s.status = 'trialing' and s.trial_end > send_renewal_reminders.now and s.trial_end <= send_renewal_reminders.now + interval '3 days'
  loop
    -- The same key as the reminder Stripe's trial_will_end causes: whichever comes first is the one sent.
    if app_private.notify_owners(v_subscription.organization_id, 'trial_ending',
        v_subscription.stripe_subscription_id || ':' || extract(epoch from v_subscription.trial_end)::bigint,
        jsonb_build_object('planName', v_subscription.plan_name, 'trialEnd', to_char(v_subscription.trial_end at time zone 'UTC', 'YYYY-MM-DD'))) then
      v_trials := v_trials + 1;
    end if;
  end loop;
  return json_build_object('renewals', v_renewals, 'trials', v_trials);
end;
$$;
comment on function app_private.send_renewal_reminders(timestamptz) is
  'For the subscription_renewal_reminders job: emails owners of active subscriptions that renew within 7 days of `now` (not those set to end), and of trials that end within 3 days, once per subscription and period. Returns how many of each were queued.';

--------------------------------------------------------------------------------
-- Cleanup, in bounded batches
--------------------------------------------------------------------------------

create function app_private.cleanup_batch(category text, batch_size int, now timestamptz) returns int
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
  E'For the cleanup job: removes at most batch_size rows of one category that are past retention at `now` (never later than the database''s clock), and returns how many. Categories: rate_limits and login_failures (1 day), sessions (with their refresh tokens) and email_tokens (7 days after they ended), refresh_tokens (spent 30 days ago), trusted_devices (unused 90 days), invitations (expired 30 days ago, never accepted), unverified_users (7 days old, no organization, not a site admin, no pending invitation, no confirmation link sent in the last 7 days), stripe_event_payloads (90 days; the ids stay), usage_report_emails (30 days), failed_jobs (graphile-worker jobs that used up their attempts 30 days ago).';

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
      'invitations', 'unverified_users', 'stripe_event_payloads', 'usage_report_emails', 'failed_jobs'] loop
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
comment on function app_private.cleanup_expired() is
  'Deprecated: everything cleanup_batch removes, in one transaction (the cleanup job batches instead). Kept so workers of the previous release keep working during a rolling deploy.';

-- What cleanup looks for, found without reading whole tables.
create index if not exists sessions_expires_at_idx on app_private.sessions (expires_at);
create index if not exists sessions_revoked_at_idx on app_private.sessions (revoked_at) where revoked_at is not null;
create index if not exists email_tokens_expires_at_idx on app_private.email_tokens (expires_at);
create index if not exists refresh_tokens_used_at_idx on app_private.refresh_tokens (used_at) where used_at is not null;
create index if not exists organization_invitations_expires_at_idx on app_public.organization_invitations (expires_at) where accepted_at is null;
create index if not exists organization_invitations_email_idx on app_public.organization_invitations (email) where accepted_at is null;
create index if not exists users_unverified_created_at_idx on app_public.users (created_at) where email_verified_at is null;
create index if not exists stripe_events_payload_received_at_idx on app_private.stripe_events (received_at) where payload is not null;

-- Old spent refresh tokens can go while their session lives: a token's child outlives it.
alter table app_private.refresh_tokens drop constraint if exists refresh_tokens_parent_id_fkey;
alter table app_private.refresh_tokens add constraint refresh_tokens_parent_id_fkey
  foreign key (parent_id) references app_private.refresh_tokens on delete set null;
