import pg from "pg";

/** A statement sent ahead of a query in the same round trip; its rows are not returned. */
export interface PreludeStatement {
  text: string;
  values: string[];
  /**
   * Prepared under this name the first time it runs on a connection, and from then on only bound
   * and executed: PostgreSQL parses and plans it once per connection, not once per request. Give
   * a name only to a text that never changes under it.
   */
  name?: string;
}

type QueryConfig = pg.QueryConfig & { rowMode?: "array" };
type Connection = {
  submittedNamedStatements: Record<string, string>;
  close(options: { type: "S"; name: string }): void;
  parse(options: { text: string; name: string; types: number[] }): void;
  bind(options: { portal: string; statement: string; values: unknown[] }): void;
  execute(options: { portal: string; rows: number }): void;
};
type Message = { fields: unknown[] };
type Failure = Error & { code?: string };
/** The parts of node-postgres's Query (not in its type declarations) this builds on. */
interface QueryInternals {
  name?: string;
  prepare(connection: Connection): void;
  handleDataRow(message: Message): void;
  handleCommandComplete(message: Message, connection: Connection): void;
  handleError(error: Error, connection: Connection): void;
}
const Query = pg.Query as unknown as new (config: object) => QueryInternals;

/**
 * The named prelude statements each connection has prepared. node-postgres credits a
 * ParseComplete to the active query's own name only, so the prelude keeps its own account: a
 * name counts as prepared once its statement has run to completion (its Parse succeeded).
 */
const preparedOn = new WeakMap<Connection, Set<string>>();

/**
 * One round trip for a query and the statements it needs before it: node-postgres sends a
 * query's Parse/Bind/Describe/Execute/Sync; this sends Parse/Bind/Execute of each prelude
 * statement first, in the same write, ahead of the one Sync. Statements before a Sync run in one
 * implicit transaction (PostgreSQL's extended query protocol), so a prelude's
 * `set_config(…, true)` holds for the query and ends with it: no BEGIN and no COMMIT/ROLLBACK
 * round trips. If a statement fails, PostgreSQL skips the rest up to the Sync and rolls back, so
 * a prelude statement that raises keeps the query from running at all.
 *
 * The prelude goes out from `prepare`, which node-postgres calls only once it has accepted the
 * query, inside its own cork. node-postgres keeps per-connection bookkeeping of named (prepared)
 * statements from the ParseComplete messages it sees, crediting each to the active query's name;
 * the prelude's own ParseCompletes must not count for the query's statement, so the query goes
 * nameless until its prelude is done.
 *
 * A named prelude statement is parsed only on a connection that has not run it yet, or whose
 * last run of it failed. Its Parse is preceded by a Close of the name (not an error if there is
 * no such statement), because a round trip that failed at that statement leaves unknown whether
 * its Parse went through.
 */
class PipelinedQuery extends Query {
  private readonly prelude: PreludeStatement[];
  private pending: number;
  private readonly statementName: string | undefined;

  constructor(config: QueryConfig, prelude: PreludeStatement[], callback: (error: Error | null, result?: pg.QueryResult) => void) {
    // `callback` is the node-postgres way a Query reports its end; extended mode keeps it one protocol.
    super({ ...config, queryMode: "extended", callback });
    this.prelude = prelude;
    this.pending = prelude.length;
    this.statementName = config.name;
  }

  override prepare(connection: Connection): void {
    let prepared = preparedOn.get(connection);
    if (!prepared) preparedOn.set(connection, (prepared = new Set()));
    for (const { text, values, name = "" } of this.prelude) {
      if (!name || !prepared.has(name)) {
        if (name) connection.close({ type: "S", name });
        connection.parse({ text, name, types: [] });
      }
      connection.bind({ portal: "", statement: name, values });
      connection.execute({ portal: "", rows: 0 });
    }
    super.prepare(connection);
    if (this.pending > 0) this.name = undefined;
  }

  override handleDataRow(message: Message): void {
    if (this.pending === 0) super.handleDataRow(message);
  }

  override handleCommandComplete(message: Message, connection: Connection): void {
    if (this.pending > 0) {
      const { name } = this.prelude[this.prelude.length - this.pending]!;
      if (name) preparedOn.get(connection)?.add(name);
      this.pending -= 1;
      if (this.pending === 0) this.name = this.statementName;
      return;
    }
    super.handleCommandComplete(message, connection);
  }

  override handleError(error: Failure, connection: Connection): void {
    if (this.pending > 0) {
      // A prelude statement failed: PostgreSQL skipped the query's Parse, so its name is not prepared.
      if (this.statementName) delete connection.submittedNamedStatements[this.statementName];
      // The failing statement is prepared afresh next time (its Parse may not have gone through,
      // or its plan may be one PostgreSQL no longer accepts, as after a migration changed what a
      // function returns); after "does not exist" (DEALLOCATE ALL, say), all of them are.
      const prepared = preparedOn.get(connection);
      const { name } = this.prelude[this.prelude.length - this.pending]!;
      if (name) prepared?.delete(name);
      if (error.code === "26000") prepared?.clear();
    }
    super.handleError(error, connection);
  }
}

/** Runs `config` on `client` after `prelude`, in one round trip and one implicit transaction. */
export function pipelinedQuery(client: pg.ClientBase, config: QueryConfig, prelude: PreludeStatement[]): Promise<pg.QueryResult> {
  return new Promise((resolve, reject) => {
    const query = new PipelinedQuery(config, prelude, (error, result) => (error ? reject(error) : resolve(result!)));
    client.query(query as unknown as pg.QueryConfig);
  });
}
