--! Previous: sha1:5dcb9ca6fb2ab2705fda3199061373710a23d836
--! Hash: sha1:aee11db7828e0ff0217067e044b84a03562b8ba4
--! Message: Organizations hardening

--------------------------------------------------------------------------------
-- Organizations hardening.
--
-- 1. Invariants that read other rows hold under concurrency: every change to
--    memberships locks the organization row first (FOR NO KEY UPDATE, which
--    does not block foreign-key checks), and task positions are assigned under
--    a lock on the project and are unique per column.
-- 2. Changes the database makes itself (ON DELETE SET NULL / CASCADE) are not
--    blocked by the rules written for users (archived projects are read-only).
-- 3. Row-level security decides first: triggers look up the parent row as the
--    caller, so "exists but not yours" answers exactly like "does not exist".
-- 4. Invitation tokens are made by the job that emails them; unverified users
--    cannot create organizations or accept invitations when the API asks.
--------------------------------------------------------------------------------

drop function if exists app_private.invitation_sent(uuid);
drop function if exists app_private.mint_invitation_token(uuid);
drop function if exists app_private.lock_membership(uuid);
drop function if exists app_private.require_project_role(uuid, app_public.organization_role[], text);
drop function if exists app_hidden.renumber_task_column(uuid, app_public.task_status);
drop function if exists app_hidden.next_task_position(uuid, app_public.task_status);
drop function if exists app_hidden.lock_task_positions(uuid);
drop function if exists app_hidden.assert_project_writable(uuid);
drop function if exists app_private.lock_organization(uuid);

--------------------------------------------------------------------------------
-- Locks
--------------------------------------------------------------------------------

create function app_private.lock_organization(organization_id uuid) returns void
language plpgsql volatile security definer
set search_path = pg_catalog, public, pg_temp
as $$
begin
  perform 1 from app_public.organizations o where o.id = lock_organization.organization_id for no key update;
end;
$$;
comment on function app_private.lock_organization(uuid) is
  'Serializes changes to an organization''s members (and, later, its plan-limited counts) until the transaction ends. Foreign-key checks of inserts are not blocked.';

-- The task and comment triggers run as the caller (so row-level security decides what they can
-- see), and moveTask does too. The helpers they need live in app_hidden, callable by signed-in
-- users, and run as the caller as well: they can never do more than the caller may.
create function app_hidden.lock_task_positions(project_id uuid) returns void
language plpgsql volatile security invoker
set search_path = pg_catalog, public, pg_temp
as $$
begin
  perform 1 from app_public.projects p where p.id = lock_task_positions.project_id for no key update;
end;
$$;
comment on function app_hidden.lock_task_positions(uuid) is
  'Serializes position assignments in a project''s columns until the transaction ends (a project the caller may edit). Take it before locking any of its tasks.';

create function app_hidden.assert_project_writable(project_id uuid) returns void
language plpgsql stable security invoker
set search_path = pg_catalog, public, pg_temp
as $$
begin
  if exists (select 1 from app_public.projects p where p.id = assert_project_writable.project_id and p.archived_at is not null) then
    raise exception 'This project is archived and read-only; unarchive it first.' using errcode = 'OS409', detail = 'project_archived';
  end if;
end;
$$;
comment on function app_hidden.assert_project_writable(uuid) is 'Raises project_archived when the project is archived.';

--------------------------------------------------------------------------------
-- The one-owner invariant, serialized
--------------------------------------------------------------------------------

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

--------------------------------------------------------------------------------
-- Organization functions: check the caller, lock, then read again and act
--------------------------------------------------------------------------------

create function app_private.lock_membership(membership_id uuid) returns app_public.organization_memberships
language plpgsql volatile
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_organization_id uuid;
  v_membership app_public.organization_memberships;
begin
  perform app_private.require_user();
  select m.organization_id into v_organization_id from app_public.organization_memberships m
    where m.id = lock_membership.membership_id;
  -- A membership of an organization you are not in is as unknown as a made-up id.
  if v_organization_id is null or app_hidden.current_user_role_in(v_organization_id) is null then
    raise exception 'Membership not found.' using errcode = 'OS404';
  end if;
  perform app_private.lock_organization(v_organization_id);
  select * into v_membership from app_public.organization_memberships m where m.id = lock_membership.membership_id;
  if not found then
    raise exception 'Membership not found.' using errcode = 'OS404';
  end if;
  return v_membership;
