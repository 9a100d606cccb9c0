--! Previous: sha1:3385d3f8585c6e5434c2911d3078a25055faacbf
--! Hash: sha1:f1374aefc8ff16d4a3e92bf2212542e118004405
--! Message: Organizations, projects, tasks, comments and activity

--------------------------------------------------------------------------------
-- Organizations, projects, tasks, comments and the activity log.
--
-- Tenancy: every row carries organization_id, and composite foreign keys keep
-- a task inside its project's organization and its assignee inside that
-- organization's members. Policies call small stable helpers in app_hidden
-- (security definer, so they read memberships without recursing into RLS).
--------------------------------------------------------------------------------

drop function if exists app_public.search_tasks(text);
drop function if exists app_public.move_task(uuid, app_public.task_status, uuid);
drop function if exists app_public.archive_project(uuid);
drop function if exists app_public.unarchive_project(uuid);
drop function if exists app_public.delete_organization(uuid);
drop function if exists app_public.transfer_ownership(uuid, uuid);
drop function if exists app_public.leave_organization(uuid);
drop function if exists app_public.change_member_role(uuid, app_public.organization_role);
drop function if exists app_public.remove_member(uuid);
drop function if exists app_public.accept_invitation(text);
drop function if exists app_public.invite_to_organization(uuid, citext, app_public.organization_role);
drop function if exists app_public.create_organization(citext, text);
drop function if exists app_public.user_email(uuid);
drop function if exists app_public.user_is_admin(uuid);
drop function if exists app_public.user_email_verified_at(uuid);
drop function if exists app_public.organizations_current_user_role(app_public.organizations);
drop policy if exists select_coworker on app_public.users;
drop table if exists app_public.activity;
drop table if exists app_public.task_comments;
drop table if exists app_public.tasks;
drop table if exists app_public.projects;
drop table if exists app_private.organization_invitation_secrets;
drop table if exists app_public.organization_invitations;
drop table if exists app_public.organization_memberships;
drop table if exists app_public.organizations;
drop function if exists app_hidden.current_user_organization_ids();
drop function if exists app_hidden.current_user_coworker_ids();
drop function if exists app_hidden.current_user_role_in(uuid);
drop function if exists app_hidden.current_user_manages(uuid);
drop function if exists app_private.tg__activity();
drop function if exists app_private.tg_memberships__keep_an_owner();
drop function if exists app_private.tg_tasks__before_write();
drop function if exists app_private.tg_task_comments__before_write();
drop function if exists app_private.tg_projects__archived_is_read_only();
drop function if exists app_private.tg_tasks__notify();
drop function if exists app_private.tg_task_comments__notify();
drop function if exists app_private.assert_project_writable(uuid);
drop function if exists app_private.tg_projects__before_write();
drop function if exists app_private.require_role(uuid, app_public.organization_role[], text);
drop function if exists app_private.require_user();
drop type if exists app_public.task_priority;
drop type if exists app_public.task_status;
drop type if exists app_public.organization_role;

--------------------------------------------------------------------------------
-- Organizations and memberships
--------------------------------------------------------------------------------

create type app_public.organization_role as enum ('owner', 'admin', 'member');
comment on type app_public.organization_role is
  'What a member may do: owners do everything (only owners make owners), admins manage members and invitations, members work on projects and tasks.';

