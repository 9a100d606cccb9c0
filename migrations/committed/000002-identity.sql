--! Previous: sha1:24f8ce7d70925974f933550e594f09c1d26f6d47
--! Hash: sha1:3385d3f8585c6e5434c2911d3078a25055faacbf
--! Message: Identity: users, sessions, rotating refresh tokens, email tokens, rate limits

--------------------------------------------------------------------------------
-- Identity: users, their secrets, sessions, refresh tokens, single-use email
-- tokens and rate-limit counters.
--
-- The REST auth routes call the app_private functions below through the owner
-- pool: TypeScript only hashes passwords (argon2), signs JWTs and speaks HTTP;
-- every rule (rotation, reuse detection, lockout, expiry, revocation, limits)
-- lives here. Functions that record a failure (a wrong password, a reused
-- refresh token, a rate-limit hit) return an outcome instead of raising, so
-- the counter or revocation they write is committed.
--------------------------------------------------------------------------------

drop function if exists app_private.cleanup_expired();
drop function if exists app_private.consume_rate_limit(text, text, int, int);
drop function if exists app_private.change_password(uuid, uuid, text);
drop function if exists app_private.reset_password(text, text);
drop function if exists app_private.verify_email(text);
drop function if exists app_private.consume_email_token(text, text);
drop function if exists app_private.request_password_reset(citext, text);
drop function if exists app_private.issue_email_token(uuid, text, interval, text);
drop function if exists app_private.revoke_user_sessions(uuid, uuid, text);
drop function if exists app_private.revoke_session(uuid, text);
drop function if exists app_private.revoke_session_by_refresh_token(text, text);
drop function if exists app_private.rotate_refresh_token(text, int, int, int, int);
drop function if exists app_private.session_is_live(uuid, uuid);
drop function if exists app_private.login_succeeded(uuid, text, text, inet, int);
drop function if exists app_private.login_failed(uuid, int, interval, interval);
drop function if exists app_private.find_login(citext);
drop function if exists app_private.register(citext, text, text, text, text, inet, int);
drop function if exists app_private.open_session(uuid, text, inet, int);
drop function if exists app_private.new_token();
drop function if exists app_private.token_hash(text);
drop function if exists app_public.update_current_user(text, text);
drop function if exists app_public."current_user"();
drop table if exists app_private.rate_limits;
drop table if exists app_private.email_tokens;
drop table if exists app_private.refresh_tokens;
drop table if exists app_private.sessions;
drop table if exists app_private.user_secrets;
drop table if exists app_public.users;
drop function if exists app_public.current_user_is_admin();

--------------------------------------------------------------------------------
-- Users
--------------------------------------------------------------------------------

