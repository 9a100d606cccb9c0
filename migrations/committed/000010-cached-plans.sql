--! Previous: sha1:340c15f240300186e67ae15a37a2a3ce1e5ced7f
--! Hash: sha1:80b273b76143c3889bece899191bb08b43241022
--! Message: Cached plans

-- Plans that stay good when PostgreSQL caches them. PostGraphile prepares its statements, and
-- after five runs PostgreSQL may switch a statement to a generic plan, made without the
-- parameters' values. Two of those were bad (measured at 200k tasks):
--
-- 1. A filtered list of tasks (`tasks(filter: …)`, ordered by id) went from the tenant index to
--    walking the primary key of every tenant, filtering row by row (70 ms instead of 2.5 ms).
--    The tenant index now carries the columns such lists filter and sort on, so the tenant's rows
--    are read from the index alone, whichever plan is used (1 ms). Under row-level security the
--    title and status conditions cannot be index conditions (ILIKE and enum equality are not
--    leakproof); reading them from the index is the next best thing.
drop index app_public.tasks_organization_id_idx;
create index tasks_organization_id_idx on app_public.tasks (organization_id, created_at) include (id, status, title);

-- 2. search_tasks computed websearch_to_tsquery(query) once per row in a generic plan. As a
--    one-row function in FROM it is computed once, and the function is still inlined.
create or replace function app_public.search_tasks(query text) returns setof app_public.tasks
language sql stable
as $$
  select t.*
  from pg_catalog.websearch_to_tsquery('english'::pg_catalog.regconfig, search_tasks.query) as q,
    app_public.tasks t
  where t.search operator(pg_catalog.@@) q
  order by pg_catalog.ts_rank(t.search, q) desc, t.created_at desc;
$$;
