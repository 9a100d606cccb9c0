import { PgSelectStep, TYPES } from "postgraphile/@dataplan/pg";
import { constant, ConnectionStep, inhibitOnNull, lambda, Step, trap, TRAP_INHIBITED } from "postgraphile/grafast";
import { sql, type SQL } from "postgraphile/pg-sql2";

/** The connections root Query fields return (set at plan time, read by their totalCount). */
const rootConnections = new WeakSet<Step>();

type Selecting = { selectAndReturnIndex(fragment: SQL): number };
type Bound = number | string | null | undefined;
/**
 * Whether the page's window count is not the whole collection's: the page is cut by a cursor or
 * an offset (its rows, or none, say nothing of the rows before them), or asks for no rows at all.
 */
const pageCannotCount = ([first, last, offset, before, after]: readonly Bound[]) =>
  before != null || after != null || (offset != null && offset !== 0) || first === 0 || last === 0 ? true : null;

/**
 * A root connection's totalCount, counted by the statement that fetches its page when it can be.
 *
 * PostGraphile counts a root-level connection (`tasks(filter: …)`, `searchTasks(…)`) in a second
 * statement, the page's conditions again with no pagination: PostgreSQL finds every matching row
 * twice, and a search function (which cannot be inlined) runs twice in full. Here the page selects
 * `count(*) over ()` as well; a window is computed before LIMIT, so it is the count of every row
 * the conditions match, and the rows the page reads to find its first and last are the ones counted.
 * The count statement still runs, and only then, when that window does not give the total: the
 * page is cut by `after`, `before` or `offset`, or asks for `first: 0`/`last: 0`. Otherwise its
 * step is inhibited (grafast runs no SQL for it).
 *
 * Decided in `optimize`, once the plan is known: a connection whose page is never fetched (no
 * nodes, edges, pageInfo or page arguments) keeps the count statement alone. Every connection
 * here has a page size (see makePageSizePlugin), so PostGraphile fetches a page even for
 * `{ totalCount }` alone; that page now brings the count, in one statement instead of two.
 *
 * Nested connections keep PostGraphile's own plan: their count is already a subquery of their
 * parent's statement, and a window there would read all of each parent's rows where an index
 * reads only a page.
 */
class PageTotalCountStep extends Step<number> {
  static $$export = { moduleName: "oddscenes", exportName: "PageTotalCountStep" };
  override isSyncAndSafe = false;
  /** The connection's step id (grafast forbids holding a step that is not a dependency). */
  private readonly connectionId: number;
  /** Dependency ids: a step added twice (say, `null` for two bounds) has one id. */
  private readonly pageDep: number;
  private readonly countDep: number;
  private readonly boundDeps: number[];

  constructor($connection: ConnectionStep<any, any, any, any, any>, $page: PgSelectStep, $count: Step, $bounds: Step[]) {
    super();
    this.connectionId = $connection.id;
    this.pageDep = this.addDependency($page);
    this.countDep = this.addDependency($count);
    this.boundDeps = $bounds.map(($bound) => this.addDependency($bound));
  }

  override optimize(): Step {
    const $page = this.getDep(this.pageDep, true) as PgSelectStep;
    const $count = this.getDep(this.countDep, true);
    // A page never fetched: the count statement alone.
    const neededCollection = (this.getStep(this.connectionId) as unknown as { neededCollection?: boolean }).neededCollection;
    if (!neededCollection || $page.mightHaveStream()) return $count;
    const $aggregate = ($count as unknown as { getParentStep(): { getClassStep(): PgSelectStep } }).getParentStep().getClassStep();
    // (@dataplan/pg's own way to add a column to a statement; its declarations mark it internal.)
    const index = ($page as unknown as Selecting).selectAndReturnIndex(sql`(count(*) over ())::text`);
    const $separately = lambda(
      this.boundDeps.map((depId) => this.getDep(depId)),
      pageCannotCount,
      true,
    );
    $aggregate.where(sql`${$aggregate.placeholder(inhibitOnNull($separately), TYPES.boolean)}`);
    return lambda(
      [$page, $separately, trap($count, TRAP_INHIBITED, { valueForInhibited: "NULL" })],
      ([page, separately, count]) => {
        if (separately) return Number(count);
        const first = Array.isArray(page?.items) ? (page.items[0] as unknown[] | undefined) : undefined;
        return Number(first?.[index] ?? 0);
      },
      true,
    );
  }

  override execute(): never {
    throw new Error("PageTotalCountStep is replaced when the plan is optimized");
  }
}

/** PostGraphile's own totalCount plan (PgConnectionTotalCountPlugin), for a connection of a PgSelect. */
const countStatement = ($connection: ConnectionStep<any, any, any, any, any>) =>
  ($connection.cloneSubplanWithoutPagination("aggregate") as PgSelectStep).singleAsRecord().select(sql`count(*)`, TYPES.bigint, false);

export const TotalCountFromPagePlugin: GraphileConfig.Plugin = {
  name: "TotalCountFromPagePlugin",
  description: "A root connection's totalCount from its page's statement (count(*) over ()) when that is the whole count",
  version: "1.0.0",
  after: ["PgConnectionTotalCountPlugin"],
  schema: {
    hooks: {
      GraphQLObjectType_fields_field(field, _build, context) {
        const plan = field.plan;
        if (!plan) return field;
        if (context.scope.isRootQuery) {
          return {
            ...field,
            plan(...args: Parameters<typeof plan>) {
              const $result = plan(...args);
              if ($result instanceof ConnectionStep) rootConnections.add($result);
              return $result;
            },
          };
        }
        if (!context.scope.isPgConnectionTotalCountField) return field;
        return {
          ...field,
          plan(...args: Parameters<typeof plan>) {
            const [$connection] = args as unknown as [ConnectionStep<any, any, any, any, any>];
            const $page = $connection.getSubplan();
            if (!rootConnections.has($connection) || !($page instanceof PgSelectStep)) return plan(...args);
            const bounds = [$connection.getFirst(), $connection.getLast(), $connection.getOffset(), $connection.getBefore(), $connection.getAfter()];
            return new PageTotalCountStep($connection, $page, countStatement($connection), bounds.map(($bound) => $bound ?? constant(null)));
          },
        };
      },
    },
  },
};
