--! Previous: sha1:3e9452809ba3ae6a3b807a12260b178e859a2987
--! Hash: sha1:32569c3922d98d757ecb08db1663877e7c797df1
--! Message: Storage

--------------------------------------------------------------------------------
-- Files: metadata of objects kept in S3-compatible storage.
--
-- Bytes never pass through the API: a client asks createUpload for a presigned
-- PUT URL, uploads straight to the bucket, then calls completeUpload, which
-- checks the object (HEAD) and marks the row ready. Everything about who may
-- attach what where, and how much an organization may store, is decided here;
-- the server only signs URLs for rows these functions and policies allow.
--
-- Object keys are made here (`<organization>/<uuid>`, `avatars/<user>/<uuid>`),
-- never by the client. Deleting a row, directly or by cascade (a task, a
-- comment, an organization, a user), queues the deletion of its object in the
-- same transaction (storage__delete_objects), so no object outlives its row.
--------------------------------------------------------------------------------

drop trigger if exists _900_delete_objects on app_public.files;
drop function if exists app_private.tg_files__delete_objects();
drop function if exists app_hidden.create_upload(app_public.file_purpose, uuid, text, text, bigint);
drop function if exists app_hidden.upload_to_complete(uuid);
drop function if exists app_hidden.complete_upload(uuid, bigint, text);
drop function if exists app_hidden.discard_upload(uuid);
drop function if exists app_hidden.avatar_key(uuid);
drop function if exists app_hidden.logo_key(uuid);
drop function if exists app_private.orphaned_object_keys(text[]);
drop trigger if exists _100_archived_project on app_public.files;
drop function if exists app_private.tg_files__before_delete();
drop function if exists app_private.check_upload_target(app_public.file_purpose, uuid);
drop function if exists app_private.upload_lifetime();
drop function if exists app_private.storage_used(uuid);
drop function if exists app_private.stripe_storage_limit(jsonb, text);
drop table if exists app_public.files;
drop type if exists app_public.file_purpose;
drop type if exists app_public.file_status;
alter table app_public.usage_reports drop column if exists storage_bytes;
alter type app_public.organization_entitlements drop attribute if exists can_upload;
alter type app_public.organization_entitlements drop attribute if exists storage_bytes;
alter type app_public.organization_entitlements drop attribute if exists max_storage_bytes;
alter table app_public.plans drop column if exists max_storage_bytes;

--------------------------------------------------------------------------------
-- The storage limit of a plan
--------------------------------------------------------------------------------

alter table app_public.plans add column max_storage_bytes bigint
  constraint max_storage_bytes_not_negative check (max_storage_bytes >= 0);
comment on column app_public.plans.max_storage_bytes is
  'Bytes of files an organization may store (uploads in progress count); null means unlimited (product metadata max_storage: bytes, a size like "10GB", or "unlimited"; without it, the free plan''s limit).';
-- Every plan starts at the free plan's 1 GB, as a Stripe product without max_storage metadata
-- would; npm run stripe:sync then applies each product's own max_storage.
update app_public.plans set max_storage_bytes = 1024 * 1024 * 1024;
grant select (max_storage_bytes) on app_public.plans to :DATABASE_ANONYMOUS, :DATABASE_USER;

create function app_private.stripe_storage_limit(metadata jsonb, product_id text) returns bigint
language plpgsql stable
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_value text := nullif(btrim(metadata ->> 'max_storage'), '');
  v_match text[];
  v_bytes numeric;
begin
  if v_value is null then
    return (select p.max_storage_bytes from app_public.plans p where p.is_default);
  end if;
  if lower(v_value) = 'unlimited' then
    return null;
  end if;
  v_match := regexp_match(upper(v_value), '^([0-9]{1,15})\s*(B|KB|MB|GB|TB)?$');
  if v_match is null then
    raise exception 'Stripe product %: metadata max_storage must be a number of bytes, a size like "10GB", or "unlimited", not "%".', product_id, v_value;
  end if;
  v_bytes := v_match[1]::numeric * case coalesce(v_match[2], 'B')
    when 'B' then 1 when 'KB' then 1024 when 'MB' then 1048576 when 'GB' then 1073741824 else 1099511627776 end;
  if v_bytes > 9223372036854775807 then
    raise exception 'Stripe product %: metadata max_storage "%" is more than can be stored; use "unlimited".', product_id, v_value;
  end if;
  return v_bytes::bigint;
