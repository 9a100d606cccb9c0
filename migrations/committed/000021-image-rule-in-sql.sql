--! Previous: sha1:1d941af4263366cab22dbc7499e5f1404b667c08
--! Hash: sha1:31aad69e2b1b85c1f5963f780eb6c79273cfb5f9
--! Message: Image rule in SQL

--------------------------------------------------------------------------------
-- Avatars and logos are images: the rule lives with the other upload rules,
-- in create_upload, and as a constraint on the table.
--------------------------------------------------------------------------------

alter table app_public.files drop constraint if exists images_for_avatars_and_logos;
alter table app_public.files add constraint images_for_avatars_and_logos check (
  purpose not in ('avatar', 'organization_logo')
  or (content_type in ('image/png', 'image/jpeg', 'image/gif', 'image/webp') and declared_size <= 5 * 1024 * 1024)
);

create or replace function app_hidden.create_upload(purpose app_public.file_purpose, target_id uuid, filename text, content_type text, size bigint)
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
  -- Avatars and logos are shown inline: raster images only, and small.
  if purpose in ('avatar', 'organization_logo') then
    if content_type not in ('image/png', 'image/jpeg', 'image/gif', 'image/webp') then
      raise exception 'Avatars and logos must be images: image/png, image/jpeg, image/gif or image/webp.'
        using errcode = 'OS400', detail = 'file_type_not_allowed';
    end if;
    if size > 5 * 1024 * 1024 then
      raise exception 'This image is %; avatars and logos may be at most 5 MB.', pg_size_pretty(size)
        using errcode = 'OS400', detail = 'file_too_large';
    end if;
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
