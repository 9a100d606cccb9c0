--! Previous: sha1:bf2793ec03183c872fafb5bdf7f3b804b7c71088
--! Hash: sha1:a5a0a280c875273bbd593a727473788539f1ffda
--! Message: Comments on the board helpers

-- COMMENT ON the board helpers of 000025, as on every other function.

comment on function app_hidden.invoker_under_row_security(regclass) is
  E'Whether row-level security on the table applies to the role that called the security definer function this runs in: the role the session switched to, or the one it logged in as (never for superusers and BYPASSRLS roles; not for the table owner unless the table forces it).';
comment on function app_hidden.task_column_last_position(uuid, app_public.task_status) is
  E'The last position in a project''s column (null if empty), read as the owner from (project_id, status, position), with the tasks SELECT policy''s condition applied for callers under row-level security. For next_task_position, after the caller has locked the project.';
comment on function app_hidden.task_column_next_position(uuid, app_public.task_status, numeric, uuid) is
  E'The first position in a project''s column after `after` (from the top if null), leaving out one task, read as the owner from (project_id, status, position), with the tasks SELECT policy''s condition applied for callers under row-level security. For move_task, after the caller has locked the task and the project.';