end;
$$;
comment on function app_private.stripe_storage_limit(jsonb, text) is
  'The storage limit from Stripe product metadata max_storage: bytes, a size with KB, MB, GB or TB (powers of 1024), "unlimited" (null), or, when missing, the free plan''s limit.';

--------------------------------------------------------------------------------
-- Files
--------------------------------------------------------------------------------

create type app_public.file_purpose as enum ('task_attachment', 'comment_attachment', 'avatar', 'organization_logo');
comment on type app_public.file_purpose is 'What a file is for, and so what it belongs to: a task, a comment, a user (avatar) or an organization (logo).';
create type app_public.file_status as enum ('pending', 'ready');
comment on type app_public.file_status is 'pending: created by createUpload, not yet confirmed; ready: completeUpload found the object as declared.';

create table app_public.files (
  id uuid primary key default gen_random_uuid(),
  -- Null only for avatars, which belong to a person, not to an organization.
  organization_id uuid references app_public.organizations on delete cascade,
  uploaded_by uuid references app_public.users on delete set null,
  purpose app_public.file_purpose not null,
  task_id uuid references app_public.tasks on delete cascade,
  comment_id uuid references app_public.task_comments on delete cascade,
  user_id uuid references app_public.users on delete cascade,
  object_key text not null unique,
  filename text not null constraint filename_format
    check (length(filename) between 1 and 255 and filename !~ '[/\\[:cntrl:]]' and filename not in ('.', '..')),
  content_type text not null constraint content_type_format check (content_type ~ '^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$'),
  declared_size bigint not null constraint declared_size_positive check (declared_size > 0),
  size bigint constraint size_positive check (size > 0),
  checksum text,
  status app_public.file_status not null default 'pending',
  created_at timestamptz not null default now(),
  completed_at timestamptz,
  constraint file_target check (case purpose
    when 'task_attachment' then task_id is not null and comment_id is null and user_id is null and organization_id is not null
    when 'comment_attachment' then comment_id is not null and task_id is null and user_id is null and organization_id is not null
    when 'avatar' then user_id is not null and task_id is null and comment_id is null and organization_id is null
    when 'organization_logo' then organization_id is not null and task_id is null and comment_id is null and user_id is null
  end),
  constraint ready_is_confirmed check ((status = 'ready') = (size is not null and completed_at is not null))
);
create index files_organization_id_idx on app_public.files (organization_id, created_at);
create index files_task_id_idx on app_public.files (task_id);
create index files_comment_id_idx on app_public.files (comment_id);
create index files_user_id_idx on app_public.files (user_id);
create index files_uploaded_by_idx on app_public.files (uploaded_by);
create index files_pending_idx on app_public.files (created_at) where status = 'pending';

comment on table app_public.files is
  E'@behavior -insert -update\nA file in storage: an attachment of a task or a comment, an avatar or an organization logo. Start one with createUpload, upload to its URL, then completeUpload. Members of the organization see its ready files (and their own pending ones); coworkers see each other''s avatars. The uploader, or an owner or admin of the organization, deletes one; its object goes with it.';
comment on column app_public.files.organization_id is 'The organization the file belongs to (and whose storage it counts against); null for avatars.';
comment on column app_public.files.uploaded_by is 'Who uploaded it; null once that account is gone.';
comment on column app_public.files.task_id is 'The task of a task_attachment.';
comment on column app_public.files.comment_id is 'The comment of a comment_attachment.';
comment on column app_public.files.user_id is 'The user whose avatar this is.';
comment on column app_public.files.object_key is E'@behavior -*\nWhere the object is in the bucket; made by the server, never shown.';
comment on column app_public.files.filename is 'The name it was uploaded with (no path), used when it is downloaded.';
comment on column app_public.files.content_type is 'Its media type, as declared and confirmed.';
comment on column app_public.files.declared_size is 'Bytes, as declared to createUpload (the upload URL accepts exactly this many).';
comment on column app_public.files.size is 'Bytes, as found in storage by completeUpload.';
comment on column app_public.files.checksum is 'The storage''s ETag of the object (the MD5 of its bytes for a single upload).';
comment on column app_public.files.created_at is E'@behavior +orderBy\nWhen the upload was started.';
comment on column app_public.files.completed_at is 'When completeUpload confirmed it.';
comment on constraint files_organization_id_fkey on app_public.files is E'@foreignFieldName files';
comment on constraint files_task_id_fkey on app_public.files is E'@foreignFieldName attachments';
comment on constraint files_comment_id_fkey on app_public.files is E'@foreignFieldName attachments';
comment on constraint files_user_id_fkey on app_public.files is E'@foreignFieldName avatarFiles';
comment on constraint files_uploaded_by_fkey on app_public.files is E'@fieldName uploader\n@foreignFieldName uploadedFiles';
comment on constraint files_object_key_key on app_public.files is E'@behavior -*';

