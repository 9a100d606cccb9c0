import type pg from "pg";
import { makeWithPgClientViaPgClientAlreadyInTransaction, type NodePostgresPgClient } from "postgraphile/adaptors/pg";
import type { WithPgClient as AnyWithPgClient } from "postgraphile/@dataplan/pg";
import type { RequestIdentity } from "../db/request-role.ts";
import { sessionEnded } from "../auth/authenticate.ts";
import { pipelinedQuery, type PreludeStatement } from "./pipelined-query.ts";

type WithPgClient = AnyWithPgClient<NodePostgresPgClient>;
type Locals = { locals: Record<string, unknown> };
const REQUEST = "graphqlRequest";

/**
 * One connection, and one round trip per SQL statement, for a GraphQL query over HTTP.
 *
 * PostGraphile's default wraps every SQL statement of an operation in a transaction of its own
 * (begin, set_config, the statement, commit: four round trips), on a connection of its own when
 * steps run side by side. Here the operation takes one connection, when its first statement
 * runs, and each statement goes to PostgreSQL in a single round trip together with the request's
 * settings (role, claims, statement_timeout) as `set_config(…, true)` ahead of it, in the same
 * implicit transaction (src/graphql/pipelined-query.ts). The first also checks that the caller's
 * session is live, so a signed-out token is answered 401 session_ended without a separate
 * lookup. Each statement sees its own snapshot, as with PostGraphile's default (a nested
 * connection's page and totalCount are one statement, and so are a root-level search's, see
 * total-count.ts; a root-level table list's are two). The connection goes back to the pool
 * before the response is sent.
 *
 * Mutations: see pipelinedTransactions. Subscriptions (WebSockets) keep PostGraphile's default.
 */
export interface RequestConnection {
  withPgClient: WithPgClient;
  /** Returns the connection to the pool; safe to call more than once. */
  end(): Promise<void>;
}

/** The text of `set_config(…, true)` of n settings, and its prepared statement's name. */
const settingsTexts = new Map<number, { text: string; name: string }>();

/** `set_config(…, true)` of every setting, as one statement, prepared once per connection. */
function settingsStatement(settings: Record<string, string>): PreludeStatement {
  const values = Object.entries({ ...settings, jit_optimize_above_cost: "-1" }).flat();
  const count = values.length / 2;
  let statement = settingsTexts.get(count);
  if (!statement) {
    const calls = Array.from({ length: count }, (_, i) => `pg_catalog.set_config($${2 * i + 1}, $${2 * i + 2}, true)`);
    settingsTexts.set(count, (statement = { text: `select ${calls.join(", ")}`, name: `oddscenes_settings_${count}` }));
  }
  return { ...statement, values };
}

/**
 * Whether a request's session has been found live yet: the first statement of a signed-in
 * caller's request checks it (in the same round trip, raising OS401 session_ended, so the
 * statement behind it never runs); later ones need not. An operation that ran no SQL at all is
 * checked on its own before its answer goes out (see makeRequestConnectionPlugin).
 */
export class SessionCheck {
  private readonly identity: RequestIdentity;
  private readonly settings: Record<string, string>;
  private checked: boolean;
  constructor(identity: RequestIdentity, settings: Record<string, string>) {
    this.identity = identity;
    this.settings = settings;
    this.checked = identity.role !== "user";
  }
  /** The prelude statement that checks, if one is still needed. */
  statement(): PreludeStatement | undefined {
    return this.checked
      ? undefined
      : // No columns, so no result type a migration could change under the prepared statement.
        { text: "select from app_hidden.require_live_session($1::uuid)", values: [this.identity.claims.user_id ?? ""], name: "oddscenes_session_check" };
  }
  /** A round trip with the check in it succeeded. */
  passed(): void {
    this.checked = true;
  }
  /** Checks now if no statement has: false if the session has ended. */
  async verify(pool: pg.Pool): Promise<boolean> {
    const check = this.statement();
    if (!check) return true;
    const client = await pool.connect();
    let broken: Error | undefined;
    try {
      // As the query itself, not a prelude statement: unnamed, so node-postgres's account of
      // prepared statements and the prelude's never disagree about the name.
      await pipelinedQuery(client, { text: check.text, values: check.values }, [settingsStatement(this.settings)]);
      this.passed();
      return true;
    } catch (error) {
      broken = brokenBy(error);
      if (refusal(error) !== error) return false;
      throw error;
    } finally {
      client.release(broken);
    }
  }
}

