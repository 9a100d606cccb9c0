--! Previous: sha1:86ed8dec1f2c37afcab9222185f1f0efa1f9c7bc
--! Hash: sha1:3ecf7f0f1f98be8eed6861400cce1a87515ac052
--! Message: Site administration

--------------------------------------------------------------------------------
-- Site administration: site administrators (users.is_admin, granted with
-- npm run admin:grant) find any user, disable and re-enable accounts, and end
-- a user's sessions. Every function checks the caller in SQL, and every action
-- is recorded in the user's security events with the administrator as actor.
--
-- A disabled account cannot sign in (the same answer as a wrong password), and
-- no session can be opened for it; disabling it ends its sessions at once.
--------------------------------------------------------------------------------

drop function if exists app_public.admin_search_users(text, boolean, boolean, timestamptz, timestamptz);
drop function if exists app_public.admin_disable_user(uuid, text);
drop function if exists app_public.admin_enable_user(uuid);
drop function if exists app_public.admin_revoke_user_sessions(uuid);
drop function if exists app_public.user_disabled_at(uuid);
drop function if exists app_private.require_site_admin();
drop trigger if exists _050_not_disabled on app_private.sessions;
drop function if exists app_private.tg_sessions__not_disabled();
alter table app_public.users drop column if exists disabled_at;

alter type app_public.security_event_kind add value if not exists 'account_disabled';
alter type app_public.security_event_kind add value if not exists 'account_enabled';
comment on type app_public.security_event_kind is E'What happened to an account:\n- signed_in: a session was opened (a sign-in, or a new account)\n- sign_in_failed: a wrong password was given for the account\n- signed_out: a session was signed out\n- session_revoked: a session was ended from another one (revokeSession)\n- sessions_revoked: sessions were ended together (sign out everywhere, a password change or reset, a site administrator); details.reason and details.sessions say why and how many\n- refresh_token_reused: a spent refresh token was presented again, so its session was ended\n- password_changed, password_reset: the password was changed (signed in) or reset (by email link)\n- account_disabled, account_enabled: a site administrator disabled or re-enabled the account (details.reason says why)';

-- No request role may select it: visible to site administrators (and the user) through user_disabled_at.
alter table app_public.users add column disabled_at timestamptz;
comment on column app_public.users.disabled_at is E'@behavior -*\nWhen a site administrator disabled the account; null while it may sign in.';

create function app_private.require_site_admin() returns uuid
language plpgsql stable
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_user_id uuid := app_private.require_user();
begin
  if not app_public.current_user_is_admin() then
    raise exception 'Only site administrators can do this.' using errcode = 'OS403';
  end if;
  return v_user_id;
end;
$$;
comment on function app_private.require_site_admin() is 'The current user''s id when they are a site administrator; raises unauthenticated or forbidden otherwise.';

create function app_public.user_disabled_at(user_id uuid) returns timestamptz
language sql stable security definer
set search_path = pg_catalog, public, pg_temp
as $$
  select u.disabled_at from app_public.users u
  where u.id = user_disabled_at.user_id and (u.id = app_public.current_user_id() or app_public.current_user_is_admin());
$$;
comment on function app_public.user_disabled_at(uuid) is
  E'@behavior -queryField\nWhen the account was disabled; visible to site administrators only (null for anyone else).';
grant execute on function app_public.user_disabled_at(uuid) to :DATABASE_ANONYMOUS, :DATABASE_USER;

-- A disabled account gets no session, whatever the path (sign-in, registration, a reset link).
create function app_private.tg_sessions__not_disabled() returns trigger
language plpgsql
set search_path = pg_catalog, public, pg_temp
as $$
begin
  if exists (select 1 from app_public.users u where u.id = new.user_id and u.disabled_at is not null) then
    raise exception 'This account is disabled.' using errcode = 'OS403', detail = 'account_disabled';
  end if;
  return new;
end;
$$;
comment on function app_private.tg_sessions__not_disabled() is 'Trigger: no session opens for a disabled account.';
create trigger _050_not_disabled before insert on app_private.sessions
  for each row execute function app_private.tg_sessions__not_disabled();

-- Sign-in finds no disabled account: the answer is the same as for a wrong password.
create or replace function app_private.find_login(email citext, out user_id uuid, out password_hash text)
language sql stable
set search_path = pg_catalog, public, pg_temp
as $$
  select u.id, s.password_hash
  from app_public.users u join app_private.user_secrets s on s.user_id = u.id
  where u.email = btrim(find_login.email)::citext and u.disabled_at is null;
$$;
comment on function app_private.find_login(citext) is 'The account and password hash for an email address, if there is one and it is not disabled.';