alter table app_public.files enable row level security;
create policy select_member on app_public.files for select
  using (
    (status = 'ready' or uploaded_by = (select app_public.current_user_id()))
    and (organization_id = any ((select app_hidden.current_user_visible_organizations())::uuid[])
      or (purpose = 'avatar' and user_id in (select app_hidden.current_user_coworker_ids()))
      or (purpose = 'avatar' and user_id = (select app_public.current_user_id())))
  );
create policy delete_uploader_or_manager on app_public.files for delete
  using (
    (purpose in ('task_attachment', 'comment_attachment') and uploaded_by = (select app_public.current_user_id())
      and organization_id = any ((select app_hidden.current_user_member_organizations())::uuid[]))
    or (purpose = 'avatar' and user_id = (select app_public.current_user_id()))
    or (organization_id = any ((select app_hidden.current_user_member_organizations())::uuid[]) and app_hidden.current_user_manages(organization_id))
  );
grant select on app_public.files to :DATABASE_ANONYMOUS, :DATABASE_USER;
grant delete on app_public.files to :DATABASE_USER;

create function app_private.upload_lifetime() returns interval
language sql immutable
set search_path = pg_catalog, public, pg_temp
as $$ select interval '1 hour' $$;
comment on function app_private.upload_lifetime() is
  'How long a pending upload may be completed (its URL lives 10 minutes); older ones hold no space and are cleaned up.';

create function app_private.storage_used(organization_id uuid) returns bigint
language sql stable
set search_path = pg_catalog, public, pg_temp
as $$
  select coalesce(sum(coalesce(f.size, f.declared_size)), 0)::bigint from app_public.files f
  where f.organization_id = storage_used.organization_id
    and (f.status = 'ready' or f.created_at > now() - app_private.upload_lifetime());
$$;
comment on function app_private.storage_used(uuid) is
  'Bytes an organization stores: its ready files, plus what uploads in progress (younger than upload_lifetime) declared: they hold their space until completed or expired.';

-- People do not delete attachments in an archived project (read-only); the database's own
-- deletions (a task or an organization going, cleanup) go through.
create function app_private.tg_files__before_delete() returns trigger
language plpgsql security invoker
set search_path = pg_catalog, public, pg_temp
as $$
begin
  if pg_catalog.pg_trigger_depth() = 1 and app_public.current_user_id() is not null
    and old.purpose in ('task_attachment', 'comment_attachment') then
    perform app_hidden.assert_project_writable((select t.project_id from app_public.tasks t
      where t.id = coalesce(old.task_id, (select c.task_id from app_public.task_comments c where c.id = old.comment_id))));
  end if;
  return old;
end;
$$;
comment on function app_private.tg_files__before_delete() is
  'Trigger: a person cannot delete an attachment in an archived project (read-only); cascades and cleanup can.';
create trigger _100_archived_project before delete on app_public.files
  for each row execute function app_private.tg_files__before_delete();

-- Deleting rows (directly or by cascade) queues their objects' deletion, in the same transaction.
create function app_private.tg_files__delete_objects() returns trigger
language plpgsql security definer
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_keys text[];
begin
  for v_keys in
    select array_agg(g.object_key) from (select o.object_key, (row_number() over () - 1) / 1000 as chunk from gone o) g group by g.chunk
  loop
    perform graphile_worker.add_job('storage__delete_objects', json_build_object('keys', v_keys), max_attempts := 25);
  end loop;
  return null;
end;
$$;
comment on function app_private.tg_files__delete_objects() is
  'Trigger: the objects of deleted file rows are deleted from storage by a job (1,000 keys a job), queued in the deleting transaction.';
create trigger _900_delete_objects after delete on app_public.files
  referencing old table as gone for each statement execute function app_private.tg_files__delete_objects();

--------------------------------------------------------------------------------
-- The upload flow (called by the API as the signed-in user; not in GraphQL)
--------------------------------------------------------------------------------

create function app_private.check_upload_target(purpose app_public.file_purpose, target_id uuid) returns uuid
language plpgsql stable security definer
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_user_id uuid := app_private.require_user();
  v_task app_public.tasks;
  v_comment app_public.task_comments;
