--! Previous: sha1:f1374aefc8ff16d4a3e92bf2212542e118004405
--! Hash: sha1:5dcb9ca6fb2ab2705fda3199061373710a23d836
--! Message: Identity hardening

--------------------------------------------------------------------------------
-- Identity hardening.
--
-- 1. No secret travels through a job payload (or, with it, a log line): jobs
--    carry the id of an email token, and the job that sends the email makes the
--    token at that moment, stores its hash and puts the token only in the mail.
-- 2. Sign-in throttles answer the same for an address with an account as for
--    one without, slow an attacker down exponentially per address and client,
--    and never lock the real user out: a device that signed in to the account
--    before (it holds a device token), or that reset the password, is not held
--    back by strangers' failures. Attempts are reserved before the password is
--    checked, so guesses sent in parallel count at once.
-- 3. Email verification means something: `app.require_verified_email` (set per
--    request by the API from REQUIRE_VERIFIED_EMAIL) lets functions refuse
--    unverified users.
--------------------------------------------------------------------------------

drop function if exists app_private.cleanup_expired();
drop function if exists app_private.assert_email_verified();
drop function if exists app_private.resend_verification(uuid);
drop function if exists app_private.reset_password(text, text, text);
drop function if exists app_private.reset_password(text, text);
drop function if exists app_private.login_succeeded(uuid, citext, text, uuid, text, text, inet, int);
drop function if exists app_private.login_succeeded(uuid, text, text, inet, int);
drop function if exists app_private.login_failed(uuid, int, interval, interval);
drop function if exists app_private.begin_login_attempt(citext, text, text, int, int, int, int);
drop function if exists app_private.issue_device_token(uuid);
drop function if exists app_private.find_login(citext);
drop function if exists app_private.request_password_reset(citext);
drop function if exists app_private.request_password_reset(citext, text);
drop function if exists app_private.register(citext, text, text, text, inet, int);
drop function if exists app_private.register(citext, text, text, text, text, inet, int);
drop function if exists app_private.email_token_sent(uuid);
drop function if exists app_private.mint_email_token(uuid);
drop function if exists app_private.issue_email_token(uuid, text, interval);
drop function if exists app_private.issue_email_token(uuid, text, interval, text);
drop table if exists app_private.trusted_devices;
drop table if exists app_private.login_failures;

--------------------------------------------------------------------------------
-- Email tokens are made by the job that emails them
--------------------------------------------------------------------------------

alter table app_private.email_tokens alter column token_hash drop not null;
alter table app_private.email_tokens add column if not exists emailed_at timestamptz;
comment on column app_private.email_tokens.token_hash is
  'SHA-256 of the token in the emailed link. Null until the job that sends the email makes the token, so the token itself is never stored, queued or logged.';
comment on column app_private.email_tokens.emailed_at is
  'When the email carrying the link was handed to the mail server; a retried job does not send it twice.';

create function app_private.issue_email_token(user_id uuid, purpose text, ttl interval) returns uuid
language plpgsql volatile
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_id uuid;
begin
  -- A new link replaces older unused ones of the same kind; two requests at once must not leave
  -- two live links, so they take turns on the user's row.
  perform 1 from app_public.users u where u.id = issue_email_token.user_id for no key update;
  update app_private.email_tokens t set used_at = now()
    where t.user_id = issue_email_token.user_id and t.purpose = issue_email_token.purpose and t.used_at is null;
  insert into app_private.email_tokens (user_id, purpose, email, expires_at)
    select u.id, issue_email_token.purpose, u.email, now() + issue_email_token.ttl
    from app_public.users u where u.id = issue_email_token.user_id
    returning id into v_id;
  perform graphile_worker.add_job('auth__send_email_token', json_build_object('id', v_id), max_attempts := 10);
  return v_id;
end;
$$;
comment on function app_private.issue_email_token(uuid, text, interval) is
  'Records a single-use email token (verify_email, reset_password) and queues the job that makes its secret and emails the link; the job payload carries only the id.';

