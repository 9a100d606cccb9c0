--! Previous: sha1:334a276d67686a8b93fc101008db1d2a24337b24
--! Hash: sha1:1d941af4263366cab22dbc7499e5f1404b667c08
--! Message: Accounts review

--------------------------------------------------------------------------------
-- Accounts, after review.
--
-- - Signing out everywhere, changing or resetting the password, or an account
--   being disabled cancels pending email changes: someone who learnt the
--   password cannot finish one after the owner secured the account. The
--   request itself is a security event.
-- - Changing the address kills every other link of the account (a reset link
--   emailed to the old address no longer works), and a reset link for an
--   address the account no longer has is refused.
-- - An older email-change link is superseded whatever the new address, so its
--   fate says nothing about which addresses have accounts.
-- - No session opens for an account being disabled at that moment (the check
--   waits for the disabling to commit).
-- - Ended sessions are announced (NOTIFY oddscenes:sessions_ended), so the API
--   closes their WebSockets at once rather than at its next check.
-- - Deleting an account: co-owners leaving at once cannot leave an
--   organization without an owner (a closing account is no owner), pending
--   invitations to organizations it leaves behind are withdrawn, the same
--   "still billed" rule as deleteOrganization applies (held subscriptions
--   too), and the confirmation is sent once the job has deleted it.
--------------------------------------------------------------------------------

alter type app_public.security_event_kind add value if not exists 'email_change_requested';
comment on type app_public.security_event_kind is E'What happened to an account:\n- signed_in: a session was opened (a sign-in, or a new account)\n- sign_in_failed: a wrong password was given for the account\n- signed_out: a session was signed out\n- session_revoked: a session was ended from another one (revokeSession)\n- sessions_revoked: sessions were ended together (sign out everywhere, a password change or reset, a site administrator); details.reason and details.sessions say why and how many\n- refresh_token_reused: a spent refresh token was presented again, so its session was ended\n- password_changed, password_reset: the password was changed (signed in) or reset (by email link)\n- email_change_requested: a change of address was asked for (details.to); it happens only when the link sent there is opened\n- email_changed: the address was changed (details.from and details.to)\n- account_disabled, account_enabled: a site administrator disabled or re-enabled the account (details.reason says why)';

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
  ), revoked as (
    update app_private.sessions s set revoked_at = now(), revoked_reason = reason
    where s.user_id = revoke_user_sessions.user_id and s.revoked_at is null
      and s.id is distinct from except_session_id
    returning 1
  )
  select count(*)::int from revoked;
$$;
comment on function app_private.revoke_user_sessions(uuid, uuid, text) is
  'Ends every session of a user (but one, when given) for a reason, and cancels a pending change of their address; returns how many sessions ended.';

create or replace function app_private.tg_sessions__not_disabled() returns trigger
language plpgsql
set search_path = pg_catalog, public, pg_temp
as $$
begin
  -- FOR SHARE waits for a disabling in progress to commit, then sees it.
  perform 1 from app_public.users u where u.id = new.user_id and u.disabled_at is null for share;
  if not found then
    raise exception 'This account is disabled.' using errcode = 'OS403', detail = 'account_disabled';
  end if;
  return new;
end;
$$;

comment on function app_public.user_disabled_at(uuid) is
  E'@behavior -queryField\nWhen the account was disabled; visible to the user themself and site administrators only (null for anyone else).';

-- Reset links sent to an address the account no longer has are dead.
create or replace function app_private.reset_password(token text, password_hash text, client text,
  out user_id uuid, out device_token text)
language plpgsql volatile
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_token app_private.email_tokens := app_private.consume_email_token(reset_password.token, 'reset_password');
  v_user app_public.users;
begin
  -- A link sent to an address the account no longer has is dead (the address changed since).
  if not exists (select 1 from app_public.users u where u.id = v_token.user_id and u.email = v_token.email) then
    raise exception 'This link is invalid, already used or expired; request a new one.' using errcode = 'OS400', detail = 'invalid_token';
  end if;
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