begin
  case purpose
  when 'task_attachment' then
    select * into v_task from app_public.tasks t where t.id = target_id;
    if v_task.id is null or app_hidden.current_user_role_in(v_task.organization_id) is null then
      raise exception 'Task not found.' using errcode = 'OS404';
    end if;
    perform app_hidden.assert_project_writable(v_task.project_id);
    return v_task.organization_id;
  when 'comment_attachment' then
    select * into v_comment from app_public.task_comments c where c.id = target_id;
    if v_comment.id is null or app_hidden.current_user_role_in(v_comment.organization_id) is null then
      raise exception 'Comment not found.' using errcode = 'OS404';
    end if;
    if v_comment.author_id is distinct from v_user_id then
      raise exception 'Only its author attaches files to a comment.' using errcode = 'OS403';
    end if;
    perform app_hidden.assert_project_writable((select t.project_id from app_public.tasks t where t.id = v_comment.task_id));
    return v_comment.organization_id;
  when 'avatar' then
    if target_id is not null and target_id <> v_user_id then
      raise exception 'You can only upload your own avatar.' using errcode = 'OS403';
    end if;
    return null;
  when 'organization_logo' then
    perform app_private.require_role(target_id, '{owner,admin}', 'change its logo');
    return target_id;
  end case;
end;
$$;
comment on function app_private.check_upload_target(app_public.file_purpose, uuid) is
  'Whether the signed-in user may attach a file for this purpose to the target, now: a task of their organization, their own comment (neither in an archived project), themselves, an organization they own or administer. Returns the organization the file counts against (null for avatars); raises otherwise. Checked when an upload starts and again when it completes.';

create function app_hidden.create_upload(purpose app_public.file_purpose, target_id uuid, filename text, content_type text, size bigint)
returns app_public.files
language plpgsql volatile security definer
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_user_id uuid := app_private.require_user();
  v_organization_id uuid := app_private.check_upload_target(purpose, target_id);
  v_plan app_public.plans;
  v_used bigint;
  v_file app_public.files;
begin
  if size is null or size < 1 then
    raise exception 'size must be at least 1 byte.' using errcode = 'OS400';
  end if;
  -- One at a time per user, so the cap below holds under concurrent requests too.
  perform pg_advisory_xact_lock(hashtextextended('uploads of ' || v_user_id::text, 0));
  if (select count(*) from app_public.files f
      where f.uploaded_by = v_user_id and f.status = 'pending' and f.created_at > now() - app_private.upload_lifetime()) >= 20 then
    raise exception 'You have 20 uploads in progress; complete them (or wait up to an hour for them to expire) before starting more.'
      using errcode = 'OS409', detail = 'too_many_pending_uploads';
  end if;
  if v_organization_id is not null then
    -- One upload at a time per organization, so two cannot both fit in the last free space.
    perform app_private.lock_organization(v_organization_id);
    v_plan := (app_private.effective_plan(v_organization_id)).plan;
    v_used := app_private.storage_used(v_organization_id);
    if v_plan.max_storage_bytes is not null and v_used + size > v_plan.max_storage_bytes then
      raise exception 'Your % plan stores up to %; % is used, and this file needs %. Delete files or upgrade.',
        v_plan.name, pg_size_pretty(v_plan.max_storage_bytes), pg_size_pretty(v_used), pg_size_pretty(size)
        using errcode = 'OSPLN', detail = 'storage_quota_exceeded';
    end if;
  end if;

  insert into app_public.files (organization_id, uploaded_by, purpose, task_id, comment_id, user_id, object_key,
      filename, content_type, declared_size)
    values (v_organization_id, v_user_id, purpose,
      case when purpose = 'task_attachment' then target_id end,
      case when purpose = 'comment_attachment' then target_id end,
      case when purpose = 'avatar' then v_user_id end,
      coalesce(v_organization_id::text, 'avatars/' || v_user_id::text) || '/' || gen_random_uuid()::text,
      filename, content_type, size)
    returning * into v_file;
  return v_file;
end;
$$;
comment on function app_hidden.create_upload(app_public.file_purpose, uuid, text, text, bigint) is
  'For createUpload: checks that the signed-in user may attach a file for this purpose to the target (check_upload_target), has fewer than 20 uploads in progress, and that it fits the organization''s storage limit, then makes the pending row with a server-made object key.';

