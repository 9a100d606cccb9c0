import { createServer, type Server } from "node:http";
import express, { type Router } from "express";
import { postgraphile } from "postgraphile";
import { grafserv } from "postgraphile/grafserv/express/v4";
import { graphqlHttpAuth, graphqlIdentity } from "../auth/graphql-identity.ts";
import { createPasswords } from "../auth/passwords.ts";
import { authRoutes } from "../auth/routes.ts";
import type { Config } from "../config.ts";
import type { Pools } from "../db/pools.ts";
import type { DatabaseUrls } from "../db/urls.ts";
import { makeGraphilePreset, pgServiceFor } from "../graphql/preset.ts";
import type { Logger } from "../logger.ts";
import { corsPolicy } from "./cors.ts";
import { errorHandler, notFound } from "./errors.ts";
import { warnOnUntrustedForwardedFor } from "./forwarded-warning.ts";
import { healthRoutes } from "./health.ts";
import { createMetrics } from "./metrics.ts";
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
}

export interface App {
  app: express.Express;
  /** The HTTP server (not listening yet); websockets for subscriptions attach to it. */
  server: Server;
  /** Releases PostGraphile (schema, websockets, subscriptions); pools are the caller's. */
  release(): Promise<void>;
}

/**
 * Builds the HTTP edge. Middleware order is the request's path through it: id, log, proxy check, metrics,
 * security headers, CORS, health, GraphQL (authenticated first), JSON body, REST routes, 404,
 * errors.
 */
export async function createApp(options: AppOptions): Promise<App> {
  const { config, pools, logger, roles } = options;
  const app = express();
  const server = createServer(app);
  const metrics = createMetrics();

  app.disable("x-powered-by");
  // Only the configured proxies may say who the client is; by default nobody can (req.ip is the peer).
  app.set("trust proxy", config.trustProxy);

  app.use(requestId);
  app.use(requestLog(logger));
  app.use(warnOnUntrustedForwardedFor(config.trustProxy, logger));
  app.use(metrics.middleware);
  app.use(securityHeaders({ graphiql: config.env !== "production" }));
  app.use(corsPolicy(config.corsOrigins));

  app.use(healthRoutes({ ownerPool: pools.owner, latestMigration: options.latestMigration }));
  app.get("/metrics", metrics.handler);

  const identityDeps = { jwt: config.jwt, ownerPool: pools.owner };
  app.use("/graphql", graphqlHttpAuth(identityDeps));
  const pgService = pgServiceFor(pools.authenticator);
  const pgl = postgraphile(
    makeGraphilePreset({ config, pool: pools.authenticator, pgService, roles, identify: graphqlIdentity(identityDeps) }),
  );
  const serv = pgl.createServ(grafserv);
  await serv.addTo(app, server);

  app.use(express.json({ limit: config.bodyLimitBytes, strict: true }));
  app.use("/auth", authRoutes({ config, pools, roles, passwords: createPasswords() }));
  for (const [path, router] of options.routes ?? []) app.use(path, router);

  app.use(notFound);
  app.use(errorHandler(logger));

  const release = async () => {
    await pgl.release();
    await pgService.release?.();
  };
  return { app, server, release };
}
