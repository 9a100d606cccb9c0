import pg from "pg";
import type { Logger } from "../logger.ts";
import type { DatabaseUrls } from "./urls.ts";

export interface Pools {
  /** Owner: security definer work, the worker and health checks. Never runs request SQL. */
  owner: pg.Pool;
  /** Authenticator: every GraphQL request, switched to the request's role. */
  authenticator: pg.Pool;
  end(): Promise<void>;
}

export function createPools(urls: DatabaseUrls, logger: Logger, options: { max?: number } = {}): Pools {
  const make = (connectionString: string, name: string) => {
    // A database that drops packets must not hold requests for the OS's two-minute TCP timeout:
    // after 5 s they answer 503 database_unavailable.
    const pool = new pg.Pool({ connectionString, max: options.max ?? 10, application_name: `oddscenes:${name}`, connectionTimeoutMillis: 5000 });
    // An idle client losing its connection must not crash the process; the pool replaces it.
    pool.on("error", (error) => logger.warn({ err: error, pool: name }, "idle database connection failed"));
    pool.on("connect", (client) => {
      client.on("error", (error) => logger.warn({ err: error, pool: name }, "database connection failed"));
    });
    return pool;
  };
  const owner = make(urls.owner, "owner");
  const authenticator = make(urls.authenticator, "authenticator");
  return {
    owner,
    authenticator,
    end: async () => {
      await Promise.all([owner.end(), authenticator.end()]);
    },
  };
}