end;
$$;
comment on function app_private.lock_membership(uuid) is
  'Locks the organization of a membership the caller can see and returns the membership as it is now; not_found otherwise.';

create or replace function app_public.create_organization(slug citext, name text) returns app_public.organizations
language plpgsql volatile security definer
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_user_id uuid := app_private.require_user();
  v_organization app_public.organizations;
begin
  perform app_private.assert_email_verified();
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
  E'@resultFieldName organization\nCreates an organization with you as its owner. Needs a confirmed email address when the server requires one.';

alter table app_public.organization_invitations drop constraint if exists email_format;
alter table app_public.organization_invitations add constraint email_format
  check (email ~ '^[^@\s]+@[^@\s]+\.[^@\s]+$' and length(email) <= 254);

alter table app_private.organization_invitation_secrets add column if not exists emailed_at timestamptz;
-- Invitations from before this migration were emailed with their token already.
update app_private.organization_invitation_secrets set emailed_at = now() where emailed_at is null;
comment on table app_private.organization_invitation_secrets is
  'SHA-256 of each invitation''s emailed token, made by the job that sends the invitation (so the token is never queued or logged).';
comment on column app_private.organization_invitation_secrets.emailed_at is
  'When the invitation email was handed to the mail server; a retried job does not send it twice.';

create or replace function app_public.invite_to_organization(organization_id uuid, email citext, role app_public.organization_role default 'member')
returns app_public.organization_invitations
language plpgsql volatile security definer
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_my_role app_public.organization_role;
  v_invitation app_public.organization_invitations;
begin
  perform app_private.require_role(invite_to_organization.organization_id, '{owner,admin}', 'invite people');
  perform app_private.lock_organization(invite_to_organization.organization_id);
  v_my_role := app_private.require_role(invite_to_organization.organization_id, '{owner,admin}', 'invite people');
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
  perform graphile_worker.add_job('organizations__send_invitation', json_build_object('id', v_invitation.id), max_attempts := 10);
  return v_invitation;
end;
$$;

create function app_private.mint_invitation_token(invitation_id uuid)
returns table (token text, email citext, role app_public.organization_role, organization_name text, inviter_name text, expires_at timestamptz)
language plpgsql volatile
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_token text := app_private.new_token();
begin
  if not exists (
    select 1 from app_public.organization_invitations i
    where i.id = mint_invitation_token.invitation_id and i.accepted_at is null and i.expires_at > now()
  ) then
    return;
  end if;
  insert into app_private.organization_invitation_secrets as s (invitation_id, token_hash)
    values (mint_invitation_token.invitation_id, app_private.token_hash(v_token))
    on conflict on constraint organization_invitation_secrets_pkey do update set token_hash = excluded.token_hash where s.emailed_at is null;
  if not found then
    return;
  end if;
  return query
    select v_token, i.email, i.role, o.name, u.name, i.expires_at
    from app_public.organization_invitations i
    join app_public.organizations o on o.id = i.organization_id
    left join app_public.users u on u.id = i.invited_by
    where i.id = mint_invitation_token.invitation_id;
end;
$$;
comment on function app_private.mint_invitation_token(uuid) is
  'For the sending job: makes the token of a pending invitation, stores its hash and returns the token with what the email needs; no row when the invitation is gone, accepted, expired or already emailed.';

create function app_private.invitation_sent(invitation_id uuid) returns void
language sql volatile
set search_path = pg_catalog, public, pg_temp
as $$
  update app_private.organization_invitation_secrets set emailed_at = now() where invitation_id = invitation_sent.invitation_id;
$$;
comment on function app_private.invitation_sent(uuid) is 'For the sending job: records that the invitation was emailed.';

create or replace function app_public.accept_invitation(token text) returns app_public.organization_memberships
language plpgsql volatile security definer
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_user_id uuid := app_private.require_user();
  v_organization_id uuid;
  v_invitation app_public.organization_invitations;
  v_membership app_public.organization_memberships;
begin
  perform app_private.assert_email_verified();
  select i.organization_id into v_organization_id
    from app_public.organization_invitations i
    join app_private.organization_invitation_secrets s on s.invitation_id = i.id
    where s.token_hash = app_private.token_hash(accept_invitation.token);
  if v_organization_id is not null then
    perform app_private.lock_organization(v_organization_id);
  end if;
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
  E'@resultFieldName membership\nJoins the organization with the token from an invitation email. Works for accounts created after the invitation was sent, as long as the address matches (and is confirmed, when the server requires it).';