create function app_private.mint_email_token(token_id uuid)
returns table (token text, purpose text, email citext, name text, expires_at timestamptz)
language plpgsql volatile
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_token text := app_private.new_token();
begin
  -- Nothing for a token that was superseded, used, expired, already emailed, or whose account
  -- no longer uses that address: the job then has nothing to send.
  return query
    update app_private.email_tokens t set token_hash = app_private.token_hash(v_token)
    from app_public.users u
    where t.id = mint_email_token.token_id and u.id = t.user_id and u.email = t.email
      and t.used_at is null and t.emailed_at is null and t.expires_at > now()
    returning v_token, t.purpose, t.email, u.name, t.expires_at;
end;
$$;
comment on function app_private.mint_email_token(uuid) is
  'For the sending job: makes the token of a pending email token, stores its hash and returns the token with what the email needs; no row when there is nothing to send.';

create function app_private.email_token_sent(token_id uuid) returns void
language sql volatile
set search_path = pg_catalog, public, pg_temp
as $$
  update app_private.email_tokens set emailed_at = now() where id = email_token_sent.token_id;
$$;
comment on function app_private.email_token_sent(uuid) is 'For the sending job: records that the link was emailed.';

--------------------------------------------------------------------------------
-- Sign-in throttles (they replace the per-account lockout, which told an
-- attacker which addresses have accounts and let anyone lock anyone out)
--------------------------------------------------------------------------------

alter table app_private.user_secrets drop column if exists failed_attempts;
alter table app_private.user_secrets drop column if exists first_failed_at;
alter table app_private.user_secrets drop column if exists locked_until;
comment on table app_private.user_secrets is 'One row per user: the argon2id password hash.';

delete from app_private.rate_limits where length(key) > 320 or length(bucket) > 64;
alter table app_private.rate_limits drop constraint if exists key_length;
alter table app_private.rate_limits add constraint key_length check (length(key) <= 320 and length(bucket) <= 64);

create table app_private.login_failures (
  email citext not null constraint email_length check (length(email) <= 254),
  client text not null constraint client_length check (length(client) <= 64),
  failures int not null,
  last_failed_at timestamptz not null,
  primary key (email, client)
);
comment on table app_private.login_failures is
  'Consecutive wrong passwords per address and client (an IPv4 address or an IPv6 /64), whether or not the address has an account. Past a threshold each further attempt waits twice as long.';
alter table app_private.login_failures enable row level security;

create table app_private.trusted_devices (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null references app_public.users on delete cascade,
  token_hash bytea not null unique,
  failures int not null default 0,
  created_at timestamptz not null default now(),
  last_used_at timestamptz not null default now()
);
create index trusted_devices_user_id_idx on app_private.trusted_devices (user_id);
comment on table app_private.trusted_devices is
  'Devices that proved they are the user (registration, a sign-in or a password reset there), by the SHA-256 of the device token they keep. Strangers'' failures on the address do not slow them down; after 10 wrong passwords in a row a device token stops counting.';
alter table app_private.trusted_devices enable row level security;

create function app_private.issue_device_token(user_id uuid) returns text
language plpgsql volatile
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_token text := app_private.new_token();
begin
  insert into app_private.trusted_devices (user_id, token_hash) values (issue_device_token.user_id, app_private.token_hash(v_token));
  return v_token;
end;
$$;
comment on function app_private.issue_device_token(uuid) is 'A new device token for a device that just proved it is the user; only its hash is kept.';

create function app_private.find_login(email citext, out user_id uuid, out password_hash text)
language sql stable
set search_path = pg_catalog, public, pg_temp
as $$
  select u.id, s.password_hash
  from app_public.users u join app_private.user_secrets s on s.user_id = u.id
  where u.email = btrim(find_login.email)::citext;
$$;
comment on function app_private.find_login(citext) is 'The account and password hash for an email address, if there is one.';

create function app_private.begin_login_attempt(email citext, client text, device_token text,
  backoff_after int, backoff_max_seconds int, email_max int, email_window_seconds int,
  out retry_after int, out device_id uuid)
language plpgsql volatile
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_email citext := lower(btrim(begin_login_attempt.email));
  v_failures app_private.login_failures;
  v_delay int;
