import pg from "pg";

/** A statement sent ahead of a query in the same round trip; its rows are not returned. */
export interface PreludeStatement {
  text: string;
  values: string[];
}

type QueryConfig = pg.QueryConfig & { rowMode?: "array" };
type Connection = {
  submittedNamedStatements: Record<string, string>;
  parse(options: { text: string; name: string; types: number[] }): void;
  bind(options: { portal: string; statement: string; values: unknown[] }): void;
  execute(options: { portal: string; rows: number }): void;
};
type Message = { fields: unknown[] };
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
    for (const statement of this.prelude) {
      connection.parse({ text: statement.text, name: "", types: [] });
      connection.bind({ portal: "", statement: "", values: statement.values });
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
      this.pending -= 1;
      if (this.pending === 0) this.name = this.statementName;
      return;
    }
    super.handleCommandComplete(message, connection);
  }

  override handleError(error: Error, connection: Connection): void {
    // A prelude statement failed: PostgreSQL skipped the query's Parse, so its name is not prepared.
    if (this.pending > 0 && this.statementName) delete connection.submittedNamedStatements[this.statementName];
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