create table app_public.organizations (
  id uuid primary key default gen_random_uuid(),
  slug citext not null unique
    constraint slug_format check (slug ~ '^[a-z0-9]([a-z0-9-]{0,46}[a-z0-9])?$'),
  name text not null constraint name_length check (length(btrim(name)) between 1 and 100),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
comment on table app_public.organizations is
  E'@behavior -insert -delete\nA team (tenant) that owns projects and tasks. Members see it; owners and admins rename it. Create one with createOrganization.';
comment on column app_public.organizations.slug is 'Short unique name used in URLs: lower-case letters, digits and dashes (1 to 48).';
comment on column app_public.organizations.name is 'Display name (1 to 100 characters).';

create trigger _100_timestamps before insert or update on app_public.organizations
  for each row execute function app_private.tg__timestamps();

create table app_public.organization_memberships (
  id uuid primary key default gen_random_uuid(),
  organization_id uuid not null references app_public.organizations on delete cascade,
  user_id uuid not null references app_public.users on delete cascade,
  role app_public.organization_role not null default 'member',
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (organization_id, user_id)
);
create index organization_memberships_user_id_idx on app_public.organization_memberships (user_id);
comment on table app_public.organization_memberships is
  E'@behavior -insert -update -delete\nWho belongs to an organization, and with which role. Change it with inviteToOrganization, acceptInvitation, changeMemberRole, removeMember, leaveOrganization and transferOwnership.';
comment on column app_public.organization_memberships.role is 'owner, admin or member.';

create trigger _100_timestamps before insert or update on app_public.organization_memberships
  for each row execute function app_private.tg__timestamps();

create table app_public.organization_invitations (
  id uuid primary key default gen_random_uuid(),
  organization_id uuid not null references app_public.organizations on delete cascade,
  email citext not null constraint email_format check (email ~ '^[^@\s]+@[^@\s]+\.[^@\s]+$'),
  role app_public.organization_role not null default 'member',
  invited_by uuid references app_public.users on delete set null,
  created_at timestamptz not null default now(),
  expires_at timestamptz not null default now() + interval '7 days',
  accepted_at timestamptz
);
create unique index organization_invitations_pending_idx on app_public.organization_invitations (organization_id, email)
  where accepted_at is null;
create index organization_invitations_invited_by_idx on app_public.organization_invitations (invited_by);
comment on table app_public.organization_invitations is
  E'@behavior -insert -update\nAn emailed invitation to join an organization. Owners and admins see and revoke (delete) them; the token is never exposed.';
comment on column app_public.organization_invitations.email is 'The address the invitation was sent to; only the account with this address can accept it.';
comment on column app_public.organization_invitations.role is 'The role the invitee gets on accepting.';
comment on column app_public.organization_invitations.expires_at is 'After this the link no longer works; invite again to send a new one.';
comment on column app_public.organization_invitations.accepted_at is 'When the invitation was accepted; null while pending.';

create table app_private.organization_invitation_secrets (
  invitation_id uuid primary key references app_public.organization_invitations on delete cascade,
  token_hash bytea not null unique
);
comment on table app_private.organization_invitation_secrets is 'SHA-256 of each invitation''s emailed token.';
alter table app_private.organization_invitation_secrets enable row level security;

--------------------------------------------------------------------------------
-- Helpers for policies: who is the current user to an organization?
--------------------------------------------------------------------------------

create function app_hidden.current_user_organization_ids() returns setof uuid
language sql stable security definer
set search_path = pg_catalog, public, pg_temp
as $$
  select m.organization_id from app_public.organization_memberships m
  where m.user_id = app_public.current_user_id();
$$;
comment on function app_hidden.current_user_organization_ids() is 'Organizations the current user belongs to.';

create function app_hidden.current_user_role_in(organization_id uuid) returns app_public.organization_role
language sql stable security definer
set search_path = pg_catalog, public, pg_temp
as $$
  select m.role from app_public.organization_memberships m
  where m.organization_id = current_user_role_in.organization_id and m.user_id = app_public.current_user_id();
$$;
comment on function app_hidden.current_user_role_in(uuid) is 'The current user''s role in an organization, or null when not a member.';

create function app_hidden.current_user_manages(organization_id uuid) returns boolean
language sql stable
set search_path = pg_catalog, public, pg_temp
as $$
  select coalesce(app_hidden.current_user_role_in(organization_id) in ('owner', 'admin'), false);
$$;
comment on function app_hidden.current_user_manages(uuid) is 'True when the current user is an owner or admin of the organization.';

create function app_hidden.current_user_coworker_ids() returns setof uuid
language sql stable security definer
set search_path = pg_catalog, public, pg_temp
as $$
  select distinct m.user_id from app_public.organization_memberships m
  where m.organization_id in (select app_hidden.current_user_organization_ids());
$$;
comment on function app_hidden.current_user_coworker_ids() is 'Users who share at least one organization with the current user (including the user).';

grant execute on function app_hidden.current_user_organization_ids(), app_hidden.current_user_role_in(uuid),
  app_hidden.current_user_manages(uuid), app_hidden.current_user_coworker_ids() to :DATABASE_ANONYMOUS, :DATABASE_USER;

--------------------------------------------------------------------------------
-- Users: co-members see each other's public profile (name, avatar). Email,
-- admin flag and verification stay private to the user and site admins,
-- through computed fields instead of column grants.
--------------------------------------------------------------------------------

create policy select_coworker on app_public.users for select
  using (id in (select app_hidden.current_user_coworker_ids()));

revoke select on app_public.users from :DATABASE_ANONYMOUS, :DATABASE_USER;
grant select (id, name, avatar_url, created_at, updated_at) on app_public.users to :DATABASE_ANONYMOUS, :DATABASE_USER;

create or replace function app_public.update_current_user(name text default null, avatar_url text default null)
returns app_public.users
language plpgsql volatile security definer
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

create or replace function app_public."current_user"() returns app_public.users
language sql stable security definer
set search_path = pg_catalog, public, pg_temp
as $$
  select u.* from app_public.users u where u.id = app_public.current_user_id();
$$;

-- Private fields take a user id, not the row: PostGraphile passes computed columns the whole
-- row, which needs SELECT on every column. src/graphql/private-user-fields.ts attaches them to User.
create function app_public.user_email(user_id uuid) returns citext
language sql stable security definer
set search_path = pg_catalog, public, pg_temp
as $$
  select u.email from app_public.users u
  where u.id = user_email.user_id and (u.id = app_public.current_user_id() or app_public.current_user_is_admin());
$$;
comment on function app_public.user_email(uuid) is
  E'@behavior -queryField\nThe address the user signs in with; visible to the user and site administrators only (null for anyone else).';

create function app_public.user_is_admin(user_id uuid) returns boolean
language sql stable security definer
set search_path = pg_catalog, public, pg_temp
as $$
  select u.is_admin from app_public.users u
  where u.id = user_is_admin.user_id and (u.id = app_public.current_user_id() or app_public.current_user_is_admin());
$$;
comment on function app_public.user_is_admin(uuid) is
  E'@behavior -queryField\nWhether the user is a site administrator; visible to the user and site administrators only.';

create function app_public.user_email_verified_at(user_id uuid) returns timestamptz
language sql stable security definer
set search_path = pg_catalog, public, pg_temp
as $$
  select u.email_verified_at from app_public.users u
  where u.id = user_email_verified_at.user_id and (u.id = app_public.current_user_id() or app_public.current_user_is_admin());
$$;
comment on function app_public.user_email_verified_at(uuid) is
  E'@behavior -queryField\nWhen the user confirmed their address; visible to the user and site administrators only.';

grant execute on function app_public.user_email(uuid), app_public.user_is_admin(uuid),
  app_public.user_email_verified_at(uuid) to :DATABASE_ANONYMOUS, :DATABASE_USER;

--------------------------------------------------------------------------------
-- Organization policies and grants
--------------------------------------------------------------------------------

alter table app_public.organizations enable row level security;
create policy select_member on app_public.organizations for select
  using (id in (select app_hidden.current_user_organization_ids()) or (select app_public.current_user_is_admin()));
create policy update_manager on app_public.organizations for update
  using (app_hidden.current_user_manages(id));
grant select on app_public.organizations to :DATABASE_ANONYMOUS, :DATABASE_USER;
grant update (slug, name) on app_public.organizations to :DATABASE_USER;

alter table app_public.organization_memberships enable row level security;
create policy select_member on app_public.organization_memberships for select
  using (organization_id in (select app_hidden.current_user_organization_ids()) or (select app_public.current_user_is_admin()));
grant select on app_public.organization_memberships to :DATABASE_ANONYMOUS, :DATABASE_USER;

alter table app_public.organization_invitations enable row level security;
create policy select_manager on app_public.organization_invitations for select
  using (app_hidden.current_user_manages(organization_id) or (select app_public.current_user_is_admin()));
create policy delete_manager on app_public.organization_invitations for delete
  using (app_hidden.current_user_manages(organization_id));
grant select on app_public.organization_invitations to :DATABASE_ANONYMOUS;
grant select, delete on app_public.organization_invitations to :DATABASE_USER;

create function app_public.organizations_current_user_role(o app_public.organizations) returns app_public.organization_role
language sql stable
set search_path = pg_catalog, public, pg_temp
as $$
  select app_hidden.current_user_role_in(o.id);
$$;
comment on function app_public.organizations_current_user_role(app_public.organizations) is
  'Your role in this organization (null if you only see it as a site administrator).';
grant execute on function app_public.organizations_current_user_role(app_public.organizations) to :DATABASE_ANONYMOUS, :DATABASE_USER;

--------------------------------------------------------------------------------
-- Invariant: an organization always has at least one owner.
--------------------------------------------------------------------------------

create function app_private.tg_memberships__keep_an_owner() returns trigger
language plpgsql
set search_path = pg_catalog, public, pg_temp
as $$
begin
  if old.role = 'owner'
    and exists (select 1 from app_public.organizations o where o.id = old.organization_id)
    and not exists (
      select 1 from app_public.organization_memberships m
      where m.organization_id = old.organization_id and m.role = 'owner'
    )
  then
    raise exception 'An organization needs at least one owner: make someone else owner first (transferOwnership), or delete the organization.'
      using errcode = 'OS409', detail = 'last_owner';
  end if;
  return null;
end;
$$;
comment on function app_private.tg_memberships__keep_an_owner() is
  'Trigger: refuses to remove or demote the last owner of an organization that still exists.';
create trigger _200_keep_an_owner after update of role or delete on app_public.organization_memberships
  for each row execute function app_private.tg_memberships__keep_an_owner();

--------------------------------------------------------------------------------
-- Organization functions
--------------------------------------------------------------------------------

create function app_private.require_user() returns uuid
language plpgsql stable
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_user_id uuid := app_public.current_user_id();
begin
  if v_user_id is null then
    raise exception 'Sign in to do this.' using errcode = 'OS401';
  end if;
  return v_user_id;
end;
$$;
comment on function app_private.require_user() is 'The current user''s id; raises unauthenticated for anonymous requests.';

create function app_private.require_role(organization_id uuid, allowed app_public.organization_role[], action text)
returns app_public.organization_role
language plpgsql stable
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_role app_public.organization_role := app_hidden.current_user_role_in(require_role.organization_id);
begin
  perform app_private.require_user();
  if v_role is null then
    raise exception 'Organization not found.' using errcode = 'OS404';
  end if;
  if not v_role = any (allowed) then
    raise exception 'Only % of the organization can %.', array_to_string(allowed, ' and ') || 's', action
      using errcode = 'OS403';
  end if;
  return v_role;
end;
$$;
comment on function app_private.require_role(uuid, app_public.organization_role[], text) is
  'Raises not_found for non-members and forbidden when the current user''s role is not one of `allowed`.';

create function app_public.create_organization(slug citext, name text) returns app_public.organizations
language plpgsql volatile security definer
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_user_id uuid := app_private.require_user();
  v_organization app_public.organizations;
begin
  begin
    insert into app_public.organizations (slug, name)
      values (lower(btrim(create_organization.slug)), btrim(create_organization.name))
      returning * into v_organization;
  exception when unique_violation then
    raise exception 'The slug "%" is taken; choose another.', create_organization.slug
      using errcode = 'OS409', detail = 'slug_taken';
  end;
  insert into app_public.organization_memberships (organization_id, user_id, role)
    values (v_organization.id, v_user_id, 'owner');
  return v_organization;
end;
$$;
comment on function app_public.create_organization(citext, text) is
  E'@resultFieldName organization\nCreates an organization with you as its owner.';

create function app_public.invite_to_organization(organization_id uuid, email citext, role app_public.organization_role default 'member')
returns app_public.organization_invitations
language plpgsql volatile security definer
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_my_role app_public.organization_role := app_private.require_role(invite_to_organization.organization_id, '{owner,admin}', 'invite people');
  v_invitation app_public.organization_invitations;
  v_token text := app_private.new_token();
  v_organization app_public.organizations;
  v_inviter app_public.users;
begin
  if invite_to_organization.role = 'owner' and v_my_role <> 'owner' then
    raise exception 'Only owners can invite new owners.' using errcode = 'OS403';
  end if;
  if exists (
    select 1 from app_public.organization_memberships m join app_public.users u on u.id = m.user_id
    where m.organization_id = invite_to_organization.organization_id and u.email = btrim(invite_to_organization.email)::citext
  ) then
    raise exception '% is already a member.', btrim(invite_to_organization.email) using errcode = 'OS409', detail = 'already_member';
  end if;
  -- Inviting again replaces the pending invitation (new link, new expiry).
  delete from app_public.organization_invitations i
    where i.organization_id = invite_to_organization.organization_id
      and i.email = btrim(invite_to_organization.email)::citext and i.accepted_at is null;
  insert into app_public.organization_invitations (organization_id, email, role, invited_by)
    values (invite_to_organization.organization_id, btrim(invite_to_organization.email), invite_to_organization.role, app_public.current_user_id())
    returning * into v_invitation;
  insert into app_private.organization_invitation_secrets (invitation_id, token_hash)
    values (v_invitation.id, app_private.token_hash(v_token));
  select * into v_organization from app_public.organizations o where o.id = v_invitation.organization_id;
  select * into v_inviter from app_public.users u where u.id = app_public.current_user_id();
  perform graphile_worker.add_job('send_email', json_build_object(
    'to', v_invitation.email,
    'template', 'organization_invitation',
    'variables', json_build_object(
      'inviterName', v_inviter.name,
      'organizationName', v_organization.name,
      'role', v_invitation.role,
      'link', '/accept-invitation?token=' || v_token
    )
  ), max_attempts := 10);
  return v_invitation;
end;
$$;
comment on function app_public.invite_to_organization(uuid, citext, app_public.organization_role) is
  E'@resultFieldName invitation\nEmails an invitation to join the organization (owners and admins; only owners invite owners). Inviting the same address again sends a fresh link.';

create function app_public.accept_invitation(token text) returns app_public.organization_memberships
language plpgsql volatile security definer
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_user_id uuid := app_private.require_user();
  v_invitation app_public.organization_invitations;
  v_membership app_public.organization_memberships;
begin
  select i.* into v_invitation
    from app_public.organization_invitations i
    join app_private.organization_invitation_secrets s on s.invitation_id = i.id
    where s.token_hash = app_private.token_hash(accept_invitation.token)
    for update of i;
  if not found then
    raise exception 'This invitation link is not valid; ask for a new invitation.' using errcode = 'OS404', detail = 'invitation_not_found';
  end if;
  if v_invitation.accepted_at is not null then
    raise exception 'This invitation has already been accepted.' using errcode = 'OS409', detail = 'invitation_used';
  end if;
  if v_invitation.expires_at <= now() then
    raise exception 'This invitation expired on %; ask for a new one.', to_char(v_invitation.expires_at, 'YYYY-MM-DD')
      using errcode = 'OS400', detail = 'invitation_expired';
  end if;
  if not exists (select 1 from app_public.users u where u.id = v_user_id and u.email = v_invitation.email) then
    raise exception 'This invitation was sent to another email address; sign in with that address to accept it.'
      using errcode = 'OS403', detail = 'invitation_for_another_email';
  end if;
  update app_public.organization_invitations i set accepted_at = now() where i.id = v_invitation.id;
  insert into app_public.organization_memberships (organization_id, user_id, role)
    values (v_invitation.organization_id, v_user_id, v_invitation.role)
    on conflict (organization_id, user_id) do nothing
    returning * into v_membership;
  if v_membership.id is null then
    select * into v_membership from app_public.organization_memberships m
      where m.organization_id = v_invitation.organization_id and m.user_id = v_user_id;
  end if;
  return v_membership;
end;
$$;
comment on function app_public.accept_invitation(text) is
  E'@resultFieldName membership\nJoins the organization with the token from an invitation email. Works for accounts created after the invitation was sent, as long as the address matches.';

create function app_public.change_member_role(membership_id uuid, role app_public.organization_role)
returns app_public.organization_memberships
language plpgsql volatile security definer
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_target app_public.organization_memberships;
  v_my_role app_public.organization_role;
begin
  select * into v_target from app_public.organization_memberships m where m.id = change_member_role.membership_id;
  v_my_role := app_private.require_role(v_target.organization_id, '{owner,admin}', 'change roles');
  if v_my_role <> 'owner' and (change_member_role.role = 'owner' or v_target.role = 'owner') then
    raise exception 'Only owners can make owners or change an owner''s role.' using errcode = 'OS403';
  end if;
  if v_target.user_id = app_public.current_user_id()
    and array_position(enum_range(null::app_public.organization_role), change_member_role.role)
      < array_position(enum_range(null::app_public.organization_role), v_target.role)
  then
    raise exception 'You cannot raise your own role.' using errcode = 'OS403';
  end if;
  update app_public.organization_memberships m set role = change_member_role.role
    where m.id = v_target.id returning * into v_target;
  return v_target;
end;
$$;
comment on function app_public.change_member_role(uuid, app_public.organization_role) is
  E'@resultFieldName membership\nChanges a member''s role (owners and admins; only owners make owners or change owners; nobody raises their own role; the last owner stays owner).';

create function app_public.remove_member(membership_id uuid) returns app_public.organization_memberships
language plpgsql volatile security definer
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_target app_public.organization_memberships;
  v_my_role app_public.organization_role;
begin
  select * into v_target from app_public.organization_memberships m where m.id = remove_member.membership_id;
  v_my_role := app_private.require_role(v_target.organization_id, '{owner,admin}', 'remove members');
  if v_target.role = 'owner' and v_my_role <> 'owner' then
    raise exception 'Only owners can remove an owner.' using errcode = 'OS403';
  end if;
  delete from app_public.organization_memberships m where m.id = v_target.id;
  return v_target;
end;
$$;
comment on function app_public.remove_member(uuid) is
  E'@resultFieldName membership\nRemoves someone from the organization (owners and admins; only owners remove owners; the last owner cannot be removed). Their tasks become unassigned.';

create function app_public.leave_organization(organization_id uuid) returns app_public.organization_memberships
language plpgsql volatile security definer
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_membership app_public.organization_memberships;
begin
  perform app_private.require_role(leave_organization.organization_id, '{owner,admin,member}', 'leave');
  delete from app_public.organization_memberships m
    where m.organization_id = leave_organization.organization_id and m.user_id = app_public.current_user_id()
    returning * into v_membership;
  return v_membership;
end;
$$;
comment on function app_public.leave_organization(uuid) is
  E'@resultFieldName membership\nLeaves the organization. The last owner must transfer ownership (or delete the organization) first.';

create function app_public.transfer_ownership(organization_id uuid, user_id uuid) returns app_public.organization_memberships
language plpgsql volatile security definer
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_new_owner app_public.organization_memberships;
begin
  perform app_private.require_role(transfer_ownership.organization_id, '{owner}', 'transfer ownership');
  update app_public.organization_memberships m set role = 'owner'
    where m.organization_id = transfer_ownership.organization_id and m.user_id = transfer_ownership.user_id
    returning * into v_new_owner;
  if not found then
    raise exception 'Ownership can only go to a member of the organization.' using errcode = 'OS404', detail = 'not_a_member';
  end if;
  if transfer_ownership.user_id <> app_public.current_user_id() then
    update app_public.organization_memberships m set role = 'admin'
      where m.organization_id = transfer_ownership.organization_id and m.user_id = app_public.current_user_id();
  end if;
  return v_new_owner;
end;
$$;
comment on function app_public.transfer_ownership(uuid, uuid) is
  E'@resultFieldName membership\nMakes another member the owner; you become an admin (owners only).';

create function app_public.delete_organization(organization_id uuid) returns app_public.organizations
language plpgsql volatile security definer
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_organization app_public.organizations;
begin
  perform app_private.require_role(delete_organization.organization_id, '{owner}', 'delete it');
  delete from app_public.organizations o where o.id = delete_organization.organization_id returning * into v_organization;
  return v_organization;
end;
$$;
comment on function app_public.delete_organization(uuid) is
  E'@resultFieldName organization\nDeletes the organization with all its projects, tasks and comments (owners only).';

grant execute on function
  app_public.create_organization(citext, text),
  app_public.invite_to_organization(uuid, citext, app_public.organization_role),
  app_public.accept_invitation(text),
  app_public.change_member_role(uuid, app_public.organization_role),
  app_public.remove_member(uuid),
  app_public.leave_organization(uuid),
  app_public.transfer_ownership(uuid, uuid),
  app_public.delete_organization(uuid)
to :DATABASE_USER;

--------------------------------------------------------------------------------
-- Projects
--------------------------------------------------------------------------------

create table app_public.projects (
  id uuid primary key default gen_random_uuid(),
  organization_id uuid not null references app_public.organizations on delete cascade,
  name text not null constraint name_length check (length(btrim(name)) between 1 and 100),
  description text constraint description_length check (length(description) <= 5000),
  archived_at timestamptz,
  created_by uuid references app_public.users on delete set null,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (organization_id, id)
);
create index projects_organization_id_idx on app_public.projects (organization_id, created_at);
create index projects_created_by_idx on app_public.projects (created_by);
comment on table app_public.projects is
  'A board of tasks in an organization. Members create and edit projects; owners and admins archive and delete them. Archived projects are read-only.';
comment on column app_public.projects.name is 'Display name (1 to 100 characters).';
comment on column app_public.projects.description is 'What the project is about (up to 5000 characters).';
comment on column app_public.projects.archived_at is 'When the project was archived (read-only since); null while active. Use archiveProject / unarchiveProject.';
comment on column app_public.projects.created_by is 'Who created the project.';

create trigger _100_timestamps before insert or update on app_public.projects
  for each row execute function app_private.tg__timestamps();

create function app_private.tg_projects__before_write() returns trigger
language plpgsql
set search_path = pg_catalog, public, pg_temp
as $$
begin
  if tg_op = 'INSERT' then
    new.created_by = app_public.current_user_id();
    new.archived_at = null;
  elsif old.archived_at is not null and new.archived_at is not null then
    raise exception 'This project is archived and read-only; unarchive it first.' using errcode = 'OS409', detail = 'project_archived';
  end if;
  return new;
end;
$$;
comment on function app_private.tg_projects__before_write() is
  'Trigger: records the creator, starts projects active, and keeps archived projects read-only.';
create trigger _050_before_write before insert or update on app_public.projects
  for each row execute function app_private.tg_projects__before_write();

alter table app_public.projects enable row level security;
create policy select_member on app_public.projects for select
  using (organization_id in (select app_hidden.current_user_organization_ids()) or (select app_public.current_user_is_admin()));
create policy insert_member on app_public.projects for insert
  with check (organization_id in (select app_hidden.current_user_organization_ids()));
create policy update_member on app_public.projects for update
  using (organization_id in (select app_hidden.current_user_organization_ids()));
create policy delete_manager on app_public.projects for delete
  using (app_hidden.current_user_manages(organization_id));
grant select on app_public.projects to :DATABASE_ANONYMOUS;
grant select, delete on app_public.projects to :DATABASE_USER;
grant insert (organization_id, name, description) on app_public.projects to :DATABASE_USER;
grant update (name, description) on app_public.projects to :DATABASE_USER;

create function app_public.archive_project(project_id uuid) returns app_public.projects
language plpgsql volatile security definer
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_project app_public.projects;
begin
  select * into v_project from app_public.projects p where p.id = archive_project.project_id;
  perform app_private.require_role(v_project.organization_id, '{owner,admin}', 'archive projects');
  update app_public.projects p set archived_at = coalesce(p.archived_at, now())
    where p.id = v_project.id and p.archived_at is null;
  select * into v_project from app_public.projects p where p.id = archive_project.project_id;
  return v_project;
end;
$$;
comment on function app_public.archive_project(uuid) is
  E'@resultFieldName project\nArchives a project: it and its tasks become read-only (owners and admins).';

create function app_public.unarchive_project(project_id uuid) returns app_public.projects
language plpgsql volatile security definer
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_project app_public.projects;
begin
  select * into v_project from app_public.projects p where p.id = unarchive_project.project_id;
  perform app_private.require_role(v_project.organization_id, '{owner,admin}', 'unarchive projects');
  update app_public.projects p set archived_at = null where p.id = v_project.id returning * into v_project;
  return v_project;
end;
$$;
comment on function app_public.unarchive_project(uuid) is
  E'@resultFieldName project\nMakes an archived project editable again (owners and admins).';

grant execute on function app_public.archive_project(uuid), app_public.unarchive_project(uuid) to :DATABASE_USER;

create function app_private.assert_project_writable(project_id uuid) returns void
language plpgsql stable security definer
set search_path = pg_catalog, public, pg_temp
as $$
begin
  if exists (select 1 from app_public.projects p where p.id = project_id and p.archived_at is not null) then
    raise exception 'This project is archived and read-only; unarchive it first.' using errcode = 'OS409', detail = 'project_archived';
  end if;
end;
$$;
comment on function app_private.assert_project_writable(uuid) is 'Raises project_archived when the project is archived.';

--------------------------------------------------------------------------------
-- Tasks
--------------------------------------------------------------------------------

create type app_public.task_status as enum ('todo', 'in_progress', 'done', 'canceled');
comment on type app_public.task_status is 'The column a task sits in.';
create type app_public.task_priority as enum ('low', 'medium', 'high', 'urgent');
comment on type app_public.task_priority is 'How urgent a task is.';

create table app_public.tasks (
  id uuid primary key default gen_random_uuid(),
  organization_id uuid not null references app_public.organizations on delete cascade,
  project_id uuid not null,
  title text not null constraint title_length check (length(btrim(title)) between 1 and 500),
  description text constraint description_length check (length(description) <= 20000),
  status app_public.task_status not null default 'todo',
  priority app_public.task_priority not null default 'medium',
  assignee_id uuid,
  due_at timestamptz,
  position numeric not null default 0,
  created_by uuid references app_public.users on delete set null,
  completed_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  search tsvector generated always as (
    setweight(to_tsvector('english', title), 'A') || setweight(to_tsvector('english', coalesce(description, '')), 'B')
  ) stored,
  unique (organization_id, id),
  constraint tasks_project_id_fkey foreign key (project_id) references app_public.projects on delete cascade,
  constraint tasks_assignee_id_fkey foreign key (assignee_id) references app_public.users on delete set null,
  -- The project must belong to the task's organization.
  constraint tasks_project_in_organization foreign key (organization_id, project_id)
    references app_public.projects (organization_id, id) on delete cascade,
  -- The assignee must be a member of the task's organization; removing the member unassigns.
  constraint tasks_assignee_is_member foreign key (organization_id, assignee_id)
    references app_public.organization_memberships (organization_id, user_id) on delete set null (assignee_id)
);
comment on constraint tasks_project_in_organization on app_public.tasks is E'@behavior -*';
comment on constraint tasks_assignee_is_member on app_public.tasks is E'@behavior -*';
create index tasks_project_board_idx on app_public.tasks (project_id, status, position);
create index tasks_organization_id_idx on app_public.tasks (organization_id, created_at);
create index tasks_assignee_idx on app_public.tasks (organization_id, assignee_id);
create index tasks_assignee_id_idx on app_public.tasks (assignee_id);
create index tasks_status_idx on app_public.tasks (status);
create index tasks_priority_idx on app_public.tasks (priority);
create index tasks_due_at_idx on app_public.tasks (due_at);
create index tasks_created_by_idx on app_public.tasks (created_by);
create index tasks_search_idx on app_public.tasks using gin (search);
comment on table app_public.tasks is
  'A unit of work on a project board. Members create, edit and move tasks; the creator or an owner/admin deletes them.';
comment on column app_public.tasks.organization_id is E'@behavior -insert\nThe organization, taken from the project.';
comment on column app_public.tasks.title is E'@behavior +filterBy +orderBy\nShort summary (1 to 500 characters).';
comment on column app_public.tasks.description is 'Details (up to 20000 characters).';
comment on column app_public.tasks.status is 'todo, in_progress, done or canceled. Use moveTask to change column and order in one call.';
comment on column app_public.tasks.priority is 'low, medium, high or urgent.';
comment on column app_public.tasks.assignee_id is 'Who works on it; must be a member of the organization.';
comment on column app_public.tasks.due_at is 'When it is due.';
comment on column app_public.tasks.position is 'Order within its column, ascending; moveTask keeps it.';
comment on column app_public.tasks.created_by is 'Who created the task.';
comment on column app_public.tasks.completed_at is 'When the task was last marked done; null otherwise.';
comment on column app_public.tasks.search is E'@behavior -select -filterBy -orderBy\nFull-text index of title and description (use searchTasks).';

create trigger _100_timestamps before insert or update on app_public.tasks
  for each row execute function app_private.tg__timestamps();

create function app_private.tg_tasks__before_write() returns trigger
language plpgsql security definer
set search_path = pg_catalog, public, pg_temp
as $$
begin
  if tg_op in ('UPDATE', 'DELETE') then
    perform app_private.assert_project_writable(old.project_id);
  end if;
  if tg_op = 'DELETE' then
    return old;
  end if;
  perform app_private.assert_project_writable(new.project_id);
  if tg_op = 'INSERT' then
    select p.organization_id into new.organization_id from app_public.projects p where p.id = new.project_id;
    if new.organization_id is null then
      raise exception 'Project not found.' using errcode = 'OS404';
    end if;
    new.created_by = app_public.current_user_id();
    new.position = coalesce(
      (select max(t.position) + 1 from app_public.tasks t where t.project_id = new.project_id and t.status = new.status), 1);
  elsif new.project_id <> old.project_id then
    raise exception 'A task cannot move to another project.' using errcode = 'OS400';
  end if;
  new.completed_at = case
    when new.status = 'done' and (tg_op = 'INSERT' or old.status <> 'done') then now()
    when new.status = 'done' then old.completed_at
    else null
  end;
  return new;
end;
$$;
comment on function app_private.tg_tasks__before_write() is
  'Trigger: takes the organization from the project, records the creator, appends new tasks to their column, maintains completed_at, and refuses changes in archived projects.';
create trigger _050_before_write before insert or update or delete on app_public.tasks
  for each row execute function app_private.tg_tasks__before_write();

alter table app_public.tasks enable row level security;
create policy select_member on app_public.tasks for select
  using (organization_id in (select app_hidden.current_user_organization_ids()) or (select app_public.current_user_is_admin()));
create policy insert_member on app_public.tasks for insert
  with check (organization_id in (select app_hidden.current_user_organization_ids()));
create policy update_member on app_public.tasks for update
  using (organization_id in (select app_hidden.current_user_organization_ids()));
create policy delete_creator_or_manager on app_public.tasks for delete
  using (
    organization_id in (select app_hidden.current_user_organization_ids())
    and (created_by = (select app_public.current_user_id()) or app_hidden.current_user_manages(organization_id))
  );
grant select on app_public.tasks to :DATABASE_ANONYMOUS;
grant select, delete on app_public.tasks to :DATABASE_USER;
grant insert (project_id, title, description, status, priority, assignee_id, due_at) on app_public.tasks to :DATABASE_USER;
grant update (title, description, status, priority, assignee_id, due_at) on app_public.tasks to :DATABASE_USER;

create function app_public.move_task(task_id uuid, status app_public.task_status, after_task_id uuid default null)
returns app_public.tasks
language plpgsql volatile
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_task app_public.tasks;
  v_after numeric;
  v_next numeric;
begin
  select * into v_task from app_public.tasks t where t.id = move_task.task_id;
  if not found then
    raise exception 'Task not found.' using errcode = 'OS404';
  end if;
  if move_task.after_task_id is null then
    v_next := (select min(t.position) from app_public.tasks t
      where t.project_id = v_task.project_id and t.status = move_task.status and t.id <> v_task.id);
    v_task.position := coalesce(v_next - 1, 1);
  else
    select t.position into v_after from app_public.tasks t
      where t.id = move_task.after_task_id and t.project_id = v_task.project_id and t.status = move_task.status;
    if not found then
      raise exception 'afterTaskId must be a task in the same project and column.' using errcode = 'OS400';
    end if;
    v_next := (select min(t.position) from app_public.tasks t
      where t.project_id = v_task.project_id and t.status = move_task.status and t.position > v_after and t.id <> v_task.id);
    v_task.position := case when v_next is null then v_after + 1 else (v_after + v_next) / 2 end;
  end if;
  update app_public.tasks t set status = move_task.status, position = v_task.position
    where t.id = v_task.id returning * into v_task;
  return v_task;
end;
$$;
comment on function app_public.move_task(uuid, app_public.task_status, uuid) is
  E'@resultFieldName task\nMoves a task to a column (status), right after afterTaskId, or to the top when afterTaskId is omitted.';
grant update (position) on app_public.tasks to :DATABASE_USER;
grant execute on function app_public.move_task(uuid, app_public.task_status, uuid) to :DATABASE_USER;
comment on column app_public.tasks.position is E'@behavior -update\nOrder within its column, ascending; use moveTask to change it.';

create function app_public.search_tasks(query text) returns setof app_public.tasks
language sql stable
set search_path = pg_catalog, public, pg_temp
as $$
  select t.* from app_public.tasks t
  where t.search @@ websearch_to_tsquery('english', search_tasks.query)
  order by ts_rank(t.search, websearch_to_tsquery('english', search_tasks.query)) desc, t.created_at desc;
$$;
comment on function app_public.search_tasks(text) is
  E'@sortable\n@filterable\nTasks you can see matching a search (words, "quoted phrases", -excluded), best match first.';
grant execute on function app_public.search_tasks(text) to :DATABASE_ANONYMOUS, :DATABASE_USER;

--------------------------------------------------------------------------------
-- Comments
--------------------------------------------------------------------------------

create table app_public.task_comments (
  id uuid primary key default gen_random_uuid(),
  organization_id uuid not null references app_public.organizations on delete cascade,
  task_id uuid not null,
  author_id uuid references app_public.users on delete set null,
  body text not null constraint body_length check (length(btrim(body)) between 1 and 10000),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint task_comments_task_id_fkey foreign key (task_id) references app_public.tasks on delete cascade,
  constraint task_comments_task_in_organization foreign key (organization_id, task_id)
    references app_public.tasks (organization_id, id) on delete cascade
);
comment on constraint task_comments_task_in_organization on app_public.task_comments is E'@behavior -*';
create index task_comments_task_id_idx on app_public.task_comments (task_id, created_at);
create index task_comments_organization_id_idx on app_public.task_comments (organization_id);
create index task_comments_author_id_idx on app_public.task_comments (author_id);
comment on table app_public.task_comments is
  'A comment on a task. Members comment; authors edit their own; authors and owners/admins delete.';
comment on column app_public.task_comments.organization_id is E'@behavior -insert\nThe organization, taken from the task.';
comment on column app_public.task_comments.body is 'The comment (1 to 10000 characters).';
comment on column app_public.task_comments.author_id is 'Who wrote it.';

create trigger _100_timestamps before insert or update on app_public.task_comments
  for each row execute function app_private.tg__timestamps();

create function app_private.tg_task_comments__before_write() returns trigger
language plpgsql security definer
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_project_id uuid;
begin
  select t.project_id into v_project_id from app_public.tasks t
    where t.id = (case when tg_op = 'DELETE' then old.task_id else new.task_id end);
  perform app_private.assert_project_writable(v_project_id);
  if tg_op = 'DELETE' then
    return old;
  end if;
  if tg_op = 'INSERT' then
    select t.organization_id into new.organization_id from app_public.tasks t where t.id = new.task_id;
    if new.organization_id is null then
      raise exception 'Task not found.' using errcode = 'OS404';
    end if;
    new.author_id = app_public.current_user_id();
  end if;
  return new;
end;
$$;
comment on function app_private.tg_task_comments__before_write() is
  'Trigger: takes the organization from the task, records the author, and refuses changes in archived projects.';
create trigger _050_before_write before insert or update or delete on app_public.task_comments
  for each row execute function app_private.tg_task_comments__before_write();

alter table app_public.task_comments enable row level security;
create policy select_member on app_public.task_comments for select
  using (organization_id in (select app_hidden.current_user_organization_ids()) or (select app_public.current_user_is_admin()));
create policy insert_member on app_public.task_comments for insert
  with check (organization_id in (select app_hidden.current_user_organization_ids()));
create policy update_author on app_public.task_comments for update
  using (author_id = (select app_public.current_user_id()) and organization_id in (select app_hidden.current_user_organization_ids()));
create policy delete_author_or_manager on app_public.task_comments for delete
  using (
    organization_id in (select app_hidden.current_user_organization_ids())
    and (author_id = (select app_public.current_user_id()) or app_hidden.current_user_manages(organization_id))
  );
grant select on app_public.task_comments to :DATABASE_ANONYMOUS;
grant select, delete on app_public.task_comments to :DATABASE_USER;
grant insert (task_id, body) on app_public.task_comments to :DATABASE_USER;
grant update (body) on app_public.task_comments to :DATABASE_USER;

--------------------------------------------------------------------------------
-- Activity log: written by triggers only.
--------------------------------------------------------------------------------

create table app_public.activity (
  id uuid primary key default gen_random_uuid(),
  organization_id uuid not null references app_public.organizations on delete cascade,
  actor_id uuid references app_public.users on delete set null,
  action text not null,
  entity_type text not null,
  entity_id uuid not null,
  diff jsonb not null default '{}',
  created_at timestamptz not null default clock_timestamp()
);
create index activity_organization_id_idx on app_public.activity (organization_id, created_at desc);
create index activity_actor_id_idx on app_public.activity (actor_id);
create index activity_entity_idx on app_public.activity (entity_id);
comment on table app_public.activity is
  E'@behavior -insert -update -delete\nWho did what in an organization, newest first. Written by the database itself; members read it.';
comment on column app_public.activity.action is 'What happened: created, updated or deleted.';
comment on column app_public.activity.entity_type is 'What it happened to: project, task, comment, membership, invitation or organization.';
comment on column app_public.activity.entity_id is 'The id of that thing (it may since have been deleted).';
comment on column app_public.activity.diff is 'For updates, the changed fields as {"field": [old, new]}; for creation and deletion, a short summary.';
comment on column app_public.activity.actor_id is 'Who did it (null for the system).';

alter table app_public.activity enable row level security;
create policy select_member on app_public.activity for select
  using (organization_id in (select app_hidden.current_user_organization_ids()) or (select app_public.current_user_is_admin()));
grant select on app_public.activity to :DATABASE_ANONYMOUS, :DATABASE_USER;

create function app_private.tg__activity() returns trigger
language plpgsql security definer
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_row jsonb := to_jsonb(case when tg_op = 'DELETE' then old else new end);
  v_organization_id uuid := coalesce((v_row ->> 'organization_id')::uuid, (v_row ->> 'id')::uuid);
  v_diff jsonb;
begin
  -- Rows deleted along with their organization need no history.
  if not exists (select 1 from app_public.organizations o where o.id = v_organization_id) then
    return null;
  end if;
  if tg_op = 'UPDATE' then
    select coalesce(jsonb_object_agg(n.key,
        case when n.key in ('description', 'body') then '"(changed)"'::jsonb else jsonb_build_array(o.value, n.value) end), '{}')
      into v_diff
      from jsonb_each(v_row) n join jsonb_each(to_jsonb(old)) o using (key)
      where n.value is distinct from o.value and n.key not in ('updated_at', 'created_at', 'search', 'completed_at');
    if v_diff = '{}' then
      return null;
    end if;
  else
    select coalesce(jsonb_object_agg(key, value), '{}') into v_diff
      from jsonb_each(v_row) where key in ('name', 'title', 'status', 'role', 'user_id', 'slug', 'task_id');
  end if;
  insert into app_public.activity (organization_id, actor_id, action, entity_type, entity_id, diff)
    values (v_organization_id, app_public.current_user_id(),
      case tg_op when 'INSERT' then 'created' when 'UPDATE' then 'updated' else 'deleted' end,
      tg_argv[0], (v_row ->> 'id')::uuid, v_diff);
  return null;
end;
$$;
comment on function app_private.tg__activity() is
  'Trigger: appends who did what to app_public.activity; the entity type is the trigger argument.';

create trigger _500_activity after insert or update or delete on app_public.organizations
  for each row execute function app_private.tg__activity('organization');
create trigger _500_activity after insert or update or delete on app_public.organization_memberships
  for each row execute function app_private.tg__activity('membership');
create trigger _500_activity after insert or delete on app_public.organization_invitations
  for each row execute function app_private.tg__activity('invitation');
create trigger _500_activity after insert or update or delete on app_public.projects
  for each row execute function app_private.tg__activity('project');
create trigger _500_activity after insert or update or delete on app_public.tasks
  for each row execute function app_private.tg__activity('task');
create trigger _500_activity after insert or update or delete on app_public.task_comments
  for each row execute function app_private.tg__activity('comment');

--------------------------------------------------------------------------------
-- Realtime: NOTIFY carries only ids; subscribers re-read rows under their own
-- role, so row-level security guards realtime too.
--------------------------------------------------------------------------------

create function app_private.tg_tasks__notify() returns trigger
language plpgsql
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_task app_public.tasks := case when tg_op = 'DELETE' then old else new end;
begin
  perform pg_notify('project:' || v_task.project_id || ':tasks', json_build_object(
    'event', case
      when tg_op = 'INSERT' then 'created'
      when tg_op = 'DELETE' then 'deleted'
      when old.status is distinct from new.status or old.position is distinct from new.position then 'moved'
      else 'updated'
    end,
    'id', v_task.id)::text);
  return null;
end;
$$;
comment on function app_private.tg_tasks__notify() is 'Trigger: announces created, updated, moved and deleted tasks on the channel project:<id>:tasks.';
create trigger _900_notify after insert or update or delete on app_public.tasks
  for each row execute function app_private.tg_tasks__notify();

create function app_private.tg_task_comments__notify() returns trigger
language plpgsql
set search_path = pg_catalog, public, pg_temp
as $$
begin
  perform pg_notify('task:' || new.task_id || ':comments', json_build_object('event', 'created', 'id', new.id)::text);
  return null;
end;
$$;
comment on function app_private.tg_task_comments__notify() is 'Trigger: announces new comments on the channel task:<id>:comments.';
create trigger _900_notify after insert on app_public.task_comments
  for each row execute function app_private.tg_task_comments__notify();

--------------------------------------------------------------------------------
-- GraphQL naming: clear relation names; the (organization_id, id) keys exist
-- only for the composite foreign keys above and stay out of the API.
--------------------------------------------------------------------------------

comment on constraint projects_organization_id_id_key on app_public.projects is E'@behavior -*';
comment on constraint tasks_organization_id_id_key on app_public.tasks is E'@behavior -*';
comment on constraint projects_created_by_fkey on app_public.projects is E'@fieldName creator\n@foreignFieldName createdProjects';
comment on constraint tasks_created_by_fkey on app_public.tasks is E'@fieldName creator\n@foreignFieldName createdTasks';
comment on constraint tasks_assignee_id_fkey on app_public.tasks is E'@fieldName assignee\n@foreignFieldName assignedTasks';
comment on constraint task_comments_author_id_fkey on app_public.task_comments is E'@fieldName author\n@foreignFieldName comments';
comment on constraint task_comments_task_id_fkey on app_public.task_comments is E'@fieldName task\n@foreignFieldName comments';
comment on constraint activity_actor_id_fkey on app_public.activity is E'@fieldName actor\n@foreignFieldName activities';
comment on constraint organization_invitations_invited_by_fkey on app_public.organization_invitations is E'@fieldName inviter\n@foreignFieldName sentInvitations';
comment on column app_public.users.name is E'@behavior +orderBy\nThe name other people see (1 to 100 characters).';