/** The check refused: the API's own 401, not the database error. */
const refusal = (error: unknown) => (error instanceof Error && "code" in error && error.code === "OS401" && "detail" in error && error.detail === "session_ended" ? sessionEnded() : error);

type AdaptorQuery = pg.QueryConfig & { rowMode?: "array" };
/**
 * The connection is unusable after this error: it failed other than with PostgreSQL's answer
 * (the socket broke, say), or a prepared statement node-postgres will go on using is no good:
 * gone ("does not exist": DEALLOCATE ALL or DISCARD ALL ran on it), or planned for a result a
 * migration has since changed ("cached plan must not change result type", on every run).
 */
function brokenBy(error: unknown): Error | undefined {
  if (!(error instanceof Error)) return new Error(String(error));
  if (!("severity" in error)) return error;
  const { code } = error as { code?: string };
  const staleResult = code === "0A000" && error.message.includes("cached plan must not change result type");
  return code === "26000" || staleResult ? error : undefined;
}

/** A client for PostGraphile's adaptor whose statements go through `send`. */
function adaptorClient(client: pg.PoolClient, send: (config: AdaptorQuery) => Promise<pg.QueryResult>): pg.PoolClient {
  return {
    get connection() {
      return (client as unknown as { connection: unknown }).connection;
    },
    escapeIdentifier: (value: string) => client.escapeIdentifier(value),
    escapeLiteral: (value: string) => client.escapeLiteral(value),
    addListener: (event: "notice", listener: (...args: unknown[]) => void) => client.addListener(event, listener),
    removeListener: (event: "notice", listener: (...args: unknown[]) => void) => client.removeListener(event, listener),
    // The adaptor's own housekeeping (deallocating prepared statements) is a plain string.
    query: (config: string | AdaptorQuery) => (typeof config === "string" ? client.query(config) : send(config)),
  } as unknown as pg.PoolClient;
}

export function requestConnection(pool: pg.Pool, session: SessionCheck, settings: Record<string, string>): RequestConnection {
  // A query writes nothing, as it did in PostGraphile's own read-only transactions.
  const prelude = settingsStatement({ ...settings, transaction_read_only: "on" });
  let opened: Promise<{ client: pg.PoolClient; withPgClient: WithPgClient }> | undefined;
  let ended = false;
  /** The statements run one after another; this settles when the last one so far has. */
  let tail: Promise<unknown> = Promise.resolve();
  let broken: Error | undefined;

  const open = async () => {
    const client = await pool.connect();
    const adaptor = adaptorClient(client, async (config) => {
      const check = session.statement();
      try {
        const result = await pipelinedQuery(client, config, check ? [prelude, check] : [prelude]);
        if (check) session.passed();
        return result;
      } catch (error) {
        broken ??= brokenBy(error);
        throw refusal(error);
      }
    });
    return { client, withPgClient: makeWithPgClientViaPgClientAlreadyInTransaction(adaptor, true) };
  };

  return {
    async withPgClient<T>(pgSettings: unknown, callback: (client: NodePostgresPgClient) => T | Promise<T>) {
      if (ended) throw new Error("the request's connection has already been returned");
      // Every statement runs with the request's settings: code asking for others (say, none, to
      // run as the authenticator) must use a pool of its own, not be given these silently.
      if (pgSettings !== settings) throw new Error("a GraphQL query's statements run with the request's pgSettings only");
      // One at a time, by our own queue: the adaptor's would hand one statement's failure on to
      // the statements waiting behind it. The settings go with every statement (see above).
      const result = tail.then(() => (opened ??= open())).then(({ withPgClient }) => withPgClient(null, callback));
      tail = result.catch(() => undefined);
      return result;
    },
    async end() {
      if (ended) return;
      ended = true;
      await tail;
      const connection = await opened?.catch(() => undefined);
      connection?.client.release(broken);
    },
  };
}

