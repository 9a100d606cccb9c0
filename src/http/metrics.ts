import { createHash, timingSafeEqual } from "node:crypto";
import type { Request, RequestHandler } from "express";
import type pg from "pg";
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";

/** Paths served by mounted handlers (PostGraphile) that have no Express route object. */
const MOUNTED_PATHS = ["/graphql", "/graphiql", "/ruru-static"];

export interface Metrics {
  registry: Registry;
  /** Times every request into `http_request_duration_seconds{method,route,status_code}`. */
  middleware: RequestHandler;
  /** Serves the registry in Prometheus text format. */
  handler: RequestHandler;
  /** Counts a GraphQL response by HTTP status and error code ("none" when it has no errors). */
  countGraphql(statusCode: number, codes: string[]): void;
}

/**
 * The route template, never the raw URL, so label values stay few. A router's mount path is gone
 * from req.baseUrl once the router is done (an error answered by the app's handler, or the
 * response finishing later), so it is taken from the URL: the segments before the route's own.
 */
function routeLabel(req: Request): string {
  if (typeof req.route?.path === "string") {
    const route: string = req.route.path;
    const segments = (req.originalUrl.split("?")[0] ?? "").split("/").filter(Boolean);
    const own = route.split("/").filter(Boolean).length;
    const mount = segments.slice(0, Math.max(0, segments.length - own));
    // Express matches mount paths regardless of case; the label should not multiply by it.
    return `${mount.length ? `/${mount.join("/").toLowerCase()}` : ""}${route}`;
  }
  return MOUNTED_PATHS.find((p) => req.path === p || req.path.startsWith(`${p}/`)) ?? "unmatched";
}

/**
 * Gauges read from the database when scraped, so they cover every worker process (in-process or
 * `npm run worker`): jobs by task and state, jobs that used up their attempts, and Stripe events
 * whose sync keeps failing.
 * While the database is down they keep their last values (/readyz reports the outage).
 */
function databaseGauges(registry: Registry, ownerPool: pg.Pool): void {
  /** A gauge whose values are the rows of a query (label columns and `n`), read at each scrape. */
  const queried = <L extends string>(name: string, help: string, labelNames: readonly L[], sql: string) =>
    new Gauge({
      name,
      help,
      labelNames,
      registers: [registry],
      async collect() {
        const { rows } = await ownerPool.query<{ n: number } & Record<string, string | number>>(sql).catch(() => ({ rows: undefined }));
        if (!rows) return;
        this.reset();
        for (const { n, ...labels } of rows) this.set(labels as Partial<Record<L, string>>, n);
      },
    });
  queried(
    "worker_jobs",
    "Jobs in graphile-worker's queue by task and state: queued (waiting or retrying), locked (running, or fetched by a worker to run next), failed (used up their attempts). `npm run jobs` lists them.",
    ["task", "state"],
    `select t.identifier as task, s.state, count(j.id)::int as n
     from graphile_worker._private_tasks t
     cross join (values ('queued'), ('locked'), ('failed')) as s (state)
     left join graphile_worker.jobs j on j.task_identifier = t.identifier
       and s.state = case when j.locked_at is not null then 'locked' when j.attempts >= j.max_attempts then 'failed' else 'queued' end
     group by 1, 2`,
  );
  queried(
    "worker_jobs_failed_permanently",
    "Jobs that used up their attempts and will not run again, by task (`npm run jobs`; retry with `npm run jobs -- retry`).",
    ["task"],
    "select task_identifier as task, count(*)::int as n from graphile_worker.jobs where attempts >= max_attempts group by 1",
  );
  queried(
    "stripe_events_unprocessed",
    "Stripe events not synced yet, by whether their last sync attempt failed (app_private.stripe_events).",
    ["state"],
    `select s.state, count(e.id)::int as n
     from (values ('failing'), ('pending')) as s (state)
     left join app_private.stripe_events e on e.processed_at is null and (e.last_error is not null) = (s.state = 'failing')
     group by 1`,
  );
}

/** The pools' connections, by state: in use, idle, and requests waiting for one (a sign of starvation). */
function poolGauges(registry: Registry, pools: Record<string, pg.Pool>): void {
  new Gauge({
    name: "db_pool_connections",
    help: "Database connections of this process's pools, by pool and state (total, idle, waiting requests).",
    labelNames: ["pool", "state"] as const,
    registers: [registry],
    collect() {
      for (const [name, pool] of Object.entries(pools)) {
        this.set({ pool: name, state: "total" }, pool.totalCount);
        this.set({ pool: name, state: "idle" }, pool.idleCount);
        this.set({ pool: name, state: "waiting" }, pool.waitingCount);
      }
    },
  });
}

export function createMetrics(options: { ownerPool: pg.Pool; pools?: Record<string, pg.Pool> }): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  databaseGauges(registry, options.ownerPool);
  poolGauges(registry, options.pools ?? { owner: options.ownerPool });
  const graphql = new Counter({
    name: "graphql_responses_total",
    help: "GraphQL responses (HTTP), by status code and the code of their first error: GraphQL errors often travel in a 200.",
    labelNames: ["status_code", "error_code"] as const,
    registers: [registry],
  });
  const duration = new Histogram({
    name: "http_request_duration_seconds",
    help: "HTTP request duration in seconds, by method, route template and status code.",
    labelNames: ["method", "route", "status_code"] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  return {
    registry,
    middleware: (req, res, next) => {
      const end = duration.startTimer();
      res.once("finish", () => end({ method: req.method, route: routeLabel(req), status_code: String(res.statusCode) }));
      next();
    },
    countGraphql(statusCode, codes) {
      graphql.inc({ status_code: String(statusCode), error_code: codes[0] ?? "none" });
    },
    handler: async (_req, res) => {
      res.type(registry.contentType).send(await registry.metrics());
    },
  };
}

/** With a token, /metrics answers only `Authorization: Bearer <token>` (compared in constant time). */
export function metricsAuth(token: string | undefined): RequestHandler {
  if (!token) return (_req, _res, next) => next();
  // Digests of equal length, so the comparison reveals neither the token nor its length.
  const digest = (value: string) => createHash("sha256").update(value).digest();
  const expected = digest(`Bearer ${token}`);
  return (req, res, next) => {
    if (timingSafeEqual(digest(req.get("authorization") ?? ""), expected)) return next();
    res.status(401).set("WWW-Authenticate", 'Bearer realm="metrics"').json({ error: { code: "unauthenticated", message: "Metrics need the METRICS_TOKEN bearer token." } });
  };
}
