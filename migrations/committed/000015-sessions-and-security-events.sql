--! Previous: sha1:32569c3922d98d757ecb08db1663877e7c797df1
--! Hash: sha1:86ed8dec1f2c37afcab9222185f1f0efa1f9c7bc
--! Message: Sessions and security events

--------------------------------------------------------------------------------
-- Accounts: a user's sessions and their recent security activity.
--
-- Security events are written by the database itself as things happen: a
-- session opened (sign-in) or ended (signed out, revoked, signed out by a
-- password change or reset, a reused refresh token), a wrong password for an
-- account, a password changed or reset. The user reads their own ("recent
-- security activity"), site administrators anyone's; they are kept 90 days.
-- Sessions are listed to their user only (User.sessions) and ended one at a
-- time with revokeSession, which ends the session's refresh tokens with it and
-- closes its WebSockets within seconds.
--------------------------------------------------------------------------------

drop function if exists app_public.revoke_session(uuid);
drop function if exists app_public.users_sessions(app_public.users);
drop function if exists app_public.user_sessions(uuid);
drop type if exists app_public.user_session;
drop trigger if exists _900_security_events on app_private.sessions;
drop trigger if exists _901_security_events on app_private.sessions;
drop function if exists app_private.tg_sessions__opened();
drop function if exists app_private.tg_sessions__ended();
drop function if exists app_private.record_sign_in_failure(uuid, inet, text);
drop function if exists app_private.record_security_event(uuid, app_public.security_event_kind, jsonb, uuid, inet, text);
drop table if exists app_public.security_events;
drop type if exists app_public.security_event_kind;

create type app_public.security_event_kind as enum (
  'signed_in', 'sign_in_failed', 'signed_out', 'session_revoked', 'sessions_revoked',
  'refresh_token_reused', 'password_changed', 'password_reset'
);
comment on type app_public.security_event_kind is E'What happened to an account:\n- signed_in: a session was opened (a sign-in, or a new account)\n- sign_in_failed: a wrong password was given for the account\n- signed_out: a session was signed out\n- session_revoked: a session was ended from another one (revokeSession)\n- sessions_revoked: sessions were ended together (sign out everywhere, a password change or reset); details.reason and details.sessions say why and how many\n- refresh_token_reused: a spent refresh token was presented again, so its session was ended\n- password_changed, password_reset: the password was changed (signed in) or reset (by email link)';

create table app_public.security_events (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null references app_public.users on delete cascade,
  -- Someone other than the user who caused it (a site administrator); null when the user did.
  actor_id uuid references app_public.users on delete set null,
  kind app_public.security_event_kind not null,
  session_id uuid,
  ip inet,
  user_agent text,
  details jsonb not null default '{}',
  -- The moment itself, not the transaction's start: a password change and the sign-outs it causes keep their order.
  created_at timestamptz not null default clock_timestamp()
);
create index security_events_user_id_idx on app_public.security_events (user_id, created_at desc);
create index security_events_actor_id_idx on app_public.security_events (actor_id);
create index security_events_created_at_idx on app_public.security_events (created_at);
comment on table app_public.security_events is
  E'@behavior -insert -update -delete\nRecent security activity of an account (sign-ins, failed sign-ins, sign-outs, revoked sessions, password changes), written by the database as it happens and kept 90 days. Users read their own; site administrators anyone''s.';
comment on column app_public.security_events.kind is E'@behavior +filterBy\nWhat happened.';
comment on column app_public.security_events.user_id is E'@behavior +filterBy\nWhose account.';
comment on column app_public.security_events.actor_id is 'Who did it, when not the account''s user (a site administrator).';
comment on column app_public.security_events.session_id is 'The session it concerns, when one does (compare with a session''s id in User.sessions).';
comment on column app_public.security_events.ip is 'The client''s address, when known.';
comment on column app_public.security_events.user_agent is 'The client''s User-Agent, when known.';
comment on column app_public.security_events.details is 'More about it, e.g. {"reason": "password_changed", "sessions": 3} for sessions_revoked.';
comment on column app_public.security_events.created_at is E'@behavior +orderBy +filterBy\nWhen it happened.';
comment on constraint security_events_user_id_fkey on app_public.security_events is E'@foreignFieldName securityEvents';
comment on constraint security_events_actor_id_fkey on app_public.security_events is E'@fieldName actor\n@foreignFieldName securityEventsCaused';

alter table app_public.security_events enable row level security;
create policy select_own_or_site_admin on app_public.security_events for select
  using (user_id = (select app_public.current_user_id()) or (select app_public.current_user_is_admin()));
grant select on app_public.security_events to :DATABASE_ANONYMOUS, :DATABASE_USER;

create function app_private.record_security_event(user_id uuid, kind app_public.security_event_kind, details jsonb default '{}',
  session_id uuid default null, ip inet default null, user_agent text default null) returns void
language sql volatile
set search_path = pg_catalog, public, pg_temp
as $$
  insert into app_public.security_events (user_id, actor_id, kind, details, session_id, ip, user_agent)
  values (record_security_event.user_id,
    nullif(app_public.current_user_id(), record_security_event.user_id),
    kind, coalesce(details, '{}'), session_id, ip, left(user_agent, 500));
$$;
comment on function app_private.record_security_event(uuid, app_public.security_event_kind, jsonb, uuid, inet, text) is
  'Records a security event of an account; the actor is the signed-in user of the request when that is someone else.';

create function app_private.record_sign_in_failure(user_id uuid, ip inet, user_agent text) returns void
language sql volatile
set search_path = pg_catalog, public, pg_temp
as $$
  select app_private.record_security_event(user_id, 'sign_in_failed', '{}', null, ip, user_agent) where user_id is not null;
$$;
comment on function app_private.record_sign_in_failure(uuid, inet, text) is
  'For /auth/login: a wrong password was given for this account. Called with null for an unknown address too (it then records nothing), so both answers take the same steps.';

create function app_private.tg_sessions__opened() returns trigger
language plpgsql security definer
set search_path = pg_catalog, public, pg_temp
as $$
begin
  perform app_private.record_security_event(new.user_id, 'signed_in', '{}', new.id, new.ip, new.user_agent);
  return null;
end;
$$;
comment on function app_private.tg_sessions__opened() is 'Trigger: a new session is a sign-in.';
create trigger _900_security_events after insert on app_private.sessions
  for each row execute function app_private.tg_sessions__opened();

-- One event per user and reason per statement: "sign out everywhere" ending five sessions is one line.
create function app_private.tg_sessions__ended() returns trigger
language plpgsql security definer
set search_path = pg_catalog, public, pg_temp
as $$
begin
  insert into app_public.security_events (user_id, actor_id, kind, details, session_id, ip, user_agent)
  select e.user_id, nullif(app_public.current_user_id(), e.user_id),
    case e.reason
      when 'logout' then 'signed_out'
      when 'revoked_by_user' then 'session_revoked'
      when 'refresh_token_reused' then 'refresh_token_reused'
      else 'sessions_revoked'
    end::app_public.security_event_kind,
    jsonb_build_object('reason', e.reason, 'sessions', e.sessions),
    case when e.sessions = 1 then e.session_id end, e.ip, e.user_agent
  from (
    select n.user_id, coalesce(n.revoked_reason, 'revoked') as reason, count(*)::int as sessions,
      min(n.id::text)::uuid as session_id, min(n.ip) as ip, min(n.user_agent) as user_agent
    from new_sessions n join old_sessions o on o.id = n.id
    where o.revoked_at is null and n.revoked_at is not null
    group by n.user_id, coalesce(n.revoked_reason, 'revoked')
  ) e;
  return null;
end;
$$;
comment on function app_private.tg_sessions__ended() is 'Trigger: sessions ended (revoked) are recorded, one event per user and reason per statement.';
create trigger _901_security_events after update on app_private.sessions
  referencing old table as old_sessions new table as new_sessions
  for each statement execute function app_private.tg_sessions__ended();

--------------------------------------------------------------------------------
-- A user's sessions
--------------------------------------------------------------------------------

create type app_public.user_session as (
  id uuid,
  created_at timestamptz,
  last_used_at timestamptz,
  expires_at timestamptz,
  user_agent text,
  ip inet,
  is_current boolean
);
comment on type app_public.user_session is 'A signed-in session (a device or browser), live until it expires or is ended.';
comment on column app_public.user_session.last_used_at is 'When it last refreshed its access token.';
comment on column app_public.user_session.user_agent is 'The User-Agent it signed in with.';
comment on column app_public.user_session.ip is 'The address it signed in from.';
comment on column app_public.user_session.is_current is 'Whether this is the session making the request.';

-- Taking the user's id, not their row: request roles may select only a user's public columns.
create function app_public.user_sessions(user_id uuid) returns setof app_public.user_session
language sql stable security definer
set search_path = pg_catalog, public, pg_temp
as $$
  select s.id, s.created_at, s.last_used_at, s.expires_at, s.user_agent, s.ip, s.id = app_hidden.current_session_id()
  from app_private.sessions s
  where s.user_id = user_sessions.user_id and user_sessions.user_id = app_public.current_user_id()
    and s.revoked_at is null and s.expires_at > now()
  order by s.last_used_at desc, s.id;
$$;
comment on function app_public.user_sessions(uuid) is
  E'@behavior -queryField\nA user''s live sessions, most recently used first, for that user alone (empty for anyone else); User.sessions.';
grant execute on function app_public.user_sessions(uuid) to :DATABASE_ANONYMOUS, :DATABASE_USER;

create function app_public.revoke_session(session_id uuid) returns boolean
language plpgsql volatile security definer
set search_path = pg_catalog, public, pg_temp
as $$
begin
  perform app_private.require_user();
  update app_private.sessions s set revoked_at = now(),
      revoked_reason = case when s.id = app_hidden.current_session_id() then 'logout' else 'revoked_by_user' end
    where s.id = revoke_session.session_id and s.user_id = app_public.current_user_id()
      and s.revoked_at is null and s.expires_at > now();
  if not found then
    raise exception 'Session not found (it may have ended already).' using errcode = 'OS404';
  end if;
  return true;
end;
$$;
comment on function app_public.revoke_session(uuid) is
  E'@resultFieldName revoked\nEnds one of your sessions (another device, or this one): its refresh token stops working and its WebSockets close within seconds.';
revoke all on function app_public.revoke_session(uuid) from public;
grant execute on function app_public.revoke_session(uuid) to :DATABASE_USER;

-- Password changes and resets are recorded (the sessions they end are recorded by the trigger).
create or replace function app_private.change_password(user_id uuid, keep_session_id uuid, password_hash text) returns void
language plpgsql volatile
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_user app_public.users;
begin
  update app_private.user_secrets s set password_hash = change_password.password_hash, password_changed_at = now()
    where s.user_id = change_password.user_id;
  perform app_private.record_security_event(change_password.user_id, 'password_changed', session_id := keep_session_id);
  perform app_private.revoke_user_sessions(change_password.user_id, keep_session_id, 'password_changed');
  select * into v_user from app_public.users where id = change_password.user_id;
  perform graphile_worker.add_job('send_email', json_build_object(
    'to', v_user.email, 'template', 'password_changed', 'variables', json_build_object('name', v_user.name)));
end;
$$;

create or replace function app_private.reset_password(token text, password_hash text, client text,
  out user_id uuid, out device_token text)
language plpgsql volatile
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_token app_private.email_tokens := app_private.consume_email_token(reset_password.token, 'reset_password');
  v_user app_public.users;
begin
  update app_private.user_secrets s set password_hash = reset_password.password_hash, password_changed_at = now()
    where s.user_id = v_token.user_id;
  -- Whoever follows the link proved they read this mailbox.
  update app_public.users u set email_verified_at = coalesce(u.email_verified_at, now())
    where u.id = v_token.user_id and u.email = v_token.email;
  select * into v_user from app_public.users where id = v_token.user_id;
  -- A user who resets their password is never held back: the address's failure window and this
  -- client's failures are forgotten, and this device is trusted. (Other clients' failures stay:
  -- resetting during an attack must not hand the attacker a fresh budget.)
  delete from app_private.login_failures f where f.email = v_user.email and f.client = reset_password.client;
  delete from app_private.rate_limits r where r.bucket = 'login_failures_email' and r.key = lower(v_user.email);
  device_token := app_private.issue_device_token(v_user.id);
  perform app_private.record_security_event(v_token.user_id, 'password_reset');
  perform app_private.revoke_user_sessions(v_token.user_id, null, 'password_reset');
  perform graphile_worker.add_job('send_email', json_build_object(
    'to', v_user.email, 'template', 'password_changed', 'variables', json_build_object('name', v_user.name)));
  user_id := v_token.user_id;
