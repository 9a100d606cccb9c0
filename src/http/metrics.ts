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
 * `npm run worker`): jobs that used up their attempts, and Stripe events whose sync keeps failing.
 * While the database is down they keep their last values (/readyz reports the outage).
 */
function databaseGauges(registry: Registry, ownerPool: pg.Pool): void {
  new Gauge({
    name: "worker_jobs_failed_permanently",
    help: "Jobs that used up their attempts and will not run again, by task (inspect graphile_worker.jobs).",
    labelNames: ["task"] as const,
    registers: [registry],
    async collect() {
      const { rows } = await ownerPool
        .query<{ task: string; n: number }>(
          "select task_identifier as task, count(*)::int as n from graphile_worker.jobs where attempts >= max_attempts group by 1",
        )
        .catch(() => ({ rows: undefined }));
      if (!rows) return;
      this.reset();
      for (const row of rows) this.set({ task: row.task }, row.n);
    },
  });
  new Gauge({
    name: "stripe_events_unprocessed",
    help: "Stripe events not synced yet, by whether their last sync attempt failed (app_private.stripe_events).",
    labelNames: ["state"] as const,
    registers: [registry],
    async collect() {
      const { rows } = await ownerPool
        .query<{ failing: number; pending: number }>(
          `select count(*) filter (where last_error is not null)::int as failing, count(*) filter (where last_error is null)::int as pending
           from app_private.stripe_events where processed_at is null`,
        )
        .catch(() => ({ rows: undefined }));
      if (!rows?.[0]) return;
      this.set({ state: "failing" }, rows[0].failing);
      this.set({ state: "pending" }, rows[0].pending);
    },
  });
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
