// The hand-written peer's SQL (bench/peers/handwritten.ts serves it over HTTP; bench/run.ts also
// runs it through pgbench as the database's own limit): one statement per GraphQL workload, json_agg
// answers of the same shape, run as the request's role under the same row-level security.
// Parameters: q1 $1 = project id; q3 $1 = task id; m1 $1 = project id, $2 = title.

export const QUERIES: Record<string, string> = {
  q1: `select json_build_object(
         'totalCount', (select count(*) from app_public.tasks where project_id = $1),
         'nodes', coalesce((select json_agg(t) from (select id, title, status, position from app_public.tasks
                                                    where project_id = $1 order by position, id limit 20) t), '[]'))`,
  q2: `select coalesce(json_agg(json_build_object('name', o.name, 'projects', (
         select coalesce(json_agg(json_build_object('name', p.name, 'tasks', (
           select coalesce(json_agg(json_build_object('title', t.title, 'assignee', (select json_build_object('name', u.name) from app_public.users u where u.id = t.assignee_id))), '[]')
           from (select title, assignee_id from app_public.tasks t where t.project_id = p.id order by position, id limit 10) t))), '[]')
         from app_public.projects p where p.organization_id = o.id))), '[]')
       from app_public.organizations o`,
  q3: `select json_build_object('title', t.title,
         'comments', (select coalesce(json_agg(json_build_object('body', c.body, 'author', (select json_build_object('name', u.name) from app_public.users u where u.id = c.author_id))), '[]')
                      from (select body, author_id from app_public.task_comments c where c.task_id = t.id order by created_at, id limit 50) c),
         'project', (select json_build_object('name', p.name, 'members', (
                       select coalesce(json_agg(json_build_object('role', m.role, 'user', (select json_build_object('name', u.name) from app_public.users u where u.id = m.user_id))), '[]')
                       from app_public.organization_memberships m where m.organization_id = p.organization_id))
                     from app_public.projects p where p.id = t.project_id))
       from app_public.tasks t where t.id = $1`,
  q4a: `select json_build_object(
          'totalCount', (select count(*) from app_public.tasks where status in ('todo', 'in_progress') and title ilike '%landing%'),
          'nodes', coalesce((select json_agg(t) from (select title from app_public.tasks where status in ('todo', 'in_progress') and title ilike '%landing%'
                                                     order by id limit 20) t), '[]'))`,
  // Page and totalCount from one run of the search, as ours does (a window count is computed
  // before LIMIT): the search function runs once, not a second time for the count.
  q4b: `with page as (select title, count(*) over () as total from app_public.search_tasks('landing page') limit 20)
        select json_build_object('totalCount', coalesce((select max(total) from page), 0),
                                 'nodes', coalesce((select json_agg(json_build_object('title', title)) from page), '[]'))`,
  m1: `with t as (insert into app_public.tasks (project_id, title) values ($1, $2) returning id) select json_build_object('rowId', id) from t`,
};
