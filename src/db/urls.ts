import type { Config } from "../config.ts";
import { loadDevSecrets } from "../config.ts";
import { readEmbeddedState } from "./embedded.ts";

/** Names of the login roles the embedded development database creates. */
export const EMBEDDED_ROLES = { owner: "oddscenes_owner", authenticator: "oddscenes_authenticator" } as const;
export const EMBEDDED_DATABASE = "oddscenes";

/** Every connection string the backend needs, plus the role names the SQL refers to. */
export interface DatabaseUrls {
  /** Owner: runs migrations and the worker, owns every object. */
  owner: string;
  /** Authenticator: the API's login role; switches to anonymous/user per request. */
  authenticator: string;
  /** Superuser, only for setup (bootstrap, reset). */
  root: string | undefined;
  /** Scratch database for graphile-migrate watch/commit. */
  shadow: string | undefined;
  roles: { owner: string; authenticator: string; anonymous: string; user: string };
}

function withCredentials(base: string, user: string, password: string, database: string): string {
  const url = new URL(base);
  url.username = user;
  url.password = password;
  url.pathname = `/${database}`;
  return url.toString();
}

/** The URLs of the embedded server listening on `port`, from the dev secrets in dataDir. */
export function embeddedUrls(config: Config, port: number): DatabaseUrls {
  const secrets = loadDevSecrets(config.dataDir);
  const base = `postgres://127.0.0.1:${port}/`;
  return {
    owner: withCredentials(base, EMBEDDED_ROLES.owner, secrets.ownerPassword, EMBEDDED_DATABASE),
    authenticator: withCredentials(base, EMBEDDED_ROLES.authenticator, secrets.authenticatorPassword, EMBEDDED_DATABASE),
    root: withCredentials(base, "postgres", secrets.superuserPassword, "postgres"),
    shadow: withCredentials(base, EMBEDDED_ROLES.owner, secrets.ownerPassword, `${EMBEDDED_DATABASE}_shadow`),
    roles: {
      ...EMBEDDED_ROLES,
      anonymous: config.database.anonymousRole,
      user: config.database.userRole,
    },
  };
}

/** URLs from DATABASE_URL and friends; role names come from the connection strings. */
export function externalUrls(config: Config): DatabaseUrls {
  const { ownerUrl, authUrl, rootUrl, shadowUrl, anonymousRole, userRole } = config.database;
  if (!ownerUrl || !authUrl) throw new Error("externalUrls needs DATABASE_URL and AUTH_DATABASE_URL");
  return {
    owner: ownerUrl,
    authenticator: authUrl,
    root: rootUrl,
    shadow: shadowUrl,
    roles: {
      owner: decodeURIComponent(new URL(ownerUrl).username),
      authenticator: decodeURIComponent(new URL(authUrl).username),
      anonymous: anonymousRole,
      user: userRole,
    },
  };
}

/**
 * URLs for tools that run beside `npm start` (worker CLI, db scripts): the configured server, or
 * the embedded one that `npm start` is running.
 */
export function resolveRunningUrls(config: Config): DatabaseUrls {
  if (config.database.ownerUrl) return externalUrls(config);
  const state = readEmbeddedState(config.dataDir);
  if (!state) {
    throw new Error(
      `No DATABASE_URL is set and no embedded database has been created in ${config.dataDir} yet. ` +
        "Run `npm start` first (it creates and starts it), or set DATABASE_URL.",
    );
  }
  return embeddedUrls(config, state.port);
}