create function app_hidden.upload_to_complete(file_id uuid) returns app_public.files
language plpgsql stable security definer
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_file app_public.files;
begin
  perform app_private.require_user();
  select * into v_file from app_public.files f where f.id = file_id and f.uploaded_by = app_public.current_user_id();
  if v_file.id is null then
    raise exception 'No upload of yours with this id (it may have been cleaned up; start again with createUpload).'
      using errcode = 'OS404', detail = 'file_not_found';
  end if;
  if v_file.status = 'pending' and v_file.created_at <= now() - app_private.upload_lifetime() then
    raise exception 'This upload expired an hour after it started; start again with createUpload.'
      using errcode = 'OS400', detail = 'upload_incomplete';
  end if;
  return v_file;
end;
$$;
comment on function app_hidden.upload_to_complete(uuid) is 'For completeUpload: the caller''s own upload, pending (and not expired) or ready, with its object key.';

create function app_hidden.complete_upload(file_id uuid, size bigint, checksum text) returns app_public.files
language plpgsql volatile security definer
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_file app_public.files := app_hidden.upload_to_complete(file_id);
begin
  if v_file.status = 'ready' then
    return v_file;  -- completed before: the same answer again
  end if;
  -- Still allowed now? (Removed from the organization, demoted, the project archived since.)
  perform app_private.check_upload_target(v_file.purpose, coalesce(v_file.task_id, v_file.comment_id, v_file.user_id, v_file.organization_id));
  if size is distinct from v_file.declared_size then
    raise exception 'The uploaded object has % bytes, not the % declared.', size, v_file.declared_size
      using errcode = 'OS400', detail = 'upload_incomplete';
  end if;
  -- A new avatar or logo replaces the one before (whose object is then deleted); one completion
  -- at a time per user or organization, so two at once cannot both stay.
  if v_file.purpose = 'avatar' then
    perform pg_advisory_xact_lock(hashtextextended('avatar of ' || v_file.user_id::text, 0));
  elsif v_file.purpose = 'organization_logo' then
    perform app_private.lock_organization(v_file.organization_id);
  end if;
  update app_public.files f set status = 'ready', size = complete_upload.size, checksum = complete_upload.checksum, completed_at = now()
    where f.id = v_file.id returning * into v_file;
  if v_file.purpose = 'avatar' then
    delete from app_public.files f where f.purpose = 'avatar' and f.user_id = v_file.user_id and f.status = 'ready' and f.id <> v_file.id;
  elsif v_file.purpose = 'organization_logo' then
    delete from app_public.files f where f.purpose = 'organization_logo' and f.organization_id = v_file.organization_id
      and f.status = 'ready' and f.id <> v_file.id;
  end if;
  return v_file;
end;
$$;
comment on function app_hidden.complete_upload(uuid, bigint, text) is
  'For completeUpload, once the object was found as declared: checks again that the caller may attach it there, then marks their upload ready; a new avatar or logo replaces the previous one.';

create function app_hidden.discard_upload(file_id uuid) returns void
language plpgsql volatile security definer
set search_path = pg_catalog, public, pg_temp
as $$
begin
  delete from app_public.files f where f.id = (app_hidden.upload_to_complete(file_id)).id and f.status = 'pending';
end;
$$;
comment on function app_hidden.discard_upload(uuid) is 'For completeUpload, when the object is not what was declared: removes the pending row (and queues its object''s deletion).';

-- The object keys of an avatar and a logo, for User.avatarUrl and Organization.logoUrl; as the
-- caller, so row-level security on files decides.
create function app_hidden.avatar_key(user_id uuid) returns text
language sql stable
set search_path = pg_catalog, public, pg_temp
as $$
  select f.object_key from app_public.files f
  where f.purpose = 'avatar' and f.user_id = avatar_key.user_id and f.status = 'ready'
  order by f.completed_at desc limit 1;
$$;
create function app_hidden.logo_key(organization_id uuid) returns text
language sql stable
set search_path = pg_catalog, public, pg_temp
as $$
  select f.object_key from app_public.files f
  where f.purpose = 'organization_logo' and f.organization_id = logo_key.organization_id and f.status = 'ready'
  order by f.completed_at desc limit 1;
$$;

create function app_private.orphaned_object_keys(keys text[]) returns setof text
language sql stable
set search_path = pg_catalog, public, pg_temp
as $$
  select k from unnest(keys) k where not exists (select 1 from app_public.files f where f.object_key = k);
