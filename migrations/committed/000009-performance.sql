--! Previous: sha1:4f4f4b550e8bbee0e1fb10d5d762e8cdf03fbd61
--! Hash: sha1:340c15f240300186e67ae15a37a2a3ce1e5ced7f
--! Message: Performance

--------------------------------------------------------------------------------
-- Performance: policies the planner can use as index conditions, an index for
-- "a project's tasks in board order", and a search Postgres can inline.
--
-- A tenant policy of the shape `organization_id in (select helper()) or (select
-- is_admin())` can only ever be a filter: the hashed subplan OR-ed with an
-- initplan is checked row by row after a scan of every tenant's rows. The same
-- rule written `organization_id = any ((select helper())::uuid[])`, with site admins
-- folded into the helper, is an index condition on the organization_id
-- indexes, so a member's query reads their organizations' rows only. What each
-- role may see or write is unchanged; tests/rls.test.ts still proves it.
--------------------------------------------------------------------------------

drop index if exists app_public.tasks_project_position_idx;

-- The policies below reference the helpers, so they go first (and are made again).
drop policy if exists select_member on app_public.organizations;
drop policy if exists select_member on app_public.organization_memberships;
drop policy if exists select_member on app_public.projects;
drop policy if exists insert_member on app_public.projects;
drop policy if exists update_member on app_public.projects;
drop policy if exists select_member on app_public.tasks;
drop policy if exists insert_member on app_public.tasks;
drop policy if exists update_member on app_public.tasks;
drop policy if exists delete_creator_or_manager on app_public.tasks;
drop policy if exists select_member on app_public.task_comments;
drop policy if exists insert_member on app_public.task_comments;
drop policy if exists update_author on app_public.task_comments;
drop policy if exists delete_author_or_manager on app_public.task_comments;
drop policy if exists select_member on app_public.activity;
drop policy if exists select_member on app_public.subscriptions;
drop policy if exists select_member on app_public.usage_reports;
drop function if exists app_hidden.current_user_member_organizations();
drop function if exists app_hidden.current_user_visible_organizations();

create function app_hidden.current_user_member_organizations() returns uuid[]
language sql stable security definer
set search_path = pg_catalog, public, pg_temp
as $$
  select coalesce(array_agg(m.organization_id), '{}') from app_public.organization_memberships m
  where m.user_id = app_public.current_user_id();
$$;
comment on function app_hidden.current_user_member_organizations() is
  'The organizations the signed-in user is a member of, as an array: policies compare with `= any ((select …)::uuid[])`, which the planner uses as an index condition.';

create function app_hidden.current_user_visible_organizations() returns uuid[]
language sql stable security definer
set search_path = pg_catalog, public, pg_temp
as $$
  select case
    when u.is_admin then (select coalesce(array_agg(o.id), '{}') from app_public.organizations o)
    else (select coalesce(array_agg(m.organization_id), '{}') from app_public.organization_memberships m where m.user_id = me.id)
  end
  from (select app_public.current_user_id() as id) me
  left join app_public.users u on u.id = me.id;
$$;
comment on function app_hidden.current_user_visible_organizations() is
  'The organizations whose rows the signed-in user may read: those they are a member of, or every organization for a site administrator.';

revoke all on function app_hidden.current_user_member_organizations() from public;
revoke all on function app_hidden.current_user_visible_organizations() from public;
grant execute on function app_hidden.current_user_member_organizations() to :DATABASE_ANONYMOUS, :DATABASE_USER;
grant execute on function app_hidden.current_user_visible_organizations() to :DATABASE_ANONYMOUS, :DATABASE_USER;

create policy select_member on app_public.organizations for select
  using (id = any ((select app_hidden.current_user_visible_organizations())::uuid[]));
create policy select_member on app_public.organization_memberships for select
  using (organization_id = any ((select app_hidden.current_user_visible_organizations())::uuid[]));

create policy select_member on app_public.projects for select
  using (organization_id = any ((select app_hidden.current_user_visible_organizations())::uuid[]));
create policy insert_member on app_public.projects for insert
  with check (organization_id = any ((select app_hidden.current_user_member_organizations())::uuid[]));
create policy update_member on app_public.projects for update
  using (organization_id = any ((select app_hidden.current_user_member_organizations())::uuid[]));

create policy select_member on app_public.tasks for select
  using (organization_id = any ((select app_hidden.current_user_visible_organizations())::uuid[]));
create policy insert_member on app_public.tasks for insert
  with check (organization_id = any ((select app_hidden.current_user_member_organizations())::uuid[]));
create policy update_member on app_public.tasks for update
  using (organization_id = any ((select app_hidden.current_user_member_organizations())::uuid[]));
create policy delete_creator_or_manager on app_public.tasks for delete
  using (
    organization_id = any ((select app_hidden.current_user_member_organizations())::uuid[])
    and (created_by = (select app_public.current_user_id()) or app_hidden.current_user_manages(organization_id))
  );

create policy select_member on app_public.task_comments for select
  using (organization_id = any ((select app_hidden.current_user_visible_organizations())::uuid[]));
create policy insert_member on app_public.task_comments for insert
  with check (organization_id = any ((select app_hidden.current_user_member_organizations())::uuid[]));
create policy update_author on app_public.task_comments for update
  using (author_id = (select app_public.current_user_id())
    and organization_id = any ((select app_hidden.current_user_member_organizations())::uuid[]));
create policy delete_author_or_manager on app_public.task_comments for delete
  using (
    organization_id = any ((select app_hidden.current_user_member_organizations())::uuid[])
    and (author_id = (select app_public.current_user_id()) or app_hidden.current_user_manages(organization_id))
  );

create policy select_member on app_public.activity for select
  using (organization_id = any ((select app_hidden.current_user_visible_organizations())::uuid[]));
create policy select_member on app_public.subscriptions for select
  using (organization_id = any ((select app_hidden.current_user_visible_organizations())::uuid[]));
create policy select_member on app_public.usage_reports for select
  using (organization_id = any ((select app_hidden.current_user_visible_organizations())::uuid[]));

-- "A project's tasks in board order" (every task list, GraphQL's POSITION_ASC):
-- the board index (project_id, status, position) made each page sort all of the
-- project's tasks. organization_id rides along so the tenant policy and
-- totalCount are answered from the index.
create index tasks_project_position_idx on app_public.tasks (project_id, position, id) include (organization_id);

-- search_tasks without `set search_path` (every name qualified instead), so
-- Postgres inlines it into the query that calls it: the tenant policy then
-- narrows the rows by index before the text match, and the page and its
-- totalCount plan like any other query on tasks.
create or replace function app_public.search_tasks(query text) returns setof app_public.tasks
language sql stable
as $$
  select t.* from app_public.tasks t
  where t.search operator(pg_catalog.@@) pg_catalog.websearch_to_tsquery('english'::pg_catalog.regconfig, search_tasks.query)
  order by pg_catalog.ts_rank(t.search, pg_catalog.websearch_to_tsquery('english'::pg_catalog.regconfig, search_tasks.query)) desc,
    t.created_at desc;
$$;
