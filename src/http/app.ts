import { createServer, type Server } from "node:http";
import express, { type RequestHandler, type Router } from "express";
import { postgraphile } from "postgraphile";
import { grafserv } from "postgraphile/grafserv/express/v4";
import proxyAddr from "proxy-addr";
import { graphqlHttpAuth, graphqlIdentity } from "../auth/graphql-identity.ts";
import { createPasswords } from "../auth/passwords.ts";
import { authRoutes } from "../auth/routes.ts";
import { createStripeClient } from "../billing/stripe.ts";
import { stripeWebhook } from "../billing/webhook.ts";
import type { Storage } from "../storage/storage.ts";
import { openApiDocument } from "./openapi.ts";
import { exportOpenApi, makeSchemaExportPlugin } from "../graphql/contract-export.ts";
import { PROJECT_ROOT } from "../db/setup.ts";
import { createSocketSessions } from "../auth/socket-sessions.ts";
import type { Config } from "../config.ts";
import type { Pools } from "../db/pools.ts";
import type { DatabaseUrls } from "../db/urls.ts";
import { makeGraphqlMetricsPlugin } from "../graphql/errors.ts";
import { makeGraphilePreset, pgServiceFor } from "../graphql/preset.ts";
import { attachWebSockets } from "../graphql/websocket.ts";
import { createGraphqlRateLimiter, graphqlClientRateLimit, graphqlUserRateLimit, makeGraphqlRateLimitPlugin } from "../graphql/rate-limit.ts";
import { makeSubscriptionLimitPlugin } from "../graphql/subscription-limit.ts";
import type { Logger } from "../logger.ts";
import { clientKey } from "./client-address.ts";
import { corsPolicy } from "./cors.ts";
import { createDrain, type Drain } from "./drain.ts";
import { AppError, errorHandler, notFound } from "./errors.ts";
import { answerMalformedHttp, refuseUnreadableAccept } from "./malformed.ts";
import { warnOnUntrustedForwardedFor } from "./forwarded-warning.ts";
import { healthRoutes } from "./health.ts";
import { createMetrics, metricsAuth } from "./metrics.ts";
import { requestId } from "./request-id.ts";
import { requestLog } from "./request-log.ts";
import { securityHeaders } from "./security-headers.ts";

export interface AppOptions {
  config: Config;
  pools: Pools;
  logger: Logger;
  roles: DatabaseUrls["roles"];
  /** Newest committed migration; /readyz reports "not ready" until the database has it. */
  latestMigration: string | undefined;
  /** Extra REST routers mounted after the built-in ones (tests use this). */
  routes?: Array<[path: string, router: Router]>;
  /** How often signed-in WebSockets are checked against their sessions (default 2 s). */
  socketCheckIntervalMs?: number;
  /** Whether the in-process worker still runs (absent: no worker here); /readyz fails when it stopped. */
  workerAlive?: () => boolean;
  /** The bucket behind the file mutations and URLs (see src/storage/open.ts); none: storage_unavailable. */
  storage?: Storage;
  /** DEV_WATCH: a superuser connection to the application's database, to install the schema watch. */
  superuserUrl?: string;
  /** DEV_WATCH: where schema.graphql and openapi.json are rewritten (default: the project root). */
  contractsDir?: string;
}

export interface App {
  app: express.Express;
  /** The HTTP server (not listening yet); websockets for subscriptions attach to it. */
  server: Server;
  /** Drains the server for a shutdown (see src/http/drain.ts). */
  drain: Drain["drain"];
  /** Serves /metrics; backend.ts mounts it on METRICS_PORT when that is set. */
  metrics: RequestHandler;
  /** Releases PostGraphile (schema, websockets, subscriptions); pools are the caller's. */
  release(): Promise<void>;
}

/**
 * Builds the HTTP edge. Middleware order is the request's path through it: id, log, proxy
 * check, metrics, security headers, CORS, health, GraphQL (rate limited by client,
 * authenticated, rate limited by user), Stripe webhook (raw body), JSON body, REST routes, 404,
 * errors.
 */