$$;
comment on function app_private.orphaned_object_keys(text[]) is
  'For the storage__sweep job: which of these object keys no file row refers to (uploaded after their row was deleted, or left by a failed deletion).';

revoke all on function app_hidden.create_upload(app_public.file_purpose, uuid, text, text, bigint), app_hidden.upload_to_complete(uuid),
  app_hidden.complete_upload(uuid, bigint, text), app_hidden.discard_upload(uuid), app_hidden.avatar_key(uuid), app_hidden.logo_key(uuid) from public;
-- Anonymous callers may call them too, to be told to sign in (require_user) rather than refused.
grant execute on function app_hidden.create_upload(app_public.file_purpose, uuid, text, text, bigint), app_hidden.upload_to_complete(uuid),
  app_hidden.complete_upload(uuid, bigint, text), app_hidden.discard_upload(uuid) to :DATABASE_ANONYMOUS, :DATABASE_USER;
grant execute on function app_hidden.avatar_key(uuid), app_hidden.logo_key(uuid) to :DATABASE_ANONYMOUS, :DATABASE_USER;

--------------------------------------------------------------------------------
-- Storage in entitlements, usage reports and cleanup
--------------------------------------------------------------------------------

alter type app_public.organization_entitlements add attribute max_storage_bytes bigint, add attribute storage_bytes bigint,
  add attribute can_upload boolean;
comment on column app_public.organization_entitlements.max_storage_bytes is 'Bytes of files the organization may store; null means unlimited.';
comment on column app_public.organization_entitlements.storage_bytes is 'Bytes stored now, uploads in progress included.';
comment on column app_public.organization_entitlements.can_upload is 'Whether there is room left for another file.';

alter table app_public.usage_reports add column storage_bytes bigint not null default 0;
comment on column app_public.usage_reports.storage_bytes is 'Bytes of files stored at the end of the day.';

-- Uploads never completed go once expired.
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

-- The daily report says how much is stored, in the row and in its email.
create or replace function app_private.compute_usage_report(organization_id uuid, day date) returns app_public.usage_reports
language sql volatile
set search_path = pg_catalog, public, pg_temp
as $$
  with bounds as (
    select (day::timestamp at time zone 'UTC') as starts, ((day + 1)::timestamp at time zone 'UTC') as ends
  ), done_by_people as (
    -- The system's own changes (cleanup, Stripe) are not activity.
    select a.* from app_public.activity a, bounds b
      where a.organization_id = compute_usage_report.organization_id and a.created_at >= b.starts and a.created_at < b.ends
        and a.actor_id is not null
  )
  insert into app_public.usage_reports as r (organization_id, day, tasks_created, tasks_completed, tasks_overdue, comments,
      active_members, actions, projects, members, tasks, storage_bytes, computed_at)
  select compute_usage_report.organization_id, compute_usage_report.day,
    (select count(*) from done_by_people where entity_type = 'task' and action = 'created'),
    (select count(*) from done_by_people where entity_type = 'task' and action = 'updated' and diff -> 'status' ->> 1 = 'done'),
    (select count(*) from app_public.tasks t where t.organization_id = compute_usage_report.organization_id
       and t.created_at < b.ends and t.due_at < b.ends and t.status <> 'canceled' and (t.completed_at is null or t.completed_at >= b.ends)),
    (select count(*) from done_by_people where entity_type = 'comment' and action = 'created'),
    (select count(distinct actor_id) from done_by_people),
    (select count(*) from done_by_people),
    (select count(*) from app_public.projects p where p.organization_id = compute_usage_report.organization_id and p.created_at < b.ends),
    (select count(*) from app_public.organization_memberships m where m.organization_id = compute_usage_report.organization_id and m.created_at < b.ends),
    (select count(*) from app_public.tasks t where t.organization_id = compute_usage_report.organization_id and t.created_at < b.ends),
    (select coalesce(sum(f.size), 0) from app_public.files f where f.organization_id = compute_usage_report.organization_id
       and f.status = 'ready' and f.completed_at < b.ends),
    now()
  from bounds b
  where exists (select 1 from app_public.organizations o where o.id = compute_usage_report.organization_id)
  -- The first computation, made just after the day, stands: the tables have moved on since.
  on conflict (organization_id, day) do nothing
  returning r.*;
$$;

create or replace function app_private.deliver_usage_report(organization_id uuid, day date) returns int
language plpgsql volatile
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_report app_public.usage_reports;
  v_averages record;
  v_metrics jsonb;
  v_recipient record;
  v_queued int := 0;