create or replace function app_public.change_member_role(membership_id uuid, role app_public.organization_role)
returns app_public.organization_memberships
language plpgsql volatile security definer
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_target app_public.organization_memberships := app_private.lock_membership(change_member_role.membership_id);
  v_my_role app_public.organization_role;
begin
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

create or replace function app_public.remove_member(membership_id uuid) returns app_public.organization_memberships
language plpgsql volatile security definer
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_target app_public.organization_memberships := app_private.lock_membership(remove_member.membership_id);
  v_my_role app_public.organization_role;
begin
  v_my_role := app_private.require_role(v_target.organization_id, '{owner,admin}', 'remove members');
  if v_target.role = 'owner' and v_my_role <> 'owner' then
    raise exception 'Only owners can remove an owner.' using errcode = 'OS403';
  end if;
  delete from app_public.organization_memberships m where m.id = v_target.id;
  return v_target;
end;
$$;

create or replace function app_public.leave_organization(organization_id uuid) returns app_public.organization_memberships
language plpgsql volatile security definer
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_membership app_public.organization_memberships;
begin
  perform app_private.require_role(leave_organization.organization_id, '{owner,admin,member}', 'leave');
  perform app_private.lock_organization(leave_organization.organization_id);
  delete from app_public.organization_memberships m
    where m.organization_id = leave_organization.organization_id and m.user_id = app_public.current_user_id()
    returning * into v_membership;
  if not found then
    raise exception 'Organization not found.' using errcode = 'OS404';
  end if;
  return v_membership;
end;
$$;

create or replace function app_public.transfer_ownership(organization_id uuid, user_id uuid) returns app_public.organization_memberships
language plpgsql volatile security definer
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_new_owner app_public.organization_memberships;
begin
  perform app_private.require_role(transfer_ownership.organization_id, '{owner}', 'transfer ownership');
  perform app_private.lock_organization(transfer_ownership.organization_id);
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

create or replace function app_public.delete_organization(organization_id uuid) returns app_public.organizations
language plpgsql volatile security definer
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_organization app_public.organizations;
begin
  perform app_private.require_role(delete_organization.organization_id, '{owner}', 'delete it');
  perform app_private.lock_organization(delete_organization.organization_id);
  perform app_private.require_role(delete_organization.organization_id, '{owner}', 'delete it');
  delete from app_public.organizations o where o.id = delete_organization.organization_id returning * into v_organization;
  return v_organization;
end;
$$;

--------------------------------------------------------------------------------
-- Projects: archiving answers "not found" for projects you cannot see; the
-- read-only rule applies to people, not to the database's own maintenance
--------------------------------------------------------------------------------

create function app_private.require_project_role(project_id uuid, allowed app_public.organization_role[], action text)
returns app_public.projects
language plpgsql stable
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_project app_public.projects;
begin
  perform app_private.require_user();
  select * into v_project from app_public.projects p where p.id = require_project_role.project_id;
  if v_project.id is null or app_hidden.current_user_role_in(v_project.organization_id) is null then
    raise exception 'Project not found.' using errcode = 'OS404';
  end if;
  perform app_private.require_role(v_project.organization_id, allowed, action);
  return v_project;
end;
$$;
comment on function app_private.require_project_role(uuid, app_public.organization_role[], text) is
  'The project, when the current user''s role in its organization is one of `allowed`; not_found for non-members (as for a made-up id), forbidden otherwise.';

create or replace function app_public.archive_project(project_id uuid) returns app_public.projects
language plpgsql volatile security definer
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_project app_public.projects := app_private.require_project_role(archive_project.project_id, '{owner,admin}', 'archive projects');
begin
  update app_public.projects p set archived_at = now()
    where p.id = v_project.id and p.archived_at is null;
  select * into v_project from app_public.projects p where p.id = v_project.id;
  return v_project;
end;
$$;

create or replace function app_public.unarchive_project(project_id uuid) returns app_public.projects
language plpgsql volatile security definer
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_project app_public.projects := app_private.require_project_role(unarchive_project.project_id, '{owner,admin}', 'unarchive projects');
begin
  update app_public.projects p set archived_at = null where p.id = v_project.id returning * into v_project;
  return v_project;
end;
$$;

