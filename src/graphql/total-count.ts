import { PgSelectStep, TYPES } from "postgraphile/@dataplan/pg";
import { constant, ConnectionStep, inhibitOnNull, lambda, Step, trap, TRAP_INHIBITED } from "postgraphile/grafast";
import { sql, type SQL } from "postgraphile/pg-sql2";

/** The connections root Query fields return (set at plan time, read by their totalCount). */
const rootConnections = new WeakSet<Step>();

type Selecting = { selectAndReturnIndex(fragment: SQL): number };
type Bound = number | null | undefined;
/** The page asks for no rows at all (`first: 0`, `last: 0`), so its window counts nothing. */
const pageCannotCount = ([first, last]: readonly Bound[]) => (first === 0 || last === 0 ? true : null);

/**
 * The totalCount of a root connection over a set-returning function (`searchTasks`), counted by
 * the statement that fetches its page.
 *
 * PostGraphile counts a root-level connection in a second statement: the page's conditions again,
 * without pagination. A function that cannot be inlined (`search_tasks` runs as its owner) then
 * runs twice in full: the search, and its ranking of every match. Here the page selects
 * `count(*) over ()` as well. A window is computed before LIMIT, so it counts every row the page's
 * conditions keep; and a function in FROM hands PostgreSQL its whole result before the first row
 * is read anyway, so the window costs little more than the page did. The count statement then
 * runs only when the page asks for no rows (`first: 0` or `last: 0`, known at run time); grafast
 * runs no SQL for an inhibited step.
 *
 * Left to PostGraphile's own plan:
 * - a page cut by `after`, `before` or `offset` (given at all, even as a variable): its rows, or
 *   none, say nothing of the rows before them, so the window would not be the count;
 * - a connection over a table or view: there an index can stop the page after its first rows (in
 *   the order asked for), and a window would read, join and keep every matching row instead;
 * - nested connections: their count is already a subquery of their parent's statement;
 * - a connection whose page is never fetched (no nodes, edges, pageInfo or page arguments).
 *   Every connection here has a page size (see makePageSizePlugin), so PostGraphile fetches a
 *   page even for `{ totalCount }` alone; that page now brings the count too.
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

export const TotalCountFromPagePlugin: GraphileConfig.Plugin = {
  name: "TotalCountFromPagePlugin",
  description: "A root function connection's totalCount from its page's statement (count(*) over ())",
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
            const eligible =
              rootConnections.has($connection) &&
              $page instanceof PgSelectStep &&
              $page.resource.parameters != null &&
              // (A literal null cursor sets no bound at all.)
              !$connection.getAfter() &&
              !$connection.getBefore() &&
              !$connection.getOffset();
            if (!eligible) return plan(...args);
            const bounds = [$connection.getFirst(), $connection.getLast()];
            // PostGraphile's own plan: the count statement, which the step inhibits when the page counts.
            return new PageTotalCountStep($connection, $page as PgSelectStep, plan(...args) as Step, bounds.map(($bound) => $bound ?? constant(null)));
          },
        };
      },
    },
  },
};