create function app_public.admin_search_users(search text default null, verified boolean default null, disabled boolean default null,
  created_after timestamptz default null, created_before timestamptz default null) returns setof app_public.users
language plpgsql stable security definer
set search_path = pg_catalog, public, pg_temp
as $$
declare
  -- The search as a literal substring: its % and _ (and the escape character) match themselves.
  v_pattern text := '%' || replace(replace(replace(nullif(btrim(search), ''), chr(92), chr(92) || chr(92)), '%', chr(92) || '%'), '_', chr(92) || '_') || '%';
begin
  perform app_private.require_site_admin();
  return query
    select u.* from app_public.users u
    where (v_pattern is null or u.email ilike v_pattern or u.name ilike v_pattern)
      and (verified is null or (u.email_verified_at is not null) = verified)
      and (disabled is null or (u.disabled_at is not null) = disabled)
      and (created_after is null or u.created_at >= created_after)
      and (created_before is null or u.created_at < created_before)
    order by u.created_at desc, u.id;
end;
$$;
comment on function app_public.admin_search_users(text, boolean, boolean, timestamptz, timestamptz) is
  E'@sortable false\nSite administrators: every user, newest first, narrowed by a search in email and name, whether the address is verified, whether the account is disabled, and when it was created (from created_after, before created_before). Anyone else: forbidden.';

create function app_public.admin_disable_user(user_id uuid, reason text default null) returns app_public.users
language plpgsql volatile security definer
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_admin_id uuid := app_private.require_site_admin();
  v_user app_public.users;
begin
  if admin_disable_user.user_id = v_admin_id then
    raise exception 'You cannot disable your own account.' using errcode = 'OS409';
  end if;
  if length(reason) > 500 then
    raise exception 'reason must be at most 500 characters.' using errcode = 'OS400';
  end if;
  update app_public.users u set disabled_at = coalesce(u.disabled_at, now())
    where u.id = admin_disable_user.user_id returning * into v_user;
  if v_user.id is null then
    raise exception 'User not found.' using errcode = 'OS404';
  end if;
  perform app_private.record_security_event(v_user.id, 'account_disabled', jsonb_strip_nulls(jsonb_build_object('reason', nullif(btrim(reason), ''))));
  perform app_private.revoke_user_sessions(v_user.id, null, 'account_disabled');
  return v_user;
end;
$$;
comment on function app_public.admin_disable_user(uuid, text) is
  E'@resultFieldName user\nSite administrators: disables an account. Its sessions end at once (WebSockets close within seconds), it cannot sign in (the same answer as a wrong password) and no session can be opened for it. Recorded in its security events with you as actor.';

create function app_public.admin_enable_user(user_id uuid) returns app_public.users
language plpgsql volatile security definer
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_user app_public.users;
begin
  perform app_private.require_site_admin();
  update app_public.users u set disabled_at = null where u.id = admin_enable_user.user_id returning * into v_user;
  if v_user.id is null then
    raise exception 'User not found.' using errcode = 'OS404';
  end if;
  perform app_private.record_security_event(v_user.id, 'account_enabled');
  return v_user;
end;
$$;
comment on function app_public.admin_enable_user(uuid) is
  E'@resultFieldName user\nSite administrators: lets a disabled account sign in again. Recorded in its security events with you as actor.';

create function app_public.admin_revoke_user_sessions(user_id uuid) returns int
language plpgsql volatile security definer
set search_path = pg_catalog, public, pg_temp
as $$
begin
  perform app_private.require_site_admin();
  if not exists (select 1 from app_public.users u where u.id = admin_revoke_user_sessions.user_id) then
    raise exception 'User not found.' using errcode = 'OS404';
  end if;
  return app_private.revoke_user_sessions(admin_revoke_user_sessions.user_id, null, 'revoked_by_admin');
end;
$$;
comment on function app_public.admin_revoke_user_sessions(uuid) is
  E'@resultFieldName sessions\nSite administrators: ends every session of a user (they must sign in again); returns how many. Recorded in their security events with you as actor.';

revoke all on function app_public.admin_search_users(text, boolean, boolean, timestamptz, timestamptz), app_public.admin_disable_user(uuid, text),
  app_public.admin_enable_user(uuid), app_public.admin_revoke_user_sessions(uuid) from public;
grant execute on function app_public.admin_search_users(text, boolean, boolean, timestamptz, timestamptz), app_public.admin_disable_user(uuid, text),
  app_public.admin_enable_user(uuid), app_public.admin_revoke_user_sessions(uuid) to :DATABASE_USER;
