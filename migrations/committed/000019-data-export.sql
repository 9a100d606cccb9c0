--! Previous: sha1:f48b23878ffe913b2b2afdbfe4ba7f57bd87f6ba
--! Hash: sha1:334a276d67686a8b93fc101008db1d2a24337b24
--! Message: Data export

--------------------------------------------------------------------------------
-- Exporting one's data (GDPR article 20).
--
-- requestDataExport (one a day) queues a job that builds a JSON document of
-- everything the user owns or wrote: profile, memberships, tasks created,
-- comments, files uploaded (their metadata) and security events; nothing of
-- anyone else's. It is kept in the database and emailed as a link valid for 24
-- hours; the frontend posts the link's token to POST /auth/data-export.
--------------------------------------------------------------------------------

drop function if exists app_public.request_data_export();
drop function if exists app_private.build_data_export(uuid);
drop function if exists app_private.mint_data_export_token(uuid);
drop function if exists app_private.data_export_by_token(text);
drop function if exists app_private.user_data(uuid);
drop table if exists app_private.data_exports;

create table app_private.data_exports (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null references app_public.users on delete cascade,
  requested_at timestamptz not null default now(),
  document jsonb,
  built_at timestamptz,
  token_hash bytea unique,
  expires_at timestamptz
);
create index data_exports_user_id_idx on app_private.data_exports (user_id, requested_at desc);
create index data_exports_requested_at_idx on app_private.data_exports (requested_at);
comment on table app_private.data_exports is
  'Data exports asked for by users: the document, once built, and the hash of the emailed link''s token (valid 24 hours). Removed after 7 days.';
alter table app_private.data_exports enable row level security;

create function app_private.user_data(user_id uuid) returns jsonb
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
      from app_public.tasks t where t.created_by = user_data.user_id), '[]'),
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
comment on function app_private.user_data(uuid) is
  'Everything a user owns or wrote, as one JSON document: profile, memberships, tasks created, comments, files uploaded (metadata), security events. Nothing of anyone else''s (no coworker appears, only ids of organizations, projects and tasks).';

create function app_public.request_data_export() returns timestamptz
language plpgsql volatile security definer
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_user_id uuid := app_private.require_user();
  v_last timestamptz;
  v_id uuid;
begin
  perform 1 from app_public.users u where u.id = v_user_id for no key update;
  select max(e.requested_at) into v_last from app_private.data_exports e where e.user_id = v_user_id;
  if v_last > now() - interval '1 day' then
    raise exception 'You asked for an export at % UTC; you can ask for another one a day after that.', to_char(v_last at time zone 'UTC', 'YYYY-MM-DD HH24:MI')
      using errcode = 'OS409', detail = 'export_already_requested';
  end if;
  insert into app_private.data_exports (user_id) values (v_user_id) returning id into v_id;
  perform graphile_worker.add_job('accounts__export_data', json_build_object('id', v_id), max_attempts := 10);
  return now();
end;
$$;
comment on function app_public.request_data_export() is
  E'@resultFieldName requestedAt\nExports your data (GDPR article 20): everything you own or wrote, as a JSON document, emailed to you as a link valid for 24 hours. One a day.';
revoke all on function app_public.request_data_export() from public;
grant execute on function app_public.request_data_export() to :DATABASE_ANONYMOUS, :DATABASE_USER;

create function app_private.build_data_export(export_id uuid) returns void
language sql volatile
set search_path = pg_catalog, public, pg_temp
as $$
  update app_private.data_exports e set document = app_private.user_data(e.user_id), built_at = now()
  where e.id = build_data_export.export_id and e.built_at is null;
$$;
comment on function app_private.build_data_export(uuid) is 'For the export job: builds the document, once.';

create function app_private.mint_data_export_token(export_id uuid)
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
    where e.id = mint_data_export_token.export_id and u.id = e.user_id and e.built_at is not null
    returning v_token, u.email, u.name;
end;
$$;
comment on function app_private.mint_data_export_token(uuid) is
  'For the export job: makes the token of the link (only its hash is kept; a new one replaces the old), valid 24 hours from now, and returns it with where to send it.';

create function app_private.data_export_by_token(token text) returns jsonb
language plpgsql stable
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_document jsonb;
begin
  select e.document into v_document from app_private.data_exports e
    where e.token_hash = app_private.token_hash(data_export_by_token.token) and e.expires_at > now();
  if v_document is null then
    raise exception 'This export link is invalid or has expired (links last 24 hours); ask for a new export.'
      using errcode = 'OS400', detail = 'invalid_token';
  end if;
  return v_document;
end;
$$;
comment on function app_private.data_export_by_token(text) is 'For POST /auth/data-export: the document behind a live link''s token; invalid_token otherwise.';