/**
 * `withPgClient` for a mutation over HTTP: like PostGraphile's default, each call is a
 * transaction of its own on a connection of its own, committed before its result is reported;
 * but BEGIN, the settings and (on the request's first statement) the session check travel in one
 * round trip with the first statement, instead of two or three round trips before it.
 */
export function pipelinedTransactions(pool: pg.Pool, session: SessionCheck, fallback: WithPgClient): WithPgClient {
  return (async (pgSettings: Record<string, string | undefined> | null, callback: (client: NodePostgresPgClient) => unknown) => {
    const settings = Object.fromEntries(Object.entries(pgSettings ?? {}).filter((entry): entry is [string, string] => entry[1] != null));
    // Without settings PostGraphile runs no transaction at all: so be it.
    if (Object.keys(settings).length === 0) return fallback(pgSettings, callback as never);
    const prelude = settingsStatement(settings);
    const client = await pool.connect();
    let began = false;
    let broken: Error | undefined;
    const adaptor = adaptorClient(client, async (config) => {
      try {
        if (began) return await client.query(config);
        began = true;
        const check = session.statement();
        const result = await pipelinedQuery(client, config, [{ text: "begin", values: [] }, prelude, ...(check ? [check] : [])]);
        if (check) session.passed();
        return result;
      } catch (error) {
        broken ??= brokenBy(error);
        throw refusal(error);
      }
    });
    try {
      const result = await makeWithPgClientViaPgClientAlreadyInTransaction(adaptor, true)(null, callback as never);
      // COMMIT of a transaction a failed statement aborted answers ROLLBACK, without an error.
      if (began && (await client.query("commit")).command !== "COMMIT") throw new Error("the mutation's transaction was rolled back: one of its statements failed");
      return result;
    } catch (error) {
      if (began) await client.query("rollback").catch((rollbackError: unknown) => void (broken ??= brokenBy(rollbackError)));
      throw error;
    } finally {
      client.release(broken);
    }
  }) as WithPgClient;
}

/** Remembers a request's connection and session check on the response, for the plugin below. */
export function attachRequest(res: Locals, request: { connection?: RequestConnection; session: SessionCheck }): void {
  res.locals[REQUEST] = request;
}

function requestOf(res: Locals | undefined): { connection?: RequestConnection; session: SessionCheck } | undefined {
  return res?.locals[REQUEST] as { connection?: RequestConnection; session: SessionCheck } | undefined;
}

/**
 * Returns a query's connection as soon as its result is ready, before the response is written;
 * and refuses (401 session_ended) the answer of a signed-in caller's operation that ran no SQL
 * (`{ __typename }`, introspection) if the session has ended, as every other operation is.
 */
export function makeRequestConnectionPlugin(pool: pg.Pool): GraphileConfig.Plugin {
  return {
    name: "RequestConnectionPlugin",
    version: "1.0.0",
    grafserv: {
      middleware: {
        async processRequest(next, event) {
          // Known once next() has built the operation's context.
          const request = () => requestOf(event.requestDigest.requestContext.expressv4?.res);
          let result;
          try {
            result = await next();
          } finally {
            await request()?.connection?.end();
          }
          const session = request()?.session;
          if (session && !(await session.verify(pool))) {
            const { message } = sessionEnded();
            return {
              type: "json",
              statusCode: 401,
              headers: { "content-type": "application/json; charset=utf-8" },
              json: { errors: [{ message, extensions: { code: "session_ended" } }] },
            };
          }
          return result;
        },
      },
    },
  };
}