begin
  retry_after := 0;
  -- A device the user trusted, presenting its token for this very address: strangers' failures
  -- do not hold it back. Its own attempt counts against it until the password proves right.
  update app_private.trusted_devices d set failures = d.failures + 1
    from app_public.users u
    where d.token_hash = app_private.token_hash(begin_login_attempt.device_token) and u.id = d.user_id
      and u.email = v_email and d.failures < 10
    returning d.id into device_id;
  if device_id is not null then
    return;
  end if;

  -- Everyone else: the same rules whether or not the address has an account, so answers and
  -- timing reveal nothing. The row is locked, so parallel attempts from one client queue here
  -- and each sees the ones before it.
  insert into app_private.login_failures (email, client, failures, last_failed_at)
    values (v_email, begin_login_attempt.client, 0, '-infinity')
    on conflict on constraint login_failures_pkey do nothing;
  select * into v_failures from app_private.login_failures f
    where f.email = v_email and f.client = begin_login_attempt.client for update;
  if v_failures.last_failed_at < now() - interval '1 day' then
    v_failures.failures := 0;
  end if;
  if v_failures.failures >= backoff_after then
    v_delay := least(backoff_max_seconds::numeric, power(2, least(v_failures.failures - backoff_after, 30)))::int;
    retry_after := greatest(0, ceil(extract(epoch from v_failures.last_failed_at + make_interval(secs => v_delay) - now())))::int;
    if retry_after > 0 then
      return;
    end if;
  end if;
  -- Many failures on one address from anywhere hold back every device that cannot show a
  -- device token for it.
  retry_after := app_private.consume_rate_limit('login_failures_email', v_email::text, email_max, email_window_seconds);
  if retry_after > 0 then
    return;
  end if;
  -- Counted as a failure now; a right password takes it back (login_succeeded).
  update app_private.login_failures f set failures = v_failures.failures + 1, last_failed_at = now()
    where f.email = v_email and f.client = begin_login_attempt.client;
end;
$$;
comment on function app_private.begin_login_attempt(citext, text, text, int, int, int, int) is
  'Reserves one sign-in attempt for (address, client) before the password is checked, counting it as a failure until proven right. retry_after > 0: wait that many seconds (after backoff_after failures from a client each attempt waits 2^n s, at most backoff_max_seconds; past email_max failures on the address in a window, devices without a token for it wait for the window). device_id: the trusted device the attempt came from, if any.';

create function app_private.login_succeeded(user_id uuid, email citext, client text, device_id uuid,
  new_password_hash text, user_agent text, ip inet, ttl_seconds int,
  out session_id uuid, out refresh_token text, out expires_at timestamptz, out device_token text)
language plpgsql volatile
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_email citext := lower(btrim(login_succeeded.email));
begin
  update app_private.user_secrets s set password_hash = coalesce(new_password_hash, s.password_hash)
    where s.user_id = login_succeeded.user_id;
  if device_id is not null then
    update app_private.trusted_devices d set failures = 0, last_used_at = now() where d.id = login_succeeded.device_id;
  else
    -- The attempt was counted as a failure in advance: take it back, and trust this device.
    delete from app_private.login_failures f where f.email = v_email and f.client = login_succeeded.client;
    update app_private.rate_limits r set hits = r.hits - 1
      where r.bucket = 'login_failures_email' and r.key = v_email::text and r.hits > 0;
    device_token := app_private.issue_device_token(login_succeeded.user_id);
  end if;
  select s.session_id, s.refresh_token, s.expires_at into session_id, refresh_token, expires_at
    from app_private.open_session(login_succeeded.user_id, user_agent, ip, ttl_seconds) s;
end;
$$;
comment on function app_private.login_succeeded(uuid, citext, text, uuid, text, text, inet, int) is
  'After a right password: takes back the attempt counted in advance, trusts the device (a new device token, unless it came with one), stores a rehashed password when parameters changed, and opens a session.';

--------------------------------------------------------------------------------
-- Registration, reset and verification (links are made by the sending job)
--------------------------------------------------------------------------------