create table app_public.users (
  id uuid primary key default gen_random_uuid(),
  email citext not null unique
    constraint email_format check (email ~ '^[^@\s]+@[^@\s]+\.[^@\s]+$' and length(email) <= 254),
  name text not null constraint name_length check (length(btrim(name)) between 1 and 100),
  avatar_url text constraint avatar_url_format check (avatar_url ~ '^https?://\S+$' and length(avatar_url) <= 2000),
  is_admin boolean not null default false,
  email_verified_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
comment on table app_public.users is E'@behavior -insert -update -delete\nA person who can sign in. You see your own row; site administrators see everyone.';
comment on column app_public.users.id is 'The user''s id.';
comment on column app_public.users.email is 'The address the user signs in with; unique regardless of case.';
comment on column app_public.users.name is 'The name other people see (1 to 100 characters).';
comment on column app_public.users.avatar_url is 'Link to a profile picture (http or https).';
comment on column app_public.users.is_admin is 'Site administrators read every user; granted with `npm run admin:grant`, never through the API.';
comment on column app_public.users.email_verified_at is 'When the user confirmed their email address by following the emailed link; null until then.';
comment on column app_public.users.created_at is 'When the account was created.';
comment on column app_public.users.updated_at is 'When the account was last changed.';

create trigger _100_timestamps before insert or update on app_public.users
  for each row execute function app_private.tg__timestamps();

--------------------------------------------------------------------------------
-- Secrets, sessions and tokens (app_private: no request role can read them)
--------------------------------------------------------------------------------

create table app_private.user_secrets (
  user_id uuid primary key references app_public.users on delete cascade,
  password_hash text not null,
  failed_attempts int not null default 0,
  first_failed_at timestamptz,
  locked_until timestamptz,
  password_changed_at timestamptz not null default now()
);
comment on table app_private.user_secrets is
  'One row per user: the argon2id password hash and the failed-login counter behind the lockout.';

create table app_private.sessions (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null references app_public.users on delete cascade,
  created_at timestamptz not null default now(),
  last_used_at timestamptz not null default now(),
  expires_at timestamptz not null,
  revoked_at timestamptz,
  revoked_reason text,
  user_agent text,
  ip inet
);
create index sessions_user_id_idx on app_private.sessions (user_id);
comment on table app_private.sessions is
  'One row per sign-in. Access tokens name their session; revoking it ends them at once.';

create table app_private.refresh_tokens (
  id uuid primary key default gen_random_uuid(),
  session_id uuid not null references app_private.sessions on delete cascade,
  parent_id uuid references app_private.refresh_tokens on delete cascade,
  token_hash bytea not null unique,
  created_at timestamptz not null default clock_timestamp(),
  used_at timestamptz
);
create index refresh_tokens_session_id_idx on app_private.refresh_tokens (session_id, created_at desc);
create index refresh_tokens_parent_id_idx on app_private.refresh_tokens (parent_id);
comment on table app_private.refresh_tokens is
  'Refresh tokens, only as SHA-256 hashes. Each use spends a token and issues its child; presenting a spent one again is reuse.';

create table app_private.email_tokens (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null references app_public.users on delete cascade,
  purpose text not null constraint purpose_known check (purpose in ('verify_email', 'reset_password')),
  email citext not null,
  token_hash bytea not null unique,
  created_at timestamptz not null default now(),
  expires_at timestamptz not null,
  used_at timestamptz
);
create index email_tokens_user_id_idx on app_private.email_tokens (user_id, purpose);
comment on table app_private.email_tokens is
  'Single-use tokens sent by email (verify address, reset password), only as SHA-256 hashes.';

create table app_private.rate_limits (
  bucket text not null,
  key text not null,
  window_start timestamptz not null,
  hits int not null,
  primary key (bucket, key)
);
comment on table app_private.rate_limits is
  'Fixed-window request counters shared by every API instance, e.g. bucket login_email, key the address.';

alter table app_private.user_secrets enable row level security;
alter table app_private.sessions enable row level security;
alter table app_private.refresh_tokens enable row level security;
alter table app_private.email_tokens enable row level security;
alter table app_private.rate_limits enable row level security;

--------------------------------------------------------------------------------
-- Request identity: a signed-in request counts only while its session is live.
--------------------------------------------------------------------------------

create or replace function app_public.current_user_id() returns uuid
language sql stable security definer
set search_path = pg_catalog, public, pg_temp
as $$
  select s.user_id
  from app_private.sessions s
  where s.id = app_hidden.current_session_id()
    and s.user_id = nullif(pg_catalog.current_setting('jwt.claims.user_id', true), '')::uuid
    and s.revoked_at is null
    and s.expires_at > now();
$$;
comment on function app_public.current_user_id() is
  'The id of the signed-in user making this request, or null when the request is anonymous or its session has ended.';

create function app_public.current_user_is_admin() returns boolean
language sql stable security definer
set search_path = pg_catalog, public, pg_temp
as $$
  select coalesce((select u.is_admin from app_public.users u where u.id = app_public.current_user_id()), false);
$$;
comment on function app_public.current_user_is_admin() is
  'True when the signed-in user is a site administrator.';

create function app_public."current_user"() returns app_public.users
language sql stable
set search_path = pg_catalog, public, pg_temp
as $$
  select u.* from app_public.users u where u.id = app_public.current_user_id();
$$;
comment on function app_public."current_user"() is 'The signed-in user, or null for anonymous requests.';

--------------------------------------------------------------------------------
-- Row-level security on users. A later migration adds a policy letting members
-- of the same organization see each other's public profile (the hook: one more
-- `select` policy, calling a stable helper).
--------------------------------------------------------------------------------

