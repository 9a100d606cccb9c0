import { PgSimplifyInflectionPreset } from "@graphile/simplify-inflection";
import type pg from "pg";
import { makePgService } from "postgraphile/adaptors/pg";
import { PostGraphileAmberPreset } from "postgraphile/presets/amber";
import type { Config } from "../config.ts";

/** How long one request's SQL may run, per request role (anonymous requests get less). */
const STATEMENT_TIMEOUT = { anonymous: "3s", user: "8s" } as const;

/** What the GraphQL context needs to know about the caller; the identity issue fills it from the JWT. */
export interface RequestIdentity {
  role: "anonymous" | "user";
  claims: Record<string, string>;
}

export type IdentityResolver = (requestContext: Partial<Grafast.RequestContext>) => Promise<RequestIdentity>;

const anonymous: IdentityResolver = async () => ({ role: "anonymous", claims: {} });

/** The settings a request runs under: its database role and its verified claims. */
export function pgSettingsFor(identity: RequestIdentity, roles: { anonymous: string; user: string }): Record<string, string> {
  const settings: Record<string, string> = {
    role: identity.role === "user" ? roles.user : roles.anonymous,
    statement_timeout: STATEMENT_TIMEOUT[identity.role],
  };
  for (const [name, value] of Object.entries(identity.claims)) settings[`jwt.claims.${name}`] = value;
  return settings;
}

/**
 * PostGraphile's preset: the Amber preset with simplified inflection over app_public only,
 * connecting as the authenticator and switching to the request's role for every operation.
 */
export function makeGraphilePreset(options: {
  config: Config;
  pool: pg.Pool;
  roles: { anonymous: string; user: string };
  identify?: IdentityResolver;
}): GraphileConfig.Preset {
  const { config, pool, roles } = options;
  const identify = options.identify ?? anonymous;
  const development = config.env !== "production";
  return {
    extends: [PostGraphileAmberPreset, PgSimplifyInflectionPreset],
    pgServices: [makePgService({ pool, schemas: ["app_public"], pubsub: true })],
    grafserv: {
      graphqlPath: "/graphql",
      graphiql: development,
      graphiqlPath: "/graphiql",
      graphiqlOnGraphQLGET: false,
      websockets: true,
      maxRequestLength: config.bodyLimitBytes,
    },
    grafast: {
      async context(requestContext) {
        const identity = await identify(requestContext);
        return { pgSettings: pgSettingsFor(identity, roles) };
      },
    },
    schema: {
      dontSwallowErrors: !development,
    },
  };
}
