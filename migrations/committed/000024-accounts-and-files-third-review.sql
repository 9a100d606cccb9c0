--! Previous: sha1:634512a7daf4b19a88888b7e06fe52d34722010e
--! Hash: sha1:8c744705fc340d9a761adec2ed0d5e899f32a770
--! Message: Accounts and files third review

--------------------------------------------------------------------------------
-- Accounts and files, after a third review.
--
-- - A pending account deletion is recorded as such (app_private.account_deletions),
--   not only as a disabled account: a site administrator cannot re-enable an account
--   whose deletion is queued (the job would delete it under its user), and an
--   administrator disabling a co-owner no longer blocks a deletion for good. A
--   closing owner, not any disabled one, is no owner to leave an organization to.
-- - Enabling or disabling an account records an event only when it changes something.
-- - Securing an account (sign out everywhere, a new password, a disabled or closing
--   account, a new address) also cancels a data export not emailed yet: it may be an
--   intruder's, and it would go out with a live link.
-- - The objects of uploads deleted while pending are removed once the upload could no
--   longer be completed (an hour after it was made), not at once: a PUT through its URL
--   after the row was gone left an object nobody counted, which the daily sweep only
--   removed a day later.
-- - The sweep only ever deletes objects whose key has the form the API makes: a
--   bucket that also holds anything else does not lose it.
-- - searchTasks takes at most 1,000 characters and answers any text it cannot parse
--   with validation_failed (it could take seconds, or fail with internal_error).
--------------------------------------------------------------------------------

drop function if exists app_private.cancel_data_exports(uuid);
drop function if exists app_private.is_file_object_key(text);
drop table if exists app_private.account_deletions;

create table app_private.account_deletions (
  user_id uuid primary key references app_public.users on delete cascade,
  requested_at timestamptz not null default now()
);
comment on table app_private.account_deletions is
  'Accounts whose deletion their user asked for (/auth/delete-account): the accounts__delete_user job deletes them. Such an account is disabled and cannot be enabled again.';
alter table app_private.account_deletions enable row level security;
-- Deletions queued before this table existed.
insert into app_private.account_deletions (user_id, requested_at)
  select u.id, j.created_at from graphile_worker.jobs j join app_public.users u on j.key = 'delete_user:' || u.id::text
  on conflict do nothing;

create or replace function app_private.request_account_deletion(user_id uuid) returns void
language plpgsql volatile
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_user app_public.users;
begin
  select * into v_user from app_public.users u where u.id = request_account_deletion.user_id for update;
  perform app_private.assert_account_deletable(v_user.id);
  insert into app_private.account_deletions (user_id) values (v_user.id) on conflict do nothing;
  update app_public.users u set disabled_at = coalesce(u.disabled_at, now()) where u.id = v_user.id;
  perform app_private.revoke_user_sessions(v_user.id, null, 'account_deleted');
  -- Nobody joins an organization that is going with the account.
  delete from app_public.organization_invitations i
    where i.accepted_at is null
      and exists (select 1 from app_public.organization_memberships m where m.organization_id = i.organization_id and m.user_id = v_user.id)
      and not exists (select 1 from app_public.organization_memberships m where m.organization_id = i.organization_id and m.user_id <> v_user.id);
  perform graphile_worker.add_job('accounts__delete_user', json_build_object('userId', v_user.id),
    job_key := 'delete_user:' || v_user.id, max_attempts := 10);
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
      -- A closing account (its deletion queued) is no owner to leave an organization to.
      select 1 from app_public.organization_memberships m
      where m.organization_id = old.organization_id and m.role = 'owner'
        and not exists (select 1 from app_private.account_deletions d where d.user_id = m.user_id)
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
        -- A closing account (its deletion queued) is no owner to leave an organization to; a
        -- disabled one is (a site administrator can enable it again).
        exists (select 1 from app_public.organization_memberships other
          where other.organization_id = o.id and other.role = 'owner' and other.user_id <> m.user_id
            and not exists (select 1 from app_private.account_deletions d where d.user_id = other.user_id)) as has_other_owner
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
comment on function app_private.assert_account_deletable(uuid) is
  'Locks the user''s organizations, then raises last_owner when they are the last owner (owners whose own deletion is queued do not count) of one with other members, subscription_active when one of theirs alone would still be billed.';