end;
$$;

-- Security events are kept 90 days.
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
  when 'pending_uploads' then
    -- Uploads never completed and now expired (their URL lived 10 minutes). Deleting the row
    -- queues the deletion of whatever was uploaded (storage__delete_objects).
    delete from app_public.files where id = any(array(
      select id from app_public.files where status = 'pending' and created_at < now - app_private.upload_lifetime() limit batch_size));
  when 'security_events' then
    delete from app_public.security_events where id = any(array(
      select id from app_public.security_events where created_at < now - interval '90 days' limit batch_size));
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
  E'For the cleanup job: removes at most batch_size rows of one category that are past retention at `now` (never later than the database''s clock), and returns how many. Categories: rate_limits and login_failures (1 day), sessions (with their refresh tokens) and email_tokens (7 days after they ended), refresh_tokens (spent 30 days ago), trusted_devices (unused 90 days), invitations (expired 30 days ago, never accepted), unverified_users (7 days old, no organization, not a site admin, no pending invitation, no confirmation link sent in the last 7 days), stripe_event_payloads (90 days; the ids stay), usage_report_emails and email_deliveries (30 days), pending_uploads (file rows never completed, once expired: an hour; their objects are deleted by a job), security_events (90 days), failed_jobs (graphile-worker jobs that used up their attempts 30 days ago).';
