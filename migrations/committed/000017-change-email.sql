--! Previous: sha1:3ecf7f0f1f98be8eed6861400cce1a87515ac052
--! Hash: sha1:1e4dabdfc03e7641528c30d7e8e6cd084959a61f
--! Message: Change email

--------------------------------------------------------------------------------
-- Changing the email address: the new address confirms it.
--
-- A signed-in user asks for a new address (with their password, checked by the
-- API). A link goes to the new address and a notice to the current one; the
-- address changes only when the link is used. An address that another account
-- already uses gets the same answer, and its owner a "someone tried" notice
-- instead of a link, so nobody can learn which addresses have accounts.
--------------------------------------------------------------------------------

drop function if exists app_private.request_email_change(uuid, citext);
drop function if exists app_private.confirm_email_change(text);
alter table app_private.email_tokens drop constraint if exists new_email_for_change;
alter table app_private.email_tokens drop column if exists new_email;
alter table app_private.email_tokens drop constraint if exists purpose_known;
alter table app_private.email_tokens add constraint purpose_known check (purpose in ('verify_email', 'reset_password', 'change_email'));

alter type app_public.security_event_kind add value if not exists 'email_changed';
comment on type app_public.security_event_kind is E'What happened to an account:\n- signed_in: a session was opened (a sign-in, or a new account)\n- sign_in_failed: a wrong password was given for the account\n- signed_out: a session was signed out\n- session_revoked: a session was ended from another one (revokeSession)\n- sessions_revoked: sessions were ended together (sign out everywhere, a password change or reset, a site administrator); details.reason and details.sessions say why and how many\n- refresh_token_reused: a spent refresh token was presented again, so its session was ended\n- password_changed, password_reset: the password was changed (signed in) or reset (by email link)\n- email_changed: the address was changed (details.from and details.to)\n- account_disabled, account_enabled: a site administrator disabled or re-enabled the account (details.reason says why)';

-- The address a change_email token is sent to (and becomes the account's when used). The
-- token's `email` stays the account's address when it was issued: once that changes, the link is dead.
alter table app_private.email_tokens add column new_email citext
  constraint new_email_format check (new_email ~ '^[^@\s]+@[^@\s]+\.[^@\s]+$' and length(new_email) <= 254);
alter table app_private.email_tokens add constraint new_email_for_change check ((purpose = 'change_email') = (new_email is not null));
comment on column app_private.email_tokens.new_email is 'For change_email: the new address, which the link is sent to.';

create or replace function app_private.mint_email_token(token_id uuid)
returns table (token text, purpose text, email citext, name text, expires_at timestamptz)
language plpgsql volatile
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_token text := app_private.new_token();
begin
  -- Nothing for a token that was superseded, used, expired, already emailed, or whose account
  -- no longer uses the address it was issued for: the job then has nothing to send.
  return query
    update app_private.email_tokens t set token_hash = app_private.token_hash(v_token)
    from app_public.users u
    where t.id = mint_email_token.token_id and u.id = t.user_id and u.email = t.email
      and t.used_at is null and t.emailed_at is null and t.expires_at > now()
    returning v_token, t.purpose, coalesce(t.new_email, t.email), u.name, t.expires_at;
end;
$$;
comment on function app_private.mint_email_token(uuid) is
  'For the sending job: makes the token of a pending email token, stores its hash and returns the token with what the email needs (the address to send it to: the new one for change_email); no row when there is nothing to send.';

create function app_private.request_email_change(user_id uuid, new_email citext) returns void
language plpgsql volatile
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_user app_public.users;
  v_new citext := btrim(new_email);
  v_owner app_public.users;
  v_id uuid;
begin
  select * into v_user from app_public.users u where u.id = request_email_change.user_id for no key update;
  if v_user.email = v_new then
    raise exception 'That is already your email address.' using errcode = 'OS400';
  end if;
  -- The current address hears of it either way (so the answer says nothing about the new one).
  perform graphile_worker.add_job('send_email', json_build_object('to', v_user.email, 'template', 'email_change_requested',
    'variables', json_build_object('name', v_user.name, 'newEmail', v_new)), max_attempts := 10);
  select * into v_owner from app_public.users u where u.email = v_new;
  if v_owner.id is not null then
    perform graphile_worker.add_job('send_email', json_build_object('to', v_owner.email, 'template', 'email_change_attempted',
      'variables', json_build_object('name', v_owner.name)), max_attempts := 10);
    return;
  end if;
  -- A new request replaces an older link.
  update app_private.email_tokens t set used_at = now()
    where t.user_id = v_user.id and t.purpose = 'change_email' and t.used_at is null;
  insert into app_private.email_tokens (user_id, purpose, email, new_email, expires_at)
    values (v_user.id, 'change_email', v_user.email, v_new, now() + interval '1 day')
    returning id into v_id;
  perform graphile_worker.add_job('auth__send_email_token', json_build_object('id', v_id), max_attempts := 10);
end;
$$;
comment on function app_private.request_email_change(uuid, citext) is
  'For /auth/change-email, once the password was checked: emails a confirmation link (1 day) to the new address and a notice to the current one; when another account has the new address, its owner gets a "someone tried" notice instead of a link, and the caller cannot tell the difference.';

create function app_private.confirm_email_change(token text) returns app_public.users
language plpgsql volatile
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_token app_private.email_tokens := app_private.consume_email_token(confirm_email_change.token, 'change_email');
  v_user app_public.users;
begin
  begin
    -- Only while the account still has the address the link was issued for; the new one is confirmed by the link.
    update app_public.users u set email = v_token.new_email, email_verified_at = now()
      where u.id = v_token.user_id and u.email = v_token.email
      returning * into v_user;
  exception when unique_violation then
    raise exception 'Another account took this address in the meantime.' using errcode = 'OS409', detail = 'email_taken';
  end;
  if v_user.id is null then
    raise exception 'This link is invalid, already used or expired; request a new one.' using errcode = 'OS400', detail = 'invalid_token';
  end if;
  -- Links sent to the old address (verification, reset) die with it: mint_email_token checks it.
  perform app_private.record_security_event(v_user.id, 'email_changed', jsonb_build_object('from', v_token.email, 'to', v_user.email));
  return v_user;
end;
$$;
comment on function app_private.confirm_email_change(text) is
  'For /auth/confirm-email-change: spends the link, makes its address the account''s (confirmed), and records it; email_taken if another account took it meanwhile, invalid_token if the account''s address changed since.';
