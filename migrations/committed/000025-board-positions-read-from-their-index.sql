--! Previous: sha1:8c744705fc340d9a761adec2ed0d5e899f32a770
--! Hash: sha1:bf2793ec03183c872fafb5bdf7f3b804b7c71088
--! Message: Board positions read from their index

-- Board positions read from their index.
--
-- A new task goes to the end of its column (the highest position among the project's tasks with
-- its status, plus one), and moveTask looks for the next task down a column. Those reads ran as
-- the caller, under row-level security, where `status = …` (enum equality, not leakproof) cannot
-- be an index condition: the planner walked the project's tasks in position order and tested each
-- one's status, reading the whole project when the column's last task sat below the others (999
-- rows read and dropped per createTask in a benchmark project of 1,000 tasks in other columns).
-- Two helpers now read a column's positions as their owner, from the (project_id, status,
-- position) index, and apply the tasks SELECT policy's condition themselves whenever row-level
-- security would have applied to their caller, so they see exactly the rows the caller could
-- (all of them for the owner, a superuser or a role with BYPASSRLS, as seeds and jobs run). Their
-- callers still authorize the write as the caller: lock_task_positions locks the project under
-- row-level security, and the insert or update is checked by the tasks policies.

drop function if exists app_hidden.task_column_last_position(uuid, app_public.task_status);
drop function if exists app_hidden.task_column_next_position(uuid, app_public.task_status, numeric, uuid);
drop function if exists app_hidden.invoker_under_row_security(regclass);

-- Whether row-level security applies to the role that called the security definer function this
-- runs in (where current_user is the function's owner): the role the session switched to, or
-- the one it logged in as. PostgreSQL's own rule: never for superusers and roles with BYPASSRLS,
-- and not for roles with the privileges of the table's owner unless the table forces it.
create function app_hidden.invoker_under_row_security(tbl regclass) returns boolean
language sql stable
set search_path = pg_catalog, public, pg_temp
as $$
  select not (r.rolsuper or r.rolbypassrls)
    and (c.relforcerowsecurity or not pg_catalog.pg_has_role(r.oid, c.relowner, 'USAGE'))
  from pg_catalog.pg_class c, pg_catalog.pg_roles r
  where c.oid = invoker_under_row_security.tbl
    and r.rolname = coalesce(nullif(pg_catalog.current_setting('role'), 'none'), session_user);
$$;

-- The last position in a project's column (null if the column is empty).
create function app_hidden.task_column_last_position(project_id uuid, status app_public.task_status) returns numeric
language sql stable security definer
set search_path = pg_catalog, public, pg_temp
as $$
  select max(t.position) from app_public.tasks t
  where t.project_id = task_column_last_position.project_id
    and t.status = task_column_last_position.status
    -- The tasks SELECT policy's condition, for a caller it applies to: this reads past row-level security.
    and (not (select app_hidden.invoker_under_row_security('app_public.tasks'))
      or t.organization_id = any ((select app_hidden.current_user_visible_organizations())::uuid[]));
$$;

-- The first position in a project's column after `after` (from the top if null), leaving out one
-- task (the one being moved); null if there is none.
create function app_hidden.task_column_next_position(project_id uuid, status app_public.task_status, after numeric, except_task_id uuid)
returns numeric
language sql stable security definer
set search_path = pg_catalog, public, pg_temp
as $$
  select min(t.position) from app_public.tasks t
  where t.project_id = task_column_next_position.project_id
    and t.status = task_column_next_position.status
    and t.position > coalesce(task_column_next_position.after, '-infinity')
    and t.id <> task_column_next_position.except_task_id
    -- The tasks SELECT policy's condition, for a caller it applies to: this reads past row-level security.
    and (not (select app_hidden.invoker_under_row_security('app_public.tasks'))
      or t.organization_id = any ((select app_hidden.current_user_visible_organizations())::uuid[]));
$$;

grant execute on function app_hidden.task_column_last_position(uuid, app_public.task_status),
  app_hidden.task_column_next_position(uuid, app_public.task_status, numeric, uuid)
to :DATABASE_USER;

create or replace function app_hidden.next_task_position(project_id uuid, status app_public.task_status) returns numeric
language plpgsql
set search_path = pg_catalog, public, pg_temp
as $$
begin
  perform app_hidden.lock_task_positions(next_task_position.project_id);
  return coalesce(app_hidden.task_column_last_position(next_task_position.project_id, next_task_position.status) + 1, 1);
end;
$$;

create or replace function app_public.move_task(task_id uuid, status app_public.task_status, after_task_id uuid default null)
returns app_public.tasks
language plpgsql
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
      v_next := app_hidden.task_column_next_position(v_task.project_id, move_task.status, null, v_task.id);
      v_position := coalesce(v_next - 1, 1);
    else
      select t.position into v_after from app_public.tasks t
        where t.id = move_task.after_task_id and t.project_id = v_task.project_id and t.status = move_task.status;
      if not found then
        raise exception 'afterTaskId must be a task in the same project and column.' using errcode = 'OS400';
      end if;
      v_next := app_hidden.task_column_next_position(v_task.project_id, move_task.status, v_after, v_task.id);
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
