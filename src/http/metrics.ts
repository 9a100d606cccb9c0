import type { Request, RequestHandler } from "express";
import type pg from "pg";
import { collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";

/** Paths served by mounted handlers (PostGraphile) that have no Express route object. */
const MOUNTED_PATHS = ["/graphql", "/graphiql", "/ruru-static"];

export interface Metrics {
  registry: Registry;
  /** Times every request into `http_request_duration_seconds{method,route,status_code}`. */
  middleware: RequestHandler;
  /** Serves the registry in Prometheus text format. */
  handler: RequestHandler;
}

/** The route template, never the raw URL, so label values stay few. */
function routeLabel(req: Request): string {
  if (req.route?.path) return `${req.baseUrl}${String(req.route.path)}`;
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

export function createMetrics(options: { ownerPool: pg.Pool }): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  databaseGauges(registry, options.ownerPool);
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
    handler: async (_req, res) => {
      res.type(registry.contentType).send(await registry.metrics());
    },
  };
}