-- Email changes: the request is recorded, and superseding does not depend on the address.
create or replace function app_private.request_email_change(user_id uuid, new_email citext) returns void
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
  -- A new request replaces an older link, whether or not the new address is free: otherwise the
  -- older link's fate would tell which addresses have accounts.
  update app_private.email_tokens t set used_at = now()
    where t.user_id = v_user.id and t.purpose = 'change_email' and t.used_at is null;
  perform app_private.record_security_event(v_user.id, 'email_change_requested', jsonb_build_object('to', v_new));
  select * into v_owner from app_public.users u where u.email = v_new;
  if v_owner.id is not null then
    perform graphile_worker.add_job('send_email', json_build_object('to', v_owner.email, 'template', 'email_change_attempted',
      'variables', json_build_object('name', v_owner.name)), max_attempts := 10);
    return;
  end if;
  insert into app_private.email_tokens (user_id, purpose, email, new_email, expires_at)
    values (v_user.id, 'change_email', v_user.email, v_new, now() + interval '1 day')
    returning id into v_id;
  perform graphile_worker.add_job('auth__send_email_token', json_build_object('id', v_id), max_attempts := 10);
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
  -- already emailed there, other email changes).
  update app_private.email_tokens t set used_at = now() where t.user_id = v_user.id and t.used_at is null;
  perform app_private.record_security_event(v_user.id, 'email_changed', jsonb_build_object('from', v_token.email, 'to', v_user.email));
  return v_user;
end;
$$;

-- The export holds tasks the user created only where they are still a member.
create or replace function app_private.user_data(user_id uuid) returns jsonb
language sql stable
set search_path = pg_catalog, public, pg_temp
as $$
  select jsonb_build_object(
    'format', 'oddscenes-user-export/1',
    'exportedAt', now(),
    'profile', (select jsonb_build_object('id', u.id, 'email', u.email, 'name', u.name, 'avatarUrl', u.avatar_url,
        'emailVerifiedAt', u.email_verified_at, 'createdAt', u.created_at, 'updatedAt', u.updated_at)
      from app_public.users u where u.id = user_data.user_id),
    'memberships', coalesce((select jsonb_agg(jsonb_build_object('organizationId', o.id, 'organization', o.name, 'slug', o.slug,
        'role', m.role, 'since', m.created_at) order by m.created_at)
      from app_public.organization_memberships m join app_public.organizations o on o.id = m.organization_id
      where m.user_id = user_data.user_id), '[]'),
    'tasksCreated', coalesce((select jsonb_agg(jsonb_build_object('id', t.id, 'organizationId', t.organization_id, 'projectId', t.project_id,
        'title', t.title, 'description', t.description, 'status', t.status, 'priority', t.priority, 'dueAt', t.due_at,
        'createdAt', t.created_at, 'completedAt', t.completed_at) order by t.created_at)
      from app_public.tasks t where t.created_by = user_data.user_id
        -- Others may have edited them since: only where the user can still read them anyway.
        and exists (select 1 from app_public.organization_memberships m where m.organization_id = t.organization_id and m.user_id = user_data.user_id)), '[]'),
    'comments', coalesce((select jsonb_agg(jsonb_build_object('id', c.id, 'organizationId', c.organization_id, 'taskId', c.task_id,
        'body', c.body, 'createdAt', c.created_at, 'updatedAt', c.updated_at) order by c.created_at)
      from app_public.task_comments c where c.author_id = user_data.user_id), '[]'),
    'files', coalesce((select jsonb_agg(jsonb_build_object('id', f.id, 'organizationId', f.organization_id, 'purpose', f.purpose,
        'filename', f.filename, 'contentType', f.content_type, 'size', coalesce(f.size, f.declared_size), 'status', f.status,
        'createdAt', f.created_at) order by f.created_at)
      from app_public.files f where f.uploaded_by = user_data.user_id), '[]'),
    'securityEvents', coalesce((select jsonb_agg(jsonb_build_object('kind', e.kind, 'at', e.created_at, 'ip', e.ip,
        'userAgent', e.user_agent, 'details', e.details, 'byAdministrator', e.actor_id is not null) order by e.created_at)
      from app_public.security_events e where e.user_id = user_data.user_id), '[]')
  );