alter table app_public.users enable row level security;

create policy select_self on app_public.users for select
  using (id = (select app_public.current_user_id()));
create policy select_admin on app_public.users for select
  using ((select app_public.current_user_is_admin()));
create policy update_self on app_public.users for update
  using (id = (select app_public.current_user_id()));

grant select on app_public.users to :DATABASE_ANONYMOUS, :DATABASE_USER;
grant update (name, avatar_url) on app_public.users to :DATABASE_USER;

grant execute on function app_public.current_user_id() to :DATABASE_ANONYMOUS, :DATABASE_USER;
grant execute on function app_public.current_user_is_admin() to :DATABASE_ANONYMOUS, :DATABASE_USER;
grant execute on function app_public."current_user"() to :DATABASE_ANONYMOUS, :DATABASE_USER;

create function app_public.update_current_user(name text default null, avatar_url text default null)
returns app_public.users
language plpgsql volatile
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_user app_public.users;
begin
  if app_public.current_user_id() is null then
    raise exception 'Sign in to change your profile.' using errcode = 'OS401';
  end if;
  update app_public.users u set
    name = coalesce(update_current_user.name, u.name),
    avatar_url = case
      when update_current_user.avatar_url is null then u.avatar_url
      when update_current_user.avatar_url = '' then null
      else update_current_user.avatar_url
    end
  where u.id = app_public.current_user_id()
  returning u.* into v_user;
  return v_user;
end;
$$;
comment on function app_public.update_current_user(text, text) is
  E'@resultFieldName user\nChanges your name and/or avatar. Omitted fields stay as they are; an empty avatarUrl removes the picture.';
grant execute on function app_public.update_current_user(text, text) to :DATABASE_USER;

--------------------------------------------------------------------------------
-- Tokens: 256 random bits, URL-safe; only their SHA-256 is stored.
--------------------------------------------------------------------------------

create function app_private.new_token() returns text
language sql volatile
set search_path = pg_catalog, public, pg_temp
as $$
  select pg_catalog.rtrim(pg_catalog.translate(pg_catalog.encode(public.gen_random_bytes(32), 'base64'), '+/', '-_'), '=');
$$;
comment on function app_private.new_token() is 'A fresh 256-bit random token, base64url without padding.';

create function app_private.token_hash(token text) returns bytea
language sql immutable strict
set search_path = pg_catalog, public, pg_temp
as $$
  select public.digest(token, 'sha256');
$$;
comment on function app_private.token_hash(text) is 'SHA-256 of a token: what the tables store instead of the token.';

--------------------------------------------------------------------------------
-- Sessions
--------------------------------------------------------------------------------

create function app_private.open_session(user_id uuid, user_agent text, ip inet, ttl_seconds int,
  out session_id uuid, out refresh_token text, out expires_at timestamptz)
language plpgsql volatile
set search_path = pg_catalog, public, pg_temp
as $$
begin
  insert into app_private.sessions (user_id, expires_at, user_agent, ip)
    values (open_session.user_id, now() + make_interval(secs => ttl_seconds), left(open_session.user_agent, 512), open_session.ip)
    returning id, sessions.expires_at into session_id, expires_at;
  refresh_token := app_private.new_token();
  insert into app_private.refresh_tokens (session_id, token_hash)
    values (open_session.session_id, app_private.token_hash(refresh_token));