create or replace function app_private.tg_projects__before_write() returns trigger
language plpgsql
set search_path = pg_catalog, public, pg_temp
as $$
begin
  if tg_op = 'INSERT' then
    new.created_by = app_public.current_user_id();
    new.archived_at = null;
  -- Only people's edits are refused; the database's own (a creator's account being deleted) go through.
  elsif old.archived_at is not null and new.archived_at is not null and pg_catalog.pg_trigger_depth() = 1 then
    raise exception 'This project is archived and read-only; unarchive it first.' using errcode = 'OS409', detail = 'project_archived';
  end if;
  return new;
end;
$$;

--------------------------------------------------------------------------------
-- Tasks: positions unique per column, assigned under a lock
--------------------------------------------------------------------------------

create function app_hidden.next_task_position(project_id uuid, status app_public.task_status) returns numeric
language plpgsql volatile security invoker
set search_path = pg_catalog, public, pg_temp
as $$
begin
  perform app_hidden.lock_task_positions(next_task_position.project_id);
  return coalesce((
    select max(t.position) + 1 from app_public.tasks t
    where t.project_id = next_task_position.project_id and t.status = next_task_position.status
  ), 1);
end;
$$;
comment on function app_hidden.next_task_position(uuid, app_public.task_status) is
  'The position after the last task of a column, taken under the project''s position lock.';

create function app_hidden.renumber_task_column(project_id uuid, status app_public.task_status) returns void
language plpgsql volatile security invoker
set search_path = pg_catalog, public, pg_temp
as $$
begin
  update app_public.tasks t set position = r.n
  from (
    select t2.id, row_number() over (order by t2.position, t2.id) as n from app_public.tasks t2
    where t2.project_id = renumber_task_column.project_id and t2.status = renumber_task_column.status
  ) r
  where t.id = r.id and t.position <> r.n;
end;
$$;
comment on function app_hidden.renumber_task_column(uuid, app_public.task_status) is
  'Gives a column''s tasks the positions 1, 2, 3… in their current order, when repeated moves into one gap would need more than 12 decimals.';

-- Older databases may hold columns with shared positions; number those columns afresh (the
-- user-facing triggers stay out of it) before the database enforces uniqueness.
alter table app_public.tasks disable trigger user;
update app_public.tasks t set position = r.n
from (
  select t2.id, row_number() over (partition by t2.project_id, t2.status order by t2.position, t2.created_at, t2.id) as n
  from app_public.tasks t2
  where (t2.project_id, t2.status) in (
    select d.project_id, d.status from app_public.tasks d group by d.project_id, d.status, d.position having count(*) > 1
  )
) r
where t.id = r.id;
alter table app_public.tasks enable trigger user;

drop index if exists app_public.tasks_project_board_idx;
alter table app_public.tasks drop constraint if exists tasks_position_unique;
alter table app_public.tasks add constraint tasks_position_unique unique (project_id, status, position) deferrable initially immediate;
comment on constraint tasks_position_unique on app_public.tasks is E'@behavior -*';

create or replace function app_private.tg_tasks__before_write() returns trigger
language plpgsql security invoker
set search_path = pg_catalog, public, pg_temp
as $$
declare
  -- Changes the database makes itself (a removed member's tasks being unassigned, a deleted
  -- project's tasks going with it) are not people's edits: the archived rule is for people.
  v_by_people boolean := pg_catalog.pg_trigger_depth() = 1;
begin
  if tg_op = 'DELETE' then
    if v_by_people then
      perform app_hidden.assert_project_writable(old.project_id);
    end if;
    return old;
  end if;
  if tg_op = 'INSERT' then
    -- Read as the caller, so a project they cannot see is "not found", like one that does not exist.
    select p.organization_id into new.organization_id from app_public.projects p where p.id = new.project_id;
    if new.organization_id is null then
      raise exception 'Project not found.' using errcode = 'OS404';
    end if;
    perform app_hidden.assert_project_writable(new.project_id);
    new.created_by = app_public.current_user_id();
    new.position = app_hidden.next_task_position(new.project_id, new.status);
  else
    if v_by_people then
      perform app_hidden.assert_project_writable(old.project_id);
    end if;
    if new.project_id <> old.project_id then
      raise exception 'A task cannot move to another project.' using errcode = 'OS400';
    end if;
    -- A status change goes to the end of the new column, unless moveTask placed the task.
    if new.status <> old.status
      and coalesce(pg_catalog.current_setting('app.placing_task', true), '') <> new.id::text
    then
      new.position = app_hidden.next_task_position(new.project_id, new.status);
    end if;
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
  'Trigger: takes the organization from the project (as the caller sees it), records the creator, appends new tasks and tasks changing column to the end, maintains completed_at, and refuses people''s changes in archived projects.';

create or replace function app_public.move_task(task_id uuid, status app_public.task_status, after_task_id uuid default null)
returns app_public.tasks
language plpgsql volatile
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_task app_public.tasks;
  v_after numeric;
  v_next numeric;
  v_position numeric;
begin
  -- The task's row first, then the project: the order in which an UPDATE of the task (and its
  -- trigger) takes them, so a move and an edit of the same task cannot deadlock.
  select * into v_task from app_public.tasks t where t.id = move_task.task_id for no key update;
  if not found then
    raise exception 'Task not found.' using errcode = 'OS404';
  end if;
  if move_task.after_task_id = v_task.id then
    raise exception 'afterTaskId must be another task.' using errcode = 'OS400';
  end if;
  perform app_hidden.lock_task_positions(v_task.project_id);
  for attempt in 1..2 loop
    if move_task.after_task_id is null then
      v_next := (select min(t.position) from app_public.tasks t
        where t.project_id = v_task.project_id and t.status = move_task.status and t.id <> v_task.id);
      v_position := coalesce(v_next - 1, 1);
    else
      select t.position into v_after from app_public.tasks t
        where t.id = move_task.after_task_id and t.project_id = v_task.project_id and t.status = move_task.status;
      if not found then
        raise exception 'afterTaskId must be a task in the same project and column.' using errcode = 'OS400';
      end if;
      v_next := (select min(t.position) from app_public.tasks t
        where t.project_id = v_task.project_id and t.status = move_task.status and t.position > v_after and t.id <> v_task.id);
      v_position := case when v_next is null then v_after + 1 else pg_catalog.trim_scale((v_after + v_next) / 2) end;
    end if;
    exit when move_task.after_task_id is null or v_next is null
      or (v_position > v_after and v_position < v_next and pg_catalog.scale(v_position) <= 12);
    -- Halving the same gap again and again needs ever more digits: past 12 decimals, number the
    -- column afresh (1, 2, 3…) and place again.
    perform app_hidden.renumber_task_column(v_task.project_id, move_task.status);
  end loop;
  perform pg_catalog.set_config('app.placing_task', v_task.id::text, true);
  update app_public.tasks t set status = move_task.status, position = v_position
    where t.id = v_task.id returning * into v_task;
  perform pg_catalog.set_config('app.placing_task', '', true);
  return v_task;
end;
$$;

--------------------------------------------------------------------------------
-- Comments: the task is read as the caller; the read-only rule is for people
--------------------------------------------------------------------------------

create or replace function app_private.tg_task_comments__before_write() returns trigger
language plpgsql security invoker
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_task app_public.tasks;
begin
  -- Changes the database makes itself (a deleted task's comments going with it, a deleted
  -- author's name removed) are not people's edits: the archived rule is for people, and their
  -- task may already be gone.
  if pg_catalog.pg_trigger_depth() > 1 then
    return case when tg_op = 'DELETE' then old else new end;
  end if;
  -- Read as the caller, so a task they cannot see is "not found", like one that does not exist.
  select * into v_task from app_public.tasks t where t.id = (case when tg_op = 'DELETE' then old.task_id else new.task_id end);
  if v_task.id is null then
    raise exception 'Task not found.' using errcode = 'OS404';
  end if;
  perform app_hidden.assert_project_writable(v_task.project_id);
  if tg_op = 'DELETE' then
    return old;
  end if;
  if tg_op = 'INSERT' then
    new.organization_id = v_task.organization_id;
    new.author_id = app_public.current_user_id();
  end if;
  return new;
end;
$$;
comment on function app_private.tg_task_comments__before_write() is
  'Trigger: takes the organization from the task (as the caller sees it), records the author, and refuses people''s changes in archived projects.';

--------------------------------------------------------------------------------
-- Activity: positions are not history (a reorder within a column records nothing)
--------------------------------------------------------------------------------

create or replace function app_private.tg__activity() returns trigger
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
      where n.value is distinct from o.value and n.key not in ('updated_at', 'created_at', 'search', 'completed_at', 'position');
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

grant execute on function app_hidden.lock_task_positions(uuid), app_hidden.assert_project_writable(uuid),
  app_hidden.next_task_position(uuid, app_public.task_status), app_hidden.renumber_task_column(uuid, app_public.task_status)
to :DATABASE_USER;
drop function if exists app_private.assert_project_writable(uuid);