-- Exports are kept 7 days.
create or replace function app_private.cleanup_batch(category text, batch_size int, now timestamptz) returns int
language plpgsql volatile
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_count int;
begin
  -- Never ahead of the database's clock, whatever the job was given.
  now := least(now, pg_catalog.now());
  -- Each call removes at most batch_size rows of one category and commits, so no lock is held long.
  case category
  when 'rate_limits' then
    delete from app_private.rate_limits where ctid = any(array(
      select ctid from app_private.rate_limits where window_start < now - interval '1 day' limit batch_size));
  when 'login_failures' then
    delete from app_private.login_failures where ctid = any(array(
      select ctid from app_private.login_failures where last_failed_at < now - interval '1 day' limit batch_size));
  when 'sessions' then
    -- Their refresh tokens go with them.
    delete from app_private.sessions where id = any(array(
      select id from app_private.sessions where expires_at < now - interval '7 days' or revoked_at < now - interval '7 days' limit batch_size));
  when 'refresh_tokens' then
    -- Spent tokens of live sessions, a month after use: too old for reuse detection to matter
    -- (presenting one is then simply refused). The newest token of a session is never spent.
    delete from app_private.refresh_tokens where id = any(array(
      select id from app_private.refresh_tokens where used_at < now - interval '30 days' limit batch_size));
  when 'email_tokens' then
    delete from app_private.email_tokens where id = any(array(
      select id from app_private.email_tokens where expires_at < now - interval '7 days' or used_at < now - interval '7 days' limit batch_size));
  when 'trusted_devices' then
    delete from app_private.trusted_devices where id = any(array(
      select id from app_private.trusted_devices where last_used_at < now - interval '90 days' limit batch_size));
  when 'invitations' then
    -- Expired a month ago: until then the invitee hears "expired" and managers see it.
    delete from app_public.organization_invitations where id = any(array(
      select id from app_public.organization_invitations where accepted_at is null and expires_at < now - interval '30 days' limit batch_size));
  when 'unverified_users' then
    -- Candidates are locked first, skipping any being verified or joining at this moment; the
    -- delete then checks them again as they are now.
    delete from app_public.users u where u.id = any(array(
      select c.id from app_public.users c
        where c.email_verified_at is null and c.created_at < now - interval '7 days' and not c.is_admin
        order by c.created_at limit batch_size
        for update skip locked))
      and u.email_verified_at is null and not u.is_admin
      and not exists (select 1 from app_public.organization_memberships m where m.user_id = u.id)
      -- Waiting on a pending invitation, or on a confirmation link sent this week: not abandoned.
      and not exists (select 1 from app_public.organization_invitations i
        where i.email = u.email and i.accepted_at is null and i.expires_at > now)
      and not exists (select 1 from app_private.email_tokens t
        where t.user_id = u.id and t.purpose = 'verify_email' and t.created_at > now - interval '7 days');
  when 'stripe_event_payloads' then
    update app_private.stripe_events set payload = null where id = any(array(
      select id from app_private.stripe_events where payload is not null and received_at < now - interval '90 days' limit batch_size));
  when 'usage_report_emails' then
    delete from app_private.usage_report_emails where ctid = any(array(
      select ctid from app_private.usage_report_emails where day < (now at time zone 'UTC')::date - 30 limit batch_size));
  when 'email_deliveries' then
    delete from app_private.email_deliveries where delivery_key = any(array(
      select delivery_key from app_private.email_deliveries where sent_at < now - interval '30 days' limit batch_size));
  when 'pending_uploads' then
    -- Uploads never completed and now expired (their URL lived 10 minutes). Deleting the row
    -- queues the deletion of whatever was uploaded (storage__delete_objects).
    delete from app_public.files where id = any(array(
      select id from app_public.files where status = 'pending' and created_at < now - app_private.upload_lifetime() limit batch_size));
  when 'security_events' then
    delete from app_public.security_events where id = any(array(
      select id from app_public.security_events where created_at < now - interval '90 days' limit batch_size));
  when 'data_exports' then
    delete from app_private.data_exports where id = any(array(
      select id from app_private.data_exports where requested_at < now - interval '7 days' limit batch_size));
  when 'failed_jobs' then
    select count(*) into v_count from graphile_worker.complete_jobs(array(
      select id from graphile_worker.jobs where attempts >= max_attempts and locked_at is null and updated_at < now - interval '30 days'
        limit batch_size));
    return v_count;
  else
    raise exception 'Unknown cleanup category "%".', category;
  end case;
  get diagnostics v_count = row_count;
  return v_count;
end;
$$;
comment on function app_private.cleanup_batch(text, int, timestamptz) is
  E'For the cleanup job: removes at most batch_size rows of one category that are past retention at `now` (never later than the database''s clock), and returns how many. Categories: rate_limits and login_failures (1 day), sessions (with their refresh tokens) and email_tokens (7 days after they ended), refresh_tokens (spent 30 days ago), trusted_devices (unused 90 days), invitations (expired 30 days ago, never accepted), unverified_users (7 days old, no organization, not a site admin, no pending invitation, no confirmation link sent in the last 7 days), stripe_event_payloads (90 days; the ids stay), usage_report_emails and email_deliveries (30 days), pending_uploads (file rows never completed, once expired: an hour; their objects are deleted by a job), security_events (90 days), data_exports (7 days after they were asked for), failed_jobs (graphile-worker jobs that used up their attempts 30 days ago).';