end;
$$;
comment on function app_private.open_session(uuid, text, inet, int) is
  'Starts a session for a user who just proved who they are; returns its first refresh token.';

create function app_private.session_is_live(session_id uuid, user_id uuid) returns boolean
language sql stable
set search_path = pg_catalog, public, pg_temp
as $$
  select exists (
    select 1 from app_private.sessions s
    where s.id = session_is_live.session_id and s.user_id = session_is_live.user_id
      and s.revoked_at is null and s.expires_at > now()
  );
$$;
comment on function app_private.session_is_live(uuid, uuid) is
  'True while the session exists for that user, is not revoked and has not expired.';

create function app_private.revoke_session(session_id uuid, reason text) returns void
language sql volatile
set search_path = pg_catalog, public, pg_temp
as $$
  update app_private.sessions set revoked_at = now(), revoked_reason = reason
  where id = revoke_session.session_id and revoked_at is null;
$$;
comment on function app_private.revoke_session(uuid, text) is 'Ends one session at once (logout).';

create function app_private.revoke_session_by_refresh_token(token text, reason text) returns uuid
language sql volatile
set search_path = pg_catalog, public, pg_temp
as $$
  update app_private.sessions s set revoked_at = now(), revoked_reason = reason
  from app_private.refresh_tokens t
  where t.token_hash = app_private.token_hash(token) and s.id = t.session_id and s.revoked_at is null
  returning s.id;
$$;
comment on function app_private.revoke_session_by_refresh_token(text, text) is
  'Ends the session a refresh token belongs to; returns its id, or null when nothing was live.';

create function app_private.revoke_user_sessions(user_id uuid, except_session_id uuid, reason text) returns int
language sql volatile
set search_path = pg_catalog, public, pg_temp
as $$
  with revoked as (
    update app_private.sessions s set revoked_at = now(), revoked_reason = reason
    where s.user_id = revoke_user_sessions.user_id and s.revoked_at is null
      and s.id is distinct from except_session_id
    returning 1
  )
  select count(*)::int from revoked;
$$;
comment on function app_private.revoke_user_sessions(uuid, uuid, text) is
  'Ends every live session of a user except one (null: all); returns how many ended.';

--------------------------------------------------------------------------------
-- Refresh-token rotation with reuse detection (OAuth 2.0 security BCP) and a
-- grace window for tabs refreshing at once.
--------------------------------------------------------------------------------

create function app_private.rotate_refresh_token(token text, grace_seconds int, ttl_seconds int,
  max_per_window int, window_seconds int,
  out outcome text, out user_id uuid, out session_id uuid, out refresh_token text, out expires_at timestamptz,
  out retry_after int)
language plpgsql volatile
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_token app_private.refresh_tokens;
  v_session app_private.sessions;
  v_newest app_private.refresh_tokens;
begin
  select * into v_token from app_private.refresh_tokens
    where token_hash = app_private.token_hash(token) for update;
  if not found then
    outcome := 'invalid';
    return;
  end if;
  select * into v_session from app_private.sessions where id = v_token.session_id for update;
  if v_session.revoked_at is not null or v_session.expires_at <= now() then
    outcome := 'session_ended';
    return;
  end if;
  retry_after := app_private.consume_rate_limit('refresh_session', v_session.id::text, max_per_window, window_seconds);
  if retry_after > 0 then
    outcome := 'rate_limited';
    return;
  end if;

  if v_token.used_at is not null then
    select * into v_newest from app_private.refresh_tokens
      where refresh_tokens.session_id = v_token.session_id order by created_at desc limit 1;
    -- Another tab spent this token a moment ago: answer with a fresh sibling.
    if v_newest.parent_id = v_token.id and v_token.used_at > now() - make_interval(secs => grace_seconds) then
      outcome := 'rotated_in_grace';
    else
      perform app_private.revoke_session(v_session.id, 'refresh_token_reused');
      outcome := 'reused';
      user_id := v_session.user_id;
      session_id := v_session.id;
      return;
    end if;
  else
    update app_private.refresh_tokens set used_at = now() where id = v_token.id;
    -- Siblings issued in a grace window are superseded once one of them is used.
    update app_private.refresh_tokens set used_at = now()
      where refresh_tokens.session_id = v_token.session_id and used_at is null and id <> v_token.id;
    outcome := 'rotated';
  end if;

  refresh_token := app_private.new_token();
  insert into app_private.refresh_tokens (session_id, parent_id, token_hash)
    values (v_session.id, v_token.id, app_private.token_hash(refresh_token));
  update app_private.sessions set last_used_at = now(), expires_at = now() + make_interval(secs => ttl_seconds)
    where id = v_session.id
    returning sessions.expires_at into expires_at;
  user_id := v_session.user_id;
  session_id := v_session.id;