begin
  if not exists (select 1 from app_public.organizations o where o.id = deliver_usage_report.organization_id) then
    return 0;  -- deleted since the job was queued
  end if;
  -- The week before, as far as the organization existed, so the average does not depend on
  -- which day's job ran first (backfilled days run side by side).
  perform app_private.compute_usage_report(deliver_usage_report.organization_id, d::date)
    from generate_series(deliver_usage_report.day - 7, deliver_usage_report.day, interval '1 day') d
    where not exists (select 1 from app_public.usage_reports r where r.organization_id = deliver_usage_report.organization_id and r.day = d::date)
      and exists (select 1 from app_public.organizations o where o.id = deliver_usage_report.organization_id
        and o.created_at < ((d::date + 1)::timestamp at time zone 'UTC'));
  select * into v_report from app_public.usage_reports r
    where r.organization_id = deliver_usage_report.organization_id and r.day = deliver_usage_report.day;
  if v_report.actions is null or v_report.actions = 0 then
    return 0;  -- a quiet day: the row is kept, nobody is emailed
  end if;
  select count(*) as days, avg(r.tasks_created) as tasks_created, avg(r.tasks_completed) as tasks_completed,
      avg(r.tasks_overdue) as tasks_overdue, avg(r.comments) as comments, avg(r.active_members) as active_members
    into v_averages
    from app_public.usage_reports r
    where r.organization_id = deliver_usage_report.organization_id and r.day between deliver_usage_report.day - 7 and deliver_usage_report.day - 1;
  v_metrics := jsonb_build_array(
    jsonb_build_object('label', 'Tasks created', 'value', v_report.tasks_created, 'average', round(v_averages.tasks_created, 1)),
    jsonb_build_object('label', 'Tasks completed', 'value', v_report.tasks_completed, 'average', round(v_averages.tasks_completed, 1)),
    jsonb_build_object('label', 'Overdue at day end', 'value', v_report.tasks_overdue, 'average', round(v_averages.tasks_overdue, 1)),
    jsonb_build_object('label', 'Comments', 'value', v_report.comments, 'average', round(v_averages.comments, 1)),
    jsonb_build_object('label', 'Active members', 'value', v_report.active_members, 'average', round(v_averages.active_members, 1)));
  for v_recipient in
    select u.id, u.email, u.name, o.name as organization_name
      from app_public.organization_memberships m
      join app_public.users u on u.id = m.user_id
      join app_public.organizations o on o.id = m.organization_id
      left join app_public.membership_preferences p on p.membership_id = m.id
      where m.organization_id = deliver_usage_report.organization_id and m.role in ('owner', 'admin')
        and coalesce(p.email_daily_report, true)
        -- Only confirmed addresses: nobody can sign a stranger's address up for daily mail.
        and u.email_verified_at is not null
      order by u.id
  loop
    insert into app_private.usage_report_emails (organization_id, day, user_id)
      values (deliver_usage_report.organization_id, deliver_usage_report.day, v_recipient.id)
      on conflict on constraint usage_report_emails_pkey do nothing;
    if found then
      perform graphile_worker.add_job('send_email', json_build_object(
        'to', v_recipient.email, 'template', 'daily_usage_report',
        'variables', jsonb_build_object('name', v_recipient.name, 'organizationName', v_recipient.organization_name,
          'day', to_char(deliver_usage_report.day, 'YYYY-MM-DD'), 'averageDays', v_averages.days, 'metrics', v_metrics,
          'projects', v_report.projects, 'members', v_report.members, 'tasks', v_report.tasks,
          'storage', pg_size_pretty(v_report.storage_bytes),
          'reportLink', '/organizations/' || deliver_usage_report.organization_id || '/reports?day=' || to_char(deliver_usage_report.day, 'YYYY-MM-DD'),
          'settingsLink', '/organizations/' || deliver_usage_report.organization_id || '/settings/notifications')
      ), max_attempts := 10);
      v_queued := v_queued + 1;
    end if;
  end loop;
  return v_queued;
end;
$$;

comment on function app_private.cleanup_batch(text, int, timestamptz) is
  E'For the cleanup job: removes at most batch_size rows of one category that are past retention at `now` (never later than the database''s clock), and returns how many. Categories: rate_limits and login_failures (1 day), sessions (with their refresh tokens) and email_tokens (7 days after they ended), refresh_tokens (spent 30 days ago), trusted_devices (unused 90 days), invitations (expired 30 days ago, never accepted), unverified_users (7 days old, no organization, not a site admin, no pending invitation, no confirmation link sent in the last 7 days), stripe_event_payloads (90 days; the ids stay), usage_report_emails and email_deliveries (30 days), pending_uploads (file rows never completed, once expired: an hour; their objects are deleted by a job), failed_jobs (graphile-worker jobs that used up their attempts 30 days ago).';