create function app_private.register(email citext, name text, password_hash text,
  user_agent text, ip inet, ttl_seconds int,
  out user_id uuid, out session_id uuid, out refresh_token text, out expires_at timestamptz, out device_token text)
language plpgsql volatile
set search_path = pg_catalog, public, pg_temp
as $$
begin
  begin
    insert into app_public.users (email, name) values (btrim(register.email), btrim(register.name))
      returning id into user_id;
  exception when unique_violation then
    raise exception 'An account with this email address already exists; sign in or reset your password.'
      using errcode = 'OS409', detail = 'email_taken';
  end;
  insert into app_private.user_secrets (user_id, password_hash) values (register.user_id, register.password_hash);
  perform app_private.issue_email_token(register.user_id, 'verify_email', interval '3 days');
  select s.session_id, s.refresh_token, s.expires_at into session_id, refresh_token, expires_at
    from app_private.open_session(register.user_id, user_agent, ip, ttl_seconds) s;
  device_token := app_private.issue_device_token(register.user_id);
end;
$$;
comment on function app_private.register(citext, text, text, text, inet, int) is
  'Creates an account with its password hash, queues the verification email, opens the first session and trusts the device, in one transaction.';

create function app_private.request_password_reset(email citext) returns void
language plpgsql volatile
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_user_id uuid;
begin
  select u.id into v_user_id from app_public.users u where u.email = btrim(request_password_reset.email)::citext;
  if v_user_id is not null then
    perform app_private.issue_email_token(v_user_id, 'reset_password', interval '1 hour');
  end if;
end;
$$;
comment on function app_private.request_password_reset(citext) is
  'Queues a reset link when the address has an account, and does nothing otherwise (callers answer the same either way).';

create function app_private.resend_verification(user_id uuid) returns void
language plpgsql volatile
set search_path = pg_catalog, public, pg_temp
as $$
begin
  if exists (select 1 from app_public.users u where u.id = resend_verification.user_id and u.email_verified_at is not null) then
    raise exception 'Your email address is already confirmed.' using errcode = 'OS409', detail = 'already_verified';
  end if;
  perform app_private.issue_email_token(resend_verification.user_id, 'verify_email', interval '3 days');
end;
$$;
comment on function app_private.resend_verification(uuid) is
  'Emails a fresh verification link (older links stop working); already_verified when there is nothing to confirm.';

create function app_private.reset_password(token text, password_hash text, client text,
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
  perform app_private.revoke_user_sessions(v_token.user_id, null, 'password_reset');
  perform graphile_worker.add_job('send_email', json_build_object(
    'to', v_user.email, 'template', 'password_changed', 'variables', json_build_object('name', v_user.name)));
  user_id := v_token.user_id;
end;
$$;
comment on function app_private.reset_password(text, text, text) is
  'Sets a new password from an emailed reset token, lifts the sign-in throttles that could hold this user back, trusts the device, signs out every session and tells the user by email.';

create function app_private.assert_email_verified() returns void
language plpgsql stable
set search_path = pg_catalog, public, pg_temp
as $$
begin
  if coalesce(nullif(pg_catalog.current_setting('app.require_verified_email', true), ''), 'on') = 'on'
    and exists (select 1 from app_public.users u where u.id = app_public.current_user_id() and u.email_verified_at is null)
  then
    raise exception 'Confirm your email address first: open the link we emailed you, or ask for a new one (POST /auth/resend-verification).'
      using errcode = 'OS403', detail = 'email_not_verified';
  end if;
end;
$$;
comment on function app_private.assert_email_verified() is
  'Raises email_not_verified when the current user has not confirmed their address and the request requires it (setting app.require_verified_email, on unless the API says off).';

--------------------------------------------------------------------------------
-- Cleanup
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
  return json_build_object('rate_limits', v_rate_limits, 'sessions', v_sessions, 'email_tokens', v_email_tokens,
    'login_failures', v_login_failures, 'trusted_devices', v_trusted_devices);
end;
$$;
comment on function app_private.cleanup_expired() is
  'Deletes stale rate-limit counters and sign-in failures, sessions and email tokens that ended over a week ago, and device tokens unused for 90 days; returns how many of each.';