end;
$$;
comment on function app_private.rotate_refresh_token(text, int, int, int, int) is
  'Spends a refresh token and issues its successor. outcome: rotated, rotated_in_grace (the parent of the newest token within the grace window), reused (session revoked), rate_limited (see retry_after), session_ended or invalid.';

--------------------------------------------------------------------------------
-- Email tokens and the jobs that send them
--------------------------------------------------------------------------------

create function app_private.issue_email_token(user_id uuid, purpose text, ttl interval, link_base text) returns void
language plpgsql volatile
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_user app_public.users;
  v_token text := app_private.new_token();
begin
  select * into v_user from app_public.users where id = issue_email_token.user_id;
  -- A new link replaces older unused ones of the same kind.
  update app_private.email_tokens t set used_at = now()
    where t.user_id = v_user.id and t.purpose = issue_email_token.purpose and t.used_at is null;
  insert into app_private.email_tokens (user_id, purpose, email, token_hash, expires_at)
    values (v_user.id, issue_email_token.purpose, v_user.email, app_private.token_hash(v_token), now() + ttl);
  perform graphile_worker.add_job(
    'send_email',
    json_build_object(
      'to', v_user.email,
      'template', issue_email_token.purpose,
      'variables', json_build_object(
        'name', v_user.name,
        'link', link_base || case issue_email_token.purpose when 'verify_email' then '/verify-email' else '/reset-password' end || '?token=' || v_token
      )
    ),
    max_attempts := 10
  );
end;
$$;
comment on function app_private.issue_email_token(uuid, text, interval, text) is
  'Creates a single-use token and queues the email carrying its link, in the caller''s transaction.';

create function app_private.register(email citext, name text, password_hash text, link_base text,
  user_agent text, ip inet, ttl_seconds int,
  out user_id uuid, out session_id uuid, out refresh_token text, out expires_at timestamptz)
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
  perform app_private.issue_email_token(register.user_id, 'verify_email', interval '3 days', link_base);
  select s.session_id, s.refresh_token, s.expires_at into session_id, refresh_token, expires_at
    from app_private.open_session(register.user_id, user_agent, ip, ttl_seconds) s;
end;
$$;
comment on function app_private.register(citext, text, text, text, text, inet, int) is
  'Creates an account with its password hash, queues the verification email and opens the first session, in one transaction.';

--------------------------------------------------------------------------------
-- Login: the API verifies the argon2 hash between find_login and one of
-- login_failed / login_succeeded.
--------------------------------------------------------------------------------

create function app_private.find_login(email citext,
  out user_id uuid, out password_hash text, out locked_until timestamptz)
language sql stable
set search_path = pg_catalog, public, pg_temp
as $$
  select u.id, s.password_hash, case when s.locked_until > now() then s.locked_until end
  from app_public.users u join app_private.user_secrets s on s.user_id = u.id
  where u.email = btrim(find_login.email)::citext;
$$;
comment on function app_private.find_login(citext) is
  'The account and password hash for an email address, and until when it is locked (null when it is not).';

