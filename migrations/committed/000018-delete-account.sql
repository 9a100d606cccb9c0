--! Previous: sha1:1e4dabdfc03e7641528c30d7e8e6cd084959a61f
--! Hash: sha1:f48b23878ffe913b2b2afdbfe4ba7f57bd87f6ba
--! Message: Delete account

--------------------------------------------------------------------------------
-- Deleting one's account.
--
-- Asked for with the password (POST /auth/delete-account): refused while the
-- user is the last owner of an organization that has other members (transfer
-- it first) or has an organization of their own that Stripe still bills. Then
-- at once: the account is disabled (no sign-in, no session), its sessions end,
-- and a confirmation email is queued; a job deletes it: the organizations where
-- the user is the only member go with it, their avatar's object is deleted, and
-- their tasks, comments and attachments stay in their organizations with the
-- author shown as "Deleted user".
--------------------------------------------------------------------------------

drop function if exists app_private.request_account_deletion(uuid);
drop function if exists app_private.delete_user(uuid);
drop function if exists app_private.assert_account_deletable(uuid);
drop function if exists app_public.task_comments_author_name(app_public.task_comments);
drop function if exists app_public.tasks_creator_name(app_public.tasks);

create function app_private.assert_account_deletable(user_id uuid) returns void
language plpgsql stable
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_name text;
begin
  select o.name into v_name from app_public.organization_memberships m join app_public.organizations o on o.id = m.organization_id
    where m.user_id = assert_account_deletable.user_id and m.role = 'owner'
      and not exists (select 1 from app_public.organization_memberships other
        where other.organization_id = m.organization_id and other.role = 'owner' and other.user_id <> m.user_id)
      and exists (select 1 from app_public.organization_memberships other
        where other.organization_id = m.organization_id and other.user_id <> m.user_id)
    order by o.name limit 1;
  if v_name is not null then
    raise exception 'You are the last owner of %, which has other members: make one of them owner (transferOwnership) or remove them, then delete your account.', v_name
      using errcode = 'OS409', detail = 'last_owner';
  end if;
  select o.name into v_name from app_public.organization_memberships m join app_public.organizations o on o.id = m.organization_id
    join app_public.subscriptions s on s.organization_id = o.id
    where m.user_id = assert_account_deletable.user_id
      and not exists (select 1 from app_public.organization_memberships other
        where other.organization_id = m.organization_id and other.user_id <> m.user_id)
      and s.status in ('incomplete', 'trialing', 'active', 'past_due', 'unpaid', 'paused') and not s.cancel_at_period_end
    order by o.name limit 1;
  if v_name is not null then
    raise exception '%''s subscription would renew; cancel it in the billing portal (createBillingPortalSession) first, then delete your account.', v_name
      using errcode = 'OS409', detail = 'subscription_active';
  end if;
end;
$$;
comment on function app_private.assert_account_deletable(uuid) is
  'Raises last_owner when the user is the last owner of an organization with other members, subscription_active when an organization of theirs alone would still be billed.';

create function app_private.request_account_deletion(user_id uuid) returns void
language plpgsql volatile
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_user app_public.users;
begin
  select * into v_user from app_public.users u where u.id = request_account_deletion.user_id for update;
  perform app_private.assert_account_deletable(v_user.id);
  update app_public.users u set disabled_at = coalesce(u.disabled_at, now()) where u.id = v_user.id;
  perform app_private.revoke_user_sessions(v_user.id, null, 'account_deleted');
  perform graphile_worker.add_job('send_email', json_build_object('to', v_user.email, 'template', 'account_deleted',
    'variables', json_build_object('name', v_user.name)), max_attempts := 10);
  perform graphile_worker.add_job('accounts__delete_user', json_build_object('userId', v_user.id),
    job_key := 'delete_user:' || v_user.id, max_attempts := 10);
end;
$$;
comment on function app_private.request_account_deletion(uuid) is
  'For /auth/delete-account, once the password was checked: refuses what would orphan an organization or leave a subscription billing, then disables the account, ends its sessions, queues the confirmation email and the job that deletes it.';

create function app_private.delete_user(user_id uuid) returns int
language plpgsql volatile
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_organizations int;
begin
  if not exists (select 1 from app_public.users u where u.id = delete_user.user_id) then
    return 0;  -- already deleted (a retry)
  end if;
  -- Checked again: someone may have joined an organization of theirs since.
  perform app_private.assert_account_deletable(delete_user.user_id);
  with alone as (
    delete from app_public.organizations o
    where exists (select 1 from app_public.organization_memberships m where m.organization_id = o.id and m.user_id = delete_user.user_id)
      and not exists (select 1 from app_public.organization_memberships m where m.organization_id = o.id and m.user_id <> delete_user.user_id)
    returning 1
  )
  select count(*) into v_organizations from alone;
  -- Memberships, sessions, tokens, security events and the avatar go with the user (the avatar's
  -- object by the files trigger's job); tasks, comments and attachments stay, their author unset.
  delete from app_public.users u where u.id = delete_user.user_id;
  return v_organizations;
end;
$$;
comment on function app_private.delete_user(uuid) is
  'For the accounts__delete_user job: deletes the organizations where the user is the only member, then the user (their content in other organizations stays, its author unset). Returns how many organizations went.';

create function app_public.task_comments_author_name(c app_public.task_comments) returns text
language sql stable security definer
set search_path = pg_catalog, public, pg_temp
as $$
  select case when c.author_id is null then 'Deleted user' else (select u.name from app_public.users u where u.id = c.author_id) end;
$$;
comment on function app_public.task_comments_author_name(app_public.task_comments) is
  'The author''s name, also when they have left the organization; "Deleted user" once their account is gone.';
grant execute on function app_public.task_comments_author_name(app_public.task_comments) to :DATABASE_ANONYMOUS, :DATABASE_USER;

create function app_public.tasks_creator_name(t app_public.tasks) returns text
language sql stable security definer
set search_path = pg_catalog, public, pg_temp
as $$
  select case when t.created_by is null then 'Deleted user' else (select u.name from app_public.users u where u.id = t.created_by) end;
$$;
comment on function app_public.tasks_creator_name(app_public.tasks) is
  'The creator''s name, also when they have left the organization; "Deleted user" once their account is gone.';
grant execute on function app_public.tasks_creator_name(app_public.tasks) to :DATABASE_ANONYMOUS, :DATABASE_USER;
