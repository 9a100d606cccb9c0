import type pg from "pg";
import type { Config } from "../config.ts";

/** How long one request's SQL may run, per request role (anonymous requests get less). */
const STATEMENT_TIMEOUT = { anonymous: "3s", user: "8s" } as const;

/** The caller of a request, as the database sees it: a role and verified claims. */
export interface RequestIdentity {
  role: "anonymous" | "user";
  claims: Record<string, string>;
}

export const ANONYMOUS: RequestIdentity = { role: "anonymous", claims: {} };

/** Identity of a signed-in user from their verified access token. */
export function userIdentity(subject: { userId: string; sessionId: string }): RequestIdentity {
  return { role: "user", claims: { user_id: subject.userId, session_id: subject.sessionId } };
}

/** What the server tells the database about every request, besides who makes it. */
export interface RequestPolicy {
  roles: { anonymous: string; user: string };
  /** SQL functions refuse unverified users where the rules need a confirmed address. */
  requireVerifiedEmail: boolean;
  /** How long a past_due subscription keeps its paid plan's limits. */
  pastDueGraceSeconds: number;
}

/** The policy as configured: every request of this server runs under it. */
export function requestPolicy(config: Pick<Config, "auth" | "billing">, roles: RequestPolicy["roles"]): RequestPolicy {
  return { roles, requireVerifiedEmail: config.auth.requireVerifiedEmail, pastDueGraceSeconds: config.billing.pastDueGraceSeconds };
}

/**
 * Transaction-local settings a request runs under: its database role, `jwt.claims.*`, and the
 * server's policy as `app.*` settings that SQL reads.
 */
export function pgSettingsFor(identity: RequestIdentity, policy: RequestPolicy): Record<string, string> {
  const settings: Record<string, string> = {
    role: identity.role === "user" ? policy.roles.user : policy.roles.anonymous,
    statement_timeout: STATEMENT_TIMEOUT[identity.role],
    "app.require_verified_email": policy.requireVerifiedEmail ? "on" : "off",
    "app.past_due_grace_seconds": String(policy.pastDueGraceSeconds),
  };
  for (const [name, value] of Object.entries(identity.claims)) settings[`jwt.claims.${name}`] = value;
  return settings;
}

/**
 * Runs `fn` in a transaction on the authenticator pool as the request's role, exactly as
 * PostGraphile does, so row-level security decides what REST routes see too.
 */
export async function withRequestRole<T>(
  pool: pg.Pool,
  settings: Record<string, string>,
  fn: (client: pg.PoolClient) => Promise<T>,
): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query("begin");
    await client.query("select pg_catalog.set_config(key, value, true) from json_each_text($1::json)", [JSON.stringify(settings)]);
    const result = await fn(client);
    await client.query("commit");
    return result;
  } catch (error) {
    await client.query("rollback").catch(() => {});
    throw error;
  } finally {
    client.release();
  }
}