create function app_private.login_failed(user_id uuid, max_failures int, failure_window interval, lock_for interval)
returns timestamptz
language plpgsql volatile
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_secrets app_private.user_secrets;
begin
  update app_private.user_secrets s set
    failed_attempts = case when s.first_failed_at > now() - failure_window then s.failed_attempts + 1 else 1 end,
    first_failed_at = case when s.first_failed_at > now() - failure_window then s.first_failed_at else now() end
  where s.user_id = login_failed.user_id
  returning * into v_secrets;
  if v_secrets.failed_attempts >= max_failures then
    update app_private.user_secrets s set locked_until = now() + lock_for, failed_attempts = 0, first_failed_at = null
      where s.user_id = login_failed.user_id;
    return now() + lock_for;
  end if;
  return null;
end;
$$;
comment on function app_private.login_failed(uuid, int, interval, interval) is
  'Counts a wrong password; after max_failures within failure_window the account locks for lock_for. Returns the lock''s end, or null.';

create function app_private.login_succeeded(user_id uuid, new_password_hash text, user_agent text, ip inet, ttl_seconds int,
  out session_id uuid, out refresh_token text, out expires_at timestamptz)
language plpgsql volatile
set search_path = pg_catalog, public, pg_temp
as $$
begin
  update app_private.user_secrets s set
    failed_attempts = 0, first_failed_at = null, locked_until = null,
    password_hash = coalesce(new_password_hash, s.password_hash)
  where s.user_id = login_succeeded.user_id;
  select s.session_id, s.refresh_token, s.expires_at into session_id, refresh_token, expires_at
    from app_private.open_session(login_succeeded.user_id, user_agent, ip, ttl_seconds) s;
end;
$$;
comment on function app_private.login_succeeded(uuid, text, text, inet, int) is
  'Clears the failure counter, stores a rehashed password when parameters changed, and opens a session.';

--------------------------------------------------------------------------------
-- Verification, password reset and change
--------------------------------------------------------------------------------

create function app_private.consume_email_token(token text, purpose text) returns app_private.email_tokens
language plpgsql volatile
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_token app_private.email_tokens;
begin
  update app_private.email_tokens t set used_at = now()
    where t.token_hash = app_private.token_hash(consume_email_token.token) and t.purpose = consume_email_token.purpose
      and t.used_at is null and t.expires_at > now()
    returning * into v_token;
  if not found then
    raise exception 'This link is invalid, already used or expired; request a new one.'
      using errcode = 'OS400', detail = 'invalid_token';
  end if;
  return v_token;
end;
$$;
comment on function app_private.consume_email_token(text, text) is
  'Spends a live emailed token of the given purpose and returns it; raises invalid_token when it is unknown, spent or expired.';

create function app_private.verify_email(token text) returns app_public.users
language plpgsql volatile
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_token app_private.email_tokens := app_private.consume_email_token(verify_email.token, 'verify_email');
  v_user app_public.users;
begin
  update app_public.users u set email_verified_at = coalesce(u.email_verified_at, now())
    where u.id = v_token.user_id and u.email = v_token.email
    returning * into v_user;
  if not found then
    raise exception 'This verification link was for an address the account no longer uses.'
      using errcode = 'OS400', detail = 'invalid_token';
  end if;
  return v_user;
end;
$$;
comment on function app_private.verify_email(text) is 'Marks the address as verified, spending the emailed token.';

create function app_private.request_password_reset(email citext, link_base text) returns void
language plpgsql volatile
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_user_id uuid;
begin
  select u.id into v_user_id from app_public.users u where u.email = btrim(request_password_reset.email)::citext;
  if v_user_id is not null then
    perform app_private.issue_email_token(v_user_id, 'reset_password', interval '1 hour', link_base);
  end if;
end;
$$;
comment on function app_private.request_password_reset(citext, text) is
  'Queues a reset link when the address has an account, and does nothing otherwise (callers answer the same either way).';