create or replace function app_public.admin_disable_user(user_id uuid, reason text default null) returns app_public.users
language plpgsql volatile security definer
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_admin_id uuid := app_private.require_site_admin();
  v_user app_public.users;
  v_was_disabled boolean;
begin
  if admin_disable_user.user_id = v_admin_id then
    raise exception 'You cannot disable your own account.' using errcode = 'OS409';
  end if;
  if length(reason) > 500 then
    raise exception 'reason must be at most 500 characters.' using errcode = 'OS400';
  end if;
  select u.disabled_at is not null into v_was_disabled from app_public.users u where u.id = admin_disable_user.user_id for update;
  update app_public.users u set disabled_at = coalesce(u.disabled_at, now())
    where u.id = admin_disable_user.user_id returning * into v_user;
  if v_user.id is null then
    raise exception 'User not found.' using errcode = 'OS404';
  end if;
  if not v_was_disabled then
    perform app_private.record_security_event(v_user.id, 'account_disabled', jsonb_strip_nulls(jsonb_build_object('reason', nullif(btrim(reason), ''))));
  end if;
  perform app_private.revoke_user_sessions(v_user.id, null, 'account_disabled');
  return v_user;
end;
$$;

create or replace function app_public.admin_enable_user(user_id uuid) returns app_public.users
language plpgsql volatile security definer
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_user app_public.users;
  v_was_disabled boolean;
begin
  perform app_private.require_site_admin();
  select u.disabled_at is not null into v_was_disabled from app_public.users u where u.id = admin_enable_user.user_id for update;
  if exists (select 1 from app_private.account_deletions d where d.user_id = admin_enable_user.user_id) then
    raise exception 'This account is being deleted at its user''s request; it cannot be enabled.'
      using errcode = 'OS409', detail = 'account_closing';
  end if;
  update app_public.users u set disabled_at = null where u.id = admin_enable_user.user_id returning * into v_user;
  if v_user.id is null then
    raise exception 'User not found.' using errcode = 'OS404';
  end if;
  if v_was_disabled then
    perform app_private.record_security_event(v_user.id, 'account_enabled');
  end if;
  return v_user;
end;
$$;
comment on function app_public.admin_enable_user(uuid) is
  E'@resultFieldName user\nSite administrators: lets a disabled account sign in again (not one being deleted at its user''s request: account_closing). Recorded in its security events with you as actor.';

-- Data exports die with the steps that secure an account.
create function app_private.cancel_data_exports(user_id uuid) returns void
language sql volatile
set search_path = pg_catalog, public, pg_temp
as $$
  -- Not emailed yet: dropped (its job finds nothing to send).
  delete from app_private.data_exports e where e.user_id = cancel_data_exports.user_id and e.token_hash is null;
  -- Emailed: the link stops working.
  update app_private.data_exports e set expires_at = now() where e.user_id = cancel_data_exports.user_id and e.expires_at > now();
$$;
comment on function app_private.cancel_data_exports(uuid) is
  'Drops the user''s data exports not emailed yet and ends the links of those that were: called when the account is secured or its address changes.';

create or replace function app_private.revoke_user_sessions(user_id uuid, except_session_id uuid, reason text) returns int
language plpgsql volatile
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_revoked int;
begin
  -- Whatever made every session end (sign out everywhere, a new password, a disabled account)
  -- also ends a pending change of address: it may be an intruder's...
  update app_private.email_tokens t set used_at = now()
    where t.user_id = revoke_user_sessions.user_id and t.purpose = 'change_email' and t.used_at is null;
  -- ...and data exports, asked for or already emailed: they may be read by the same intruder.
  perform app_private.cancel_data_exports(revoke_user_sessions.user_id);
  update app_private.sessions s set revoked_at = now(), revoked_reason = reason
    where s.user_id = revoke_user_sessions.user_id and s.revoked_at is null
      and s.id is distinct from except_session_id;
  get diagnostics v_revoked = row_count;
  return v_revoked;
