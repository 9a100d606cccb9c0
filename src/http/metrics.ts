import type { Request, RequestHandler } from "express";
import { collectDefaultMetrics, Histogram, Registry } from "prom-client";

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

export function createMetrics(): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
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