export async function createApp(options: AppOptions): Promise<App> {
  const { config, pools, logger, roles } = options;
  const app = express();
  // Slow clients may not hold a connection for Node's 300 s: headers within 10 s, the whole
  // request within HTTP_REQUEST_TIMEOUT (checked every second, not every 30).
  const server = createServer(
    {
      requestTimeout: config.requestTimeoutMs,
      headersTimeout: Math.min(10_000, config.requestTimeoutMs),
      connectionsCheckingInterval: Math.min(1000, config.requestTimeoutMs),
      // A request without Host reaches Express (and gets our error shape) instead of a bare 400.
      requireHostHeader: false,
    },
    app,
  );
  answerMalformedHttp(server);
  const drain = createDrain(server);
  const metrics = createMetrics({ ownerPool: pools.owner, pools: { owner: pools.owner, authenticator: pools.authenticator } });

  app.disable("x-powered-by");
  // Only the configured proxies may say who the client is; by default nobody can (req.ip is the peer).
  app.set("trust proxy", config.trustProxy);

  app.use(drain.middleware);
  app.use(requestId);
  app.use(requestLog(logger));
  app.use(warnOnUntrustedForwardedFor(config.trustProxy, logger));
  app.use(metrics.middleware);
  app.use(securityHeaders({ graphiql: config.env !== "production" }));
  app.use(corsPolicy(config.corsOrigins));

  app.use(healthRoutes({ ownerPool: pools.owner, latestMigration: options.latestMigration, draining: drain.draining, workerAlive: options.workerAlive }));
  // /metrics: on its own port when METRICS_PORT is set (see backend.ts), else here behind
  // METRICS_TOKEN; in production without either it is not served on the public port at all.
  if (config.metrics.port === undefined && (config.metrics.token || config.env !== "production")) {
    app.get("/metrics", metricsAuth(config.metrics.token), metrics.handler);
  }

  const identityDeps = { jwt: config.jwt, ownerPool: pools.owner };
  const limiter = createGraphqlRateLimiter(config.graphqlRateLimits);
  app.use("/graphql", graphqlClientRateLimit(limiter), graphqlHttpAuth(identityDeps), graphqlUserRateLimit(limiter));
  // DEV_WATCH: PostGraphile listens for DDL (through an event trigger it installs as superuser)
  // and rebuilds the schema; the contracts are rewritten on each build.
  const contractsDir = options.contractsDir ?? PROJECT_ROOT;
  const pgService = pgServiceFor(pools.authenticator, config.devWatch ? { superuserConnectionString: options.superuserUrl } : {});
  const sessions = createSocketSessions({ ...identityDeps, logger, intervalMs: options.socketCheckIntervalMs, subscriber: pgService.pgSubscriber ?? undefined });
  if (config.devWatch) {
    if (!options.superuserUrl) logger.warn("DEV_WATCH needs the superuser's connection (ROOT_DATABASE_URL) to watch the schema; it will not reload");
    await exportOpenApi(contractsDir, logger);
  }
  const pgl = postgraphile(
    makeGraphilePreset({
      config,
      pool: pools.authenticator,
      pgService,
      roles,
      logger,
      identify: graphqlIdentity({ ...identityDeps, sessions }),
      stripe: createStripeClient(config.stripe),
      storage: options.storage,
      plugins: [
        makeGraphqlRateLimitPlugin(limiter, (request) => clientKey(proxyAddr(request, app.get("trust proxy fn")))),
        makeSubscriptionLimitPlugin(config.graphqlMaxSubscriptions),
        makeGraphqlMetricsPlugin(metrics.countGraphql),
        ...(config.devWatch ? [makeSchemaExportPlugin(contractsDir, logger)] : []),
      ],
    }),
  );
  app.use("/graphql", refuseUnreadableAccept);
  // Ruru's assets: a name that is not a plain file name gets our 404, not grafserv's HTML page.
  app.use("/ruru-static", (req, _res, next) => (/^\/[\w.-]+$/.test(req.path) && !req.path.includes("..") ? next() : next(new AppError(404, "not_found", "No such file."))));
  const serv = pgl.createServ(grafserv);
  // WebSockets are ours to attach (src/graphql/websocket.ts), with a message size limit.
  await serv.addTo(app, server, false);
  const releaseWebSockets = attachWebSockets(serv, server, { maxPayload: config.bodyLimitBytes, keepaliveMs: config.websocketKeepaliveMs });

  // Stripe signs the raw bytes, so its webhook reads the body itself, before any JSON parsing.
  app.use("/webhooks/stripe", stripeWebhook({ config, ownerPool: pools.owner, logger }));
  app.use(express.json({ limit: config.bodyLimitBytes, strict: true }));
  const openApi = openApiDocument();
  app.get("/openapi.json", (_req, res) => void res.json(openApi));
  app.use("/auth", authRoutes({ config, pools, roles, passwords: createPasswords() }));
  for (const [path, router] of options.routes ?? []) app.use(path, router);

  app.use(notFound);
  app.use(errorHandler(logger));

  const release = async () => {
    sessions.stop();
    await releaseWebSockets();
    await pgl.release();
    await pgService.release?.();
  };
  return { app, server, drain: drain.drain, metrics: metrics.handler, release };
}
