// Peer for the benchmark: a hand-written Express + pg server doing the same work per request as
// the GraphQL API: verify the JWT, one transaction as the request's role with the same claims,
// then hand-written SQL (json_agg) under the same row-level security. Started by bench/run.ts.
//   PORT, AUTH_DATABASE_URL, JWT_SECRET, PUBLIC_URL, DATABASE_USER
import express from "express";
import jwt from "jsonwebtoken";
import pg from "pg";

const pool = new pg.Pool({ connectionString: process.env.AUTH_DATABASE_URL, max: 10 });
const secret = process.env.JWT_SECRET!;
const issuer = process.env.PUBLIC_URL!;
const role = process.env.DATABASE_USER!;

const QUERIES: Record<string, string> = {
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
  q4b: `select json_build_object(
          'totalCount', (select count(*) from app_public.search_tasks('landing page')),
          'nodes', coalesce((select json_agg(t) from (select title from app_public.search_tasks('landing page') limit 20) t), '[]'))`,
  m1: `with t as (insert into app_public.tasks (project_id, title) values ($1, $2) returning id) select json_build_object('rowId', id) from t`,
};

const app = express();
app.use(express.json());
app.post("/:query", async (req, res) => {
  const sql = QUERIES[req.params.query];
  if (!sql) return void res.status(404).end();
  let claims: jwt.JwtPayload;
  try {
    claims = jwt.verify((req.get("authorization") ?? "").replace(/^Bearer /, ""), secret, { algorithms: ["HS256"], issuer, audience: "oddscenes" }) as jwt.JwtPayload;
  } catch {
    return void res.status(401).json({ error: "invalid token" });
  }
  const client = await pool.connect();
  try {
    await client.query("begin");
    await client.query(
      "select set_config('role', $1, true), set_config('jwt.claims.user_id', $2, true), set_config('jwt.claims.session_id', $3, true), set_config('statement_timeout', '8s', true)",
      [role, claims.sub, claims.sid],
    );
    const { rows } = await client.query(sql, (req.body.params as unknown[] | undefined) ?? []);
    await client.query("commit");
    res.json({ data: rows[0] ? Object.values(rows[0])[0] : null });
  } catch (error) {
    await client.query("rollback").catch(() => undefined);
    res.status(500).json({ error: (error as Error).message });
  } finally {
    client.release();
  }
});
app.get("/healthz", (_req, res) => void res.json({ status: "ok" }));
app.listen(Number(process.env.PORT), "127.0.0.1");
