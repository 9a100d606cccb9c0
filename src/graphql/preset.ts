import { PgSimplifyInflectionPreset } from "@graphile/simplify-inflection";
import type pg from "pg";
import type Stripe from "stripe";
import { makePgService } from "postgraphile/adaptors/pg";
import { PostGraphileAmberPreset } from "postgraphile/presets/amber";
import { getOperationAST } from "postgraphile/graphql";
import { PostGraphileConnectionFilterPreset } from "postgraphile-plugin-connection-filter";
import { makeBillingPlugin } from "../billing/graphql.ts";
import type { Config } from "../config.ts";
import { ANONYMOUS, pgSettingsFor, requestPolicy, type RequestIdentity } from "../db/request-role.ts";
import type { Logger } from "../logger.ts";
import { ErrorCodesPlugin, makeMaskError } from "./errors.ts";
import { makePageSizePlugin, makeQueryLimitsPlugin } from "./limits.ts";
import { MissingRowIsNotFoundPlugin } from "./not-found.ts";
import { PrivateUserFieldsPlugin } from "./private-user-fields.ts";
import { makeStoragePlugins } from "../storage/graphql.ts";
import type { Storage } from "../storage/storage.ts";
import { RealtimePlugin } from "./realtime.ts";
import { TotalCountFromPagePlugin } from "./total-count.ts";
import { attachRequest, makeRequestConnectionPlugin, pipelinedTransactions, requestConnection, SessionCheck } from "./request-connection.ts";

/** Finds the caller of a GraphQL request (HTTP or WebSocket); throws to refuse it. */
export type IdentityResolver = (requestContext: Partial<Grafast.RequestContext>) => Promise<RequestIdentity>;

const anonymous: IdentityResolver = async () => ANONYMOUS;

/**
 * app_public on the authenticator pool, with a LISTEN subscriber for subscriptions.
 * PostGraphile's release() leaves services alone: whoever makes one calls its release(), which
 * returns the subscriber's connection to the pool.
 */
export function pgServiceFor(pool: pg.Pool, options: { superuserConnectionString?: string } = {}) {
  return makePgService({ pool, schemas: ["app_public"], pubsub: true, ...options });
}

/**
 * PostGraphile's preset: the Amber preset with simplified inflection over app_public only,
 * connecting as the authenticator and switching to the request's role for every operation.
 */
export function makeGraphilePreset(options: {
  config: Config;
  pool: pg.Pool;
  roles: { anonymous: string; user: string };
  /** Where internal errors of GraphQL operations are logged (with the id the client is shown). */
  logger: Logger;
  identify?: IdentityResolver;
  /** The Stripe client the billing mutations call; without it they answer billing_unavailable. */
  stripe?: Stripe;
  /** The bucket the file mutations and URLs use; without it they answer storage_unavailable. */
  storage?: Storage;
  /** Plugins that need the running app (rate limits); schema tools leave them out. */
  plugins?: GraphileConfig.Plugin[];
  /** The service (pool + LISTEN subscriber) when the caller owns its lifecycle; see pgServiceFor. */
  pgService?: GraphileConfig.PgServiceConfiguration;
}): GraphileConfig.Preset {
  const { config, pool, roles } = options;
  const identify = options.identify ?? anonymous;
  const development = config.env !== "production";
  const policy = requestPolicy(config, roles);
  return {
    extends: [PostGraphileAmberPreset, PgSimplifyInflectionPreset, PostGraphileConnectionFilterPreset],
    plugins: [
      RealtimePlugin,
      PrivateUserFieldsPlugin,
      MissingRowIsNotFoundPlugin,
      TotalCountFromPagePlugin,
      ErrorCodesPlugin,
      makeRequestConnectionPlugin(pool),
      makeQueryLimitsPlugin(config.graphqlLimits, { introspection: config.graphqlIntrospection }),
      makePageSizePlugin(config.graphqlLimits.maxPageSize),
      ...makeStoragePlugins({ storage: options.storage, limits: config.storage, logger: options.logger }),
      makeBillingPlugin({ stripe: options.stripe, publicUrl: config.publicUrl, logger: options.logger }),
      ...(options.plugins ?? []),
    ],
    pgServices: [options.pgService ?? pgServiceFor(pool)],
    grafserv: {
      graphqlPath: "/graphql",
      graphiql: development,
      graphiqlPath: "/graphiql",
      graphiqlOnGraphQLGET: false,
      websockets: true,
      // Development only (DEV_WATCH): the schema is rebuilt when the database's schema changes.
      watch: config.devWatch,
      // Parsed documents kept (each up to GRAPHQL_MAX_DOCUMENT): enough for any real client's set
      // of operations, too few for a stream of distinct hostile documents to grow memory far.
      parseAndValidateCacheSize: 200,
      maxRequestLength: config.bodyLimitBytes,
      maskError: makeMaskError(options.logger),
    },
    grafast: {
      async context(requestContext, args) {
        const identity = await identify(requestContext);
        const pgSettings = pgSettingsFor(identity, policy);
        const res = requestContext.expressv4?.res;
        if (!res) return { pgSettings };
        const session = new SessionCheck(identity, pgSettings);
        if (getOperationAST(args.document, args.operationName)?.operation === "query") {
          // All of a query's SQL on one connection, a round trip a statement (see request-connection.ts).
          const connection = requestConnection(pool, session, pgSettings);
          attachRequest(res, { connection, session });
          res.once("close", () => void connection.end());
          return { pgSettings, withPgClient: connection.withPgClient };
        }
        attachRequest(res, { session });
        const direct = args.contextValue.withPgClient;
        if (!direct) return { pgSettings };
        // A mutation's statements: each in a transaction of its own, BEGIN, settings and the session
        // check in the round trip of its first statement.
        return { pgSettings, withPgClient: pipelinedTransactions(pool, session, direct) };
      },
    },
    schema: {
      dontSwallowErrors: !development,
    },
  };
}