end;
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
  -- already emailed there, other email changes, data exports).
  update app_private.email_tokens t set used_at = now() where t.user_id = v_user.id and t.used_at is null;
  perform app_private.cancel_data_exports(v_user.id);
  perform app_private.record_security_event(v_user.id, 'email_changed', jsonb_build_object('from', v_token.email, 'to', v_user.email));
  return v_user;
end;
$$;

-- Files.
create or replace function app_private.tg_files__delete_objects() returns trigger
language plpgsql security definer
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_batch record;
begin
  for v_batch in
    -- An upload still pending may yet be PUT through its URL: its object goes once the upload
    -- could no longer be completed (upload_lifetime() after it was made; the URL lives less).
    select g.delayed, max(g.run_at) as run_at, array_agg(g.object_key) as keys
    from (select r.*, (row_number() over (partition by r.delayed) - 1) / 1000 as chunk
      from (select o.object_key, greatest(now(), case when o.status = 'pending' then o.created_at + app_private.upload_lifetime() end) as run_at,
          o.status = 'pending' and o.created_at + app_private.upload_lifetime() > now() as delayed
        from gone o) r) g
    group by g.delayed, g.chunk
  loop
    perform graphile_worker.add_job('storage__delete_objects', json_build_object('keys', v_batch.keys), run_at := v_batch.run_at, max_attempts := 25);
  end loop;
  return null;
end;
$$;
comment on function app_private.tg_files__delete_objects() is
  'Trigger: the objects of deleted file rows are deleted from storage by a job (1,000 keys a job), queued in the deleting transaction; those of pending uploads once the upload could no longer be completed.';

create function app_private.is_file_object_key(key text) returns boolean
language sql immutable
set search_path = pg_catalog, public, pg_temp
as $$
  -- As create_upload makes them: <organization id>/<uuid>, or avatars/<user id>/<uuid>.
  select key ~ '^(avatars/)?[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$';
$$;
comment on function app_private.is_file_object_key(text) is
  'Whether an object key has the form create_upload gives file objects: the sweep never touches anything else in the bucket.';

create or replace function app_private.orphaned_object_keys(keys text[]) returns setof text
language sql stable
set search_path = pg_catalog, public, pg_temp
as $$
  select k from unnest(keys) k
  where app_private.is_file_object_key(k) and not exists (select 1 from app_public.files f where f.object_key = k);
$$;
comment on function app_private.orphaned_object_keys(text[]) is
  'For the storage__sweep job: which of these object keys are file objects (is_file_object_key) that no file row refers to (uploaded after their row was deleted, or left by a failed deletion).';

-- Search text is bounded and always understood: a very long text took seconds to parse (the
-- parser's time grows with the square of its length, and the page and totalCount each parse it),
-- and 33 minus signs in a row overflowed the parser's stack (an internal error).
drop function if exists app_private.search_query(text);
create function app_private.search_query(query text) returns tsquery
language plpgsql immutable
set search_path = pg_catalog, public, pg_temp
as $$
begin
  if length(query) > 1000 then
    raise exception 'A search is at most 1,000 characters (this one has %).', length(query) using errcode = 'OS400';
  end if;
  return pg_catalog.websearch_to_tsquery('english'::pg_catalog.regconfig, query);
exception when others then
  if sqlstate = 'OS400' then
    raise;
  end if;
  raise exception 'This search cannot be understood: use words, "quoted phrases" and -excluded words.' using errcode = 'OS400';
end;
$$;
comment on function app_private.search_query(text) is
  'The tsquery of a search typed by a person (websearch syntax), at most 1,000 characters; validation_failed otherwise.';

create or replace function app_public.search_tasks(query text) returns setof app_public.tasks
language sql stable security definer
set search_path = pg_catalog, public, pg_temp
as $$
  select t.*
  from app_private.search_query(search_tasks.query) as q,
    app_public.tasks t
  -- The tasks SELECT policy's condition, verbatim: this function reads past row-level security.
  where t.organization_id = any (app_hidden.current_user_visible_organizations())
    and t.search @@ q
  order by pg_catalog.ts_rank(t.search, q) desc, t.created_at desc;
$$;