create function app_private.reset_password(token text, password_hash text) returns uuid
language plpgsql volatile
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_token app_private.email_tokens := app_private.consume_email_token(reset_password.token, 'reset_password');
  v_user app_public.users;
begin
  update app_private.user_secrets s set password_hash = reset_password.password_hash, password_changed_at = now(),
    failed_attempts = 0, first_failed_at = null, locked_until = null
    where s.user_id = v_token.user_id;
  -- Whoever follows the link proved they read this mailbox.
  update app_public.users u set email_verified_at = coalesce(u.email_verified_at, now())
    where u.id = v_token.user_id and u.email = v_token.email;
  perform app_private.revoke_user_sessions(v_token.user_id, null, 'password_reset');
  select * into v_user from app_public.users where id = v_token.user_id;
  perform graphile_worker.add_job('send_email', json_build_object(
    'to', v_user.email, 'template', 'password_changed', 'variables', json_build_object('name', v_user.name)));
  return v_token.user_id;
end;
$$;
comment on function app_private.reset_password(text, text) is
  'Sets a new password from an emailed reset token, signs out every session and tells the user by email.';

create function app_private.change_password(user_id uuid, keep_session_id uuid, password_hash text) returns void
language plpgsql volatile
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_user app_public.users;
begin
  update app_private.user_secrets s set password_hash = change_password.password_hash, password_changed_at = now()
    where s.user_id = change_password.user_id;
  perform app_private.revoke_user_sessions(change_password.user_id, keep_session_id, 'password_changed');
  select * into v_user from app_public.users where id = change_password.user_id;
  perform graphile_worker.add_job('send_email', json_build_object(
    'to', v_user.email, 'template', 'password_changed', 'variables', json_build_object('name', v_user.name)));
end;
$$;
comment on function app_private.change_password(uuid, uuid, text) is
  'Stores a new password hash, signs out every other session and tells the user by email.';

--------------------------------------------------------------------------------
-- Rate limits and cleanup
--------------------------------------------------------------------------------

create function app_private.consume_rate_limit(bucket text, key text, max_hits int, window_seconds int) returns int
language plpgsql volatile
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_row app_private.rate_limits;
begin
  insert into app_private.rate_limits as r (bucket, key, window_start, hits)
    values (consume_rate_limit.bucket, consume_rate_limit.key, now(), 1)
  on conflict on constraint rate_limits_pkey do update set
    hits = case when r.window_start <= now() - make_interval(secs => window_seconds) then 1 else r.hits + 1 end,
    window_start = case when r.window_start <= now() - make_interval(secs => window_seconds) then now() else r.window_start end
  returning * into v_row;
  if v_row.hits <= max_hits then
    return 0;
  end if;
  return greatest(1, ceil(extract(epoch from v_row.window_start + make_interval(secs => window_seconds) - now())))::int;
end;
$$;
comment on function app_private.consume_rate_limit(text, text, int, int) is
  'Counts one hit for (bucket, key) in a fixed window; returns 0 when allowed, else the seconds until the window resets.';

create function app_private.cleanup_expired() returns json
language plpgsql volatile
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_rate_limits int;
  v_sessions int;
  v_email_tokens int;
begin
  delete from app_private.rate_limits where window_start < now() - interval '1 day';
  get diagnostics v_rate_limits = row_count;
  delete from app_private.sessions
    where expires_at < now() - interval '7 days' or revoked_at < now() - interval '7 days';
  get diagnostics v_sessions = row_count;
  delete from app_private.email_tokens
    where expires_at < now() - interval '7 days' or used_at < now() - interval '7 days';
  get diagnostics v_email_tokens = row_count;
  return json_build_object('rate_limits', v_rate_limits, 'sessions', v_sessions, 'email_tokens', v_email_tokens);
end;
$$;
comment on function app_private.cleanup_expired() is
  'Deletes stale rate-limit counters and sessions and email tokens that ended over a week ago; returns how many of each.';
