--! Previous: sha1:31aad69e2b1b85c1f5963f780eb6c79273cfb5f9
--! Hash: sha1:8c98f23a74a1493164bc3e55055a5721e23c0c5a
--! Message: Accounts second review

--------------------------------------------------------------------------------
-- Accounts, after a second review.
--
-- - Data export links die with the steps that secure an account (sign out
--   everywhere, a new password, a disabled or closing account, a new address),
--   and no export is sent to or downloaded for a disabled account.
-- - A closing (disabled) owner is no owner: the last active owner cannot leave
--   or be demoted while a co-owner's account is being deleted, so deletion can
--   no longer strand an organization; account deletion looks at each
--   organization after locking it.
-- - The upload functions are the signed-in user's only.
--------------------------------------------------------------------------------

revoke execute on function app_hidden.create_upload(app_public.file_purpose, uuid, text, text, bigint), app_hidden.upload_to_complete(uuid),
  app_hidden.complete_upload(uuid, bigint, text), app_hidden.discard_upload(uuid) from :DATABASE_ANONYMOUS;

comment on function app_public.revoke_session(uuid) is
  E'@resultFieldName revoked\nEnds one of your sessions (another device, or this one): its refresh token stops working and its WebSockets close at once.';
comment on function app_public.admin_disable_user(uuid, text) is
  E'@resultFieldName user\nSite administrators: disables an account. Its sessions end and its WebSockets close at once, it cannot sign in (the same answer as a wrong password) and no session can be opened for it. Recorded in its security events with you as actor.';

create or replace function app_private.revoke_user_sessions(user_id uuid, except_session_id uuid, reason text) returns int
language sql volatile
set search_path = pg_catalog, public, pg_temp
as $$
  -- Whatever made every session end (sign out everywhere, a new password, a disabled account)
  -- also ends a pending change of address: it may be an intruder's.
  with cancelled as (
    update app_private.email_tokens t set used_at = now()
    where t.user_id = revoke_user_sessions.user_id and t.purpose = 'change_email' and t.used_at is null
    returning 1
  ), exports as (
    -- ...and the data export links already emailed: they may be read by the same intruder.
    update app_private.data_exports e set expires_at = now()
    where e.user_id = revoke_user_sessions.user_id and e.expires_at > now()
    returning 1
  ), revoked as (
    update app_private.sessions s set revoked_at = now(), revoked_reason = reason
    where s.user_id = revoke_user_sessions.user_id and s.revoked_at is null
      and s.id is distinct from except_session_id
    returning 1
  )
  select count(*)::int from revoked;
$$;

create or replace function app_private.confirm_email_change(token text) returns app_public.users
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
      where u.id = v_token.user_id and u.email = v_token.email and u.disabled_at is null
      returning * into v_user;
  exception when unique_violation then
    raise exception 'Another account took this address in the meantime.' using errcode = 'OS409', detail = 'email_taken';
  end;
  if v_user.id is null then
    raise exception 'This link is invalid, already used or expired; request a new one.' using errcode = 'OS400', detail = 'invalid_token';
  end if;
  -- Every other link of the account dies with the old address (reset and verification links
  -- already emailed there, other email changes).
  update app_private.email_tokens t set used_at = now() where t.user_id = v_user.id and t.used_at is null;
  update app_private.data_exports e set expires_at = now() where e.user_id = v_user.id and e.expires_at > now();
  perform app_private.record_security_event(v_user.id, 'email_changed', jsonb_build_object('from', v_token.email, 'to', v_user.email));
  return v_user;
end;
$$;

create or replace function app_private.mint_data_export_token(export_id uuid)
returns table (token text, email citext, name text)
language plpgsql volatile
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_token text := app_private.new_token();
begin
  return query
    update app_private.data_exports e set token_hash = app_private.token_hash(v_token), expires_at = now() + interval '24 hours'
    from app_public.users u
    where e.id = mint_data_export_token.export_id and u.id = e.user_id and e.built_at is not null and u.disabled_at is null
    returning v_token, u.email, u.name;
end;
$$;

create or replace function app_private.data_export_by_token(token text) returns jsonb
language plpgsql stable
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_document jsonb;
begin
  select e.document into v_document from app_private.data_exports e
    where e.token_hash = app_private.token_hash(data_export_by_token.token) and e.expires_at > now()
      and exists (select 1 from app_public.users u where u.id = e.user_id and u.disabled_at is null);
  if v_document is null then
    raise exception 'This export link is invalid or has expired (links last 24 hours); ask for a new export.'
      using errcode = 'OS400', detail = 'invalid_token';
  end if;
  return v_document;
end;
$$;

create or replace function app_private.tg_memberships__keep_an_owner() returns trigger
language plpgsql
set search_path = pg_catalog, public, pg_temp
as $$
begin
  if old.role <> 'owner' then
    return null;
  end if;
  -- Two owners leaving (or demoting each other) at once: the second waits here and then sees
  -- the first one's change.
  perform app_private.lock_organization(old.organization_id);
  if exists (select 1 from app_public.organizations o where o.id = old.organization_id)
    and not exists (
      -- A disabled (closing) account is no owner to leave an organization to.
      select 1 from app_public.organization_memberships m join app_public.users u on u.id = m.user_id
      where m.organization_id = old.organization_id and m.role = 'owner' and u.disabled_at is null
    )
  then
    raise exception 'An organization needs at least one owner: make someone else owner first (transferOwnership), or delete the organization.'
      using errcode = 'OS409', detail = 'last_owner';
  end if;
  return null;
end;
$$;

create or replace function app_private.assert_account_deletable(user_id uuid) returns void
language plpgsql volatile
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_organization record;
  v_state record;
  v_obstacle text;
begin
  -- Every organization of theirs, locked, so co-owners leaving at once take turns.
  -- Every organization of theirs, locked first (so co-owners leaving at once, or someone joining,
  -- take turns), then looked at as it is now.
  for v_organization in
    select m.organization_id as id from app_public.organization_memberships m
    where m.user_id = assert_account_deletable.user_id order by m.organization_id
  loop
    perform app_private.lock_organization(v_organization.id);
    select o.name, m.role,
        exists (select 1 from app_public.organization_memberships other
          where other.organization_id = o.id and other.user_id <> m.user_id) as has_others,
        -- A closing (disabled) account is no owner to leave an organization to.
        exists (select 1 from app_public.organization_memberships other join app_public.users u on u.id = other.user_id
          where other.organization_id = o.id and other.role = 'owner' and other.user_id <> m.user_id and u.disabled_at is null) as has_other_owner
      into v_state
      from app_public.organization_memberships m join app_public.organizations o on o.id = m.organization_id
      where m.organization_id = v_organization.id and m.user_id = assert_account_deletable.user_id;
    if v_state.role = 'owner' and v_state.has_others and not v_state.has_other_owner then
      raise exception 'You are the last owner of %, which has other members: make one of them owner (transferOwnership) or remove them, then delete your account.', v_state.name
        using errcode = 'OS409', detail = 'last_owner';
    end if;
    if not v_state.has_others then
      v_obstacle := app_private.organization_billing_obstacle(v_organization.id);
      if v_obstacle is not null then
        raise exception '%', v_state.name || v_obstacle || '; cancel it in the billing portal (createBillingPortalSession) first, then delete your account.'
          using errcode = 'OS409', detail = 'subscription_active';
      end if;
    end if;
  end loop;
end;
$$;