-- Stripe products carry the storage limit too (metadata max_storage).
create or replace function app_private.sync_stripe_product(product jsonb, fetched_at timestamptz) returns int
language plpgsql volatile
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_metadata jsonb := coalesce(product -> 'metadata', '{}');
  -- Only products marked as plans (metadata plan = "true") are offered: the same Stripe account
  -- may sell other things.
  v_offered boolean := coalesce((product ->> 'active')::boolean, false) and not coalesce((product ->> 'deleted')::boolean, false)
    and coalesce(v_metadata ->> 'plan' = 'true', false);
  v_count int;
begin
  -- Price and product syncs of one product write the same rows: one at a time.
  perform pg_advisory_xact_lock(hashtextextended('stripe product ' || (product ->> 'id'), 0));
  update app_public.plans p set
    name = coalesce(left(nullif(btrim(product ->> 'name'), ''), 100), p.name),
    description = case when product ? 'description' then product ->> 'description' else p.description end,
    product_active = v_offered,
    sort_order = case when v_metadata ->> 'sort_order' ~ '^-?[0-9]{1,9}$' then (v_metadata ->> 'sort_order')::int else p.sort_order end,
    -- A product that is no longer offered keeps the limits its subscribers have.
    max_projects = case when v_offered then app_private.stripe_plan_limit(v_metadata, 'max_projects', product ->> 'id') else p.max_projects end,
    max_members = case when v_offered then app_private.stripe_plan_limit(v_metadata, 'max_members', product ->> 'id') else p.max_members end,
    max_tasks_per_project = case when v_offered then app_private.stripe_plan_limit(v_metadata, 'max_tasks_per_project', product ->> 'id')
      else p.max_tasks_per_project end,
    max_storage_bytes = case when v_offered then app_private.stripe_storage_limit(v_metadata, product ->> 'id') else p.max_storage_bytes end,
    product_synced_at = fetched_at
  where p.stripe_product_id = product ->> 'id' and (p.product_synced_at is null or p.product_synced_at <= fetched_at);
  get diagnostics v_count = row_count;
  return v_count;
end;
$$;

create or replace function app_public.organizations_entitlements(o app_public.organizations) returns app_public.organization_entitlements
language plpgsql stable security definer
set search_path = pg_catalog, public, pg_temp
as $$
declare
  v_effective record := app_private.effective_plan(o.id);
  v_result app_public.organization_entitlements;
begin
  if app_hidden.current_user_role_in(o.id) is null and not app_public.current_user_is_admin() then
    return null;
  end if;
  v_result.plan_id := (v_effective.plan).id;
  v_result.plan_name := (v_effective.plan).name;
  v_result.subscription_status := v_effective.status;
  v_result.grace_ends_at := v_effective.grace_ends_at;
  v_result.max_projects := (v_effective.plan).max_projects;
  v_result.projects := (select count(*) from app_public.projects p where p.organization_id = o.id);
  v_result.can_create_project := v_result.max_projects is null or v_result.projects < v_result.max_projects;
  v_result.max_members := (v_effective.plan).max_members;
  v_result.members := (select count(*) from app_public.organization_memberships m where m.organization_id = o.id);
  v_result.pending_invitations := (select count(*) from app_public.organization_invitations i
    where i.organization_id = o.id and i.accepted_at is null and i.expires_at > now());
  v_result.can_invite_member := v_result.max_members is null or v_result.members + v_result.pending_invitations < v_result.max_members;
  v_result.max_tasks_per_project := (v_effective.plan).max_tasks_per_project;
  v_result.max_storage_bytes := (v_effective.plan).max_storage_bytes;
  v_result.storage_bytes := app_private.storage_used(o.id);
  v_result.can_upload := v_result.max_storage_bytes is null or v_result.storage_bytes < v_result.max_storage_bytes;
  return v_result;
end;
$$;
comment on function app_public.organizations_entitlements(app_public.organizations) is
  'The plan that applies now, its limits, what is used and whether each kind of thing may still be added (projects, members, tasks, storage), so a frontend can grey out buttons without guessing. Members and site administrators only.';