$$;

-- Several sessions ended together: no one session's address or browser stands for them all.
create or replace function app_private.tg_sessions__ended() returns trigger
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
    case when e.sessions = 1 then e.session_id end, case when e.sessions = 1 then e.ip end, case when e.sessions = 1 then e.user_agent end
  from (
    select n.user_id, coalesce(n.revoked_reason, 'revoked') as reason, count(*)::int as sessions,
      min(n.id::text)::uuid as session_id, min(n.ip) as ip, min(n.user_agent) as user_agent
    from new_sessions n join old_sessions o on o.id = n.id
    where o.revoked_at is null and n.revoked_at is not null
    group by n.user_id, coalesce(n.revoked_reason, 'revoked')
  ) e;
  -- The API closes the WebSockets of ended sessions at once (src/auth/socket-sessions.ts).
  if found then
    perform pg_notify('oddscenes:sessions_ended', '');
  end if;
  return null;
end;
$$;

-- One rule for "an organization Stripe still bills", shared by deleteOrganization and account deletion.
create or replace function app_private.organization_billing_obstacle(organization_id uuid) returns text
language plpgsql stable
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_subscription app_public.subscriptions;
begin
  select * into v_subscription from app_public.subscriptions s
    where s.organization_id = organization_billing_obstacle.organization_id and not s.cancel_at_period_end
      and not coalesce(s.cancel_at <= coalesce(s.current_period_end, s.cancel_at), false)
      and s.status in ('incomplete', 'trialing', 'active', 'past_due', 'unpaid', 'paused');
  if v_subscription.id is not null then
    return '''s ' || replace(v_subscription.status::text, '_', ' ') || ' subscription '
      || coalesce('renews on ' || to_char(v_subscription.current_period_end, 'YYYY-MM-DD'), 'would renew');
  end if;
  if exists (select 1 from app_private.stripe_held_subscriptions h where h.organization_id = organization_billing_obstacle.organization_id) then
    return ' has a second live subscription that Stripe still bills';
  end if;
  return null;
end;
$$;
comment on function app_private.organization_billing_obstacle(uuid) is
  'Why deleting the organization would leave Stripe billing, as the end of a sentence starting with its name ("''s active subscription renews on …", " has a second live subscription …"), or null.';

create or replace function app_public.delete_organization(organization_id uuid) returns app_public.organizations
language plpgsql volatile security definer
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_organization app_public.organizations;
  v_obstacle text;
begin
  perform app_private.require_role(delete_organization.organization_id, '{owner}', 'delete it');
  perform app_private.lock_organization(delete_organization.organization_id);
  perform app_private.require_role(delete_organization.organization_id, '{owner}', 'delete it');
  v_obstacle := app_private.organization_billing_obstacle(delete_organization.organization_id);
  if v_obstacle is not null then
    raise exception 'This organization%; cancel it in the billing portal (createBillingPortalSession) first, then delete the organization.', v_obstacle
      using errcode = 'OS409', detail = 'subscription_active';
  end if;
  delete from app_public.organizations o where o.id = delete_organization.organization_id returning * into v_organization;
  return v_organization;
end;
$$;

create or replace function app_private.assert_account_deletable(user_id uuid) returns void
language plpgsql volatile
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_organization record;
  v_obstacle text;
begin
  -- Every organization of theirs, locked, so co-owners leaving at once take turns.
  for v_organization in
    select o.id, o.name, m.role,
      exists (select 1 from app_public.organization_memberships other
        where other.organization_id = o.id and other.user_id <> m.user_id) as has_others,
      -- A closing (disabled) account is no owner to leave an organization to.
      exists (select 1 from app_public.organization_memberships other join app_public.users u on u.id = other.user_id
        where other.organization_id = o.id and other.role = 'owner' and other.user_id <> m.user_id and u.disabled_at is null) as has_other_owner
    from app_public.organization_memberships m join app_public.organizations o on o.id = m.organization_id
    where m.user_id = assert_account_deletable.user_id
    order by o.id
  loop
    perform app_private.lock_organization(v_organization.id);
    if v_organization.role = 'owner' and v_organization.has_others and not v_organization.has_other_owner then
      raise exception 'You are the last owner of %, which has other members: make one of them owner (transferOwnership) or remove them, then delete your account.', v_organization.name
        using errcode = 'OS409', detail = 'last_owner';
    end if;
    if not v_organization.has_others then
      v_obstacle := app_private.organization_billing_obstacle(v_organization.id);
      if v_obstacle is not null then
        raise exception '%', v_organization.name || v_obstacle || '; cancel it in the billing portal (createBillingPortalSession) first, then delete your account.'
          using errcode = 'OS409', detail = 'subscription_active';
      end if;
    end if;
  end loop;
end;
$$;
comment on function app_private.assert_account_deletable(uuid) is
  'Locks the user''s organizations, then raises last_owner when they are the last owner (disabled owners do not count) of one with other members, subscription_active when one of theirs alone would still be billed.';

create or replace function app_private.request_account_deletion(user_id uuid) returns void
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
  -- Nobody joins an organization that is going with the account.
  delete from app_public.organization_invitations i
    where i.accepted_at is null
      and exists (select 1 from app_public.organization_memberships m where m.organization_id = i.organization_id and m.user_id = v_user.id)
      and not exists (select 1 from app_public.organization_memberships m where m.organization_id = i.organization_id and m.user_id <> v_user.id);
  perform graphile_worker.add_job('accounts__delete_user', json_build_object('userId', v_user.id),
    job_key := 'delete_user:' || v_user.id, max_attempts := 10);
end;
$$;
comment on function app_private.request_account_deletion(uuid) is
  'For /auth/delete-account, once the password was checked: refuses what would orphan an organization or leave a subscription billing, then disables the account, ends its sessions, withdraws invitations to the organizations going with it, and queues the job that deletes it (and emails the confirmation).';

create or replace function app_private.delete_user(user_id uuid) returns int
language plpgsql volatile
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_user app_public.users;
  v_organizations int;
begin
  select * into v_user from app_public.users u where u.id = delete_user.user_id;
  if v_user.id is null then
    return 0;  -- already deleted (a retry)
  end if;
  -- Checked again: someone may have joined an organization of theirs since.
  perform app_private.assert_account_deletable(v_user.id);
  with alone as (
    delete from app_public.organizations o
    where exists (select 1 from app_public.organization_memberships m where m.organization_id = o.id and m.user_id = v_user.id)
      and not exists (select 1 from app_public.organization_memberships m where m.organization_id = o.id and m.user_id <> v_user.id)
    returning 1
  )
  select count(*) into v_organizations from alone;
  -- Memberships, sessions, tokens, security events and the avatar go with the user (the avatar's
  -- object by the files trigger's job); tasks, comments and attachments stay, their author unset.
  delete from app_public.users u where u.id = v_user.id;
  perform graphile_worker.add_job('send_email', json_build_object('to', v_user.email, 'template', 'account_deleted',
    'variables', json_build_object('name', v_user.name)), max_attempts := 10);
  return v_organizations;
end;
$$;
comment on function app_private.delete_user(uuid) is
  'For the accounts__delete_user job: deletes the organizations where the user is the only member, then the user (their content in other organizations stays, its author unset), and emails the confirmation. Returns how many organizations went.';
