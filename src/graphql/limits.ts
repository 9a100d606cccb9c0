import { access, constant, lambda, SafeError, type ConnectionStep, type Step } from "postgraphile/grafast";
import {
  getNamedType,
  GraphQLError,
  SchemaMetaFieldDef,
  TypeMetaFieldDef,
  isCompositeType,
  Kind,
  NoSchemaIntrospectionCustomRule,
  type FieldNode,
  type FragmentDefinitionNode,
  type GraphQLCompositeType,
  type GraphQLSchema,
  type SelectionSetNode,
  type ValidationContext,
  type ValidationRule,
  type ValueNode,
} from "postgraphile/graphql";

/** What one GraphQL document may ask for; every figure is configurable (GRAPHQL_MAX_*). */
export interface QueryLimits {
  /** Nested fields, counted from the operation (introspection's own fields not counted). */
  maxDepth: number;
  /** Aliased fields, after fragments are expanded. */
  maxAliases: number;
  /** Fields and fragment spreads, after fragments are expanded (a spread counts each time it is used). */
  maxFields: number;
  /**
   * Estimated field resolutions: every field counts once per row it is resolved for, and a
   * connection's `nodes`/`edges` multiply by its page size (`first`/`last`, or the largest page
   * when it is a variable or left out).
   */
  maxCost: number;
  /** Largest `first`/`last`; also the page size of a connection that names neither. */
  maxPageSize: number;
  /** Longest document accepted, in characters; longer ones are refused before parsing. */
  maxDocumentLength: number;
}

/** A refusal of the document as a whole: HTTP 400, `query_too_complex`, with the figure and the limit. */
function tooComplex(message: string, figure: number, limit: number): GraphQLError {
  return new GraphQLError(message, { extensions: { code: "query_too_complex", figure, limit } });
}

const pageArgument = (field: FieldNode, name: "first" | "last"): ValueNode | undefined =>
  field.arguments?.find((argument) => argument.name.value === name)?.value;

/**
 * Measures every operation of a document, fragments expanded, and refuses it once a figure is
 * over its limit. The walk stops at the first figure over its limit, so a fragment "bomb" costs no
 * more than the limit to refuse. Runs with the other validation rules, before anything is planned.
 */
export function queryLimitsRule(limits: QueryLimits): ValidationRule {
  return (context: ValidationContext) => {
    const schema: GraphQLSchema = context.getSchema();
    const fragments = new Map<string, FragmentDefinitionNode>();
    for (const definition of context.getDocument().definitions) {
      if (definition.kind === Kind.FRAGMENT_DEFINITION) fragments.set(definition.name.value, definition);
    }
    const pageSize = (field: FieldNode): number => {
      for (const name of ["first", "last"] as const) {
        const value = pageArgument(field, name);
        if (value?.kind === Kind.INT) return Math.max(0, Number(value.value));
      }
      return limits.maxPageSize;
    };

    return {
      OperationDefinition(operation) {
        const root = operation.operation === "query" ? schema.getQueryType() : operation.operation === "mutation" ? schema.getMutationType() : schema.getSubscriptionType();
        if (!root) return false;
        let fields = 0;
        let aliases = 0;
        let depth = 0;
        let cost = 0;
        let refusal: GraphQLError | undefined;
        const check = () => {
          if (fields > limits.maxFields) refusal = tooComplex(`The query asks for ${fields}+ fields (fragments expanded); the limit is ${limits.maxFields}.`, fields, limits.maxFields);
          else if (aliases > limits.maxAliases) refusal = tooComplex(`The query uses ${aliases}+ aliases; the limit is ${limits.maxAliases}.`, aliases, limits.maxAliases);
          else if (depth > limits.maxDepth) refusal = tooComplex(`The query nests ${depth}+ fields deep; the limit is ${limits.maxDepth}.`, depth, limits.maxDepth);
          else if (cost > limits.maxCost)
            refusal = tooComplex(
              `The query could resolve about ${cost.toLocaleString("en")} fields (each connection counted at its page size); the limit is ${limits.maxCost.toLocaleString("en")}. Ask for smaller pages (first) or fewer nested connections.`,
              cost,
              limits.maxCost,
            );
          return refusal !== undefined;
        };

        // Depth-first over an explicit stack: no recursion for a hostile document to exhaust.
        interface Frame {
          selectionSet: SelectionSetNode;
          type: GraphQLCompositeType;
          level: number;
          rows: number;
          /** The page size of the connection this selection belongs to, applied to nodes/edges. */
          page: number;
          introspection: boolean;
          spread: ReadonlySet<string>;
        }
        const stack: Frame[] = [{ selectionSet: operation.selectionSet, type: root, level: 1, rows: 1, page: 1, introspection: false, spread: new Set() }];
        while (stack.length > 0 && !refusal) {
          const frame = stack.pop()!;
          for (const selection of frame.selectionSet.selections) {
            if (selection.kind === Kind.FIELD) {
              const name = selection.name.value;
              const introspection = frame.introspection || name.startsWith("__");
              const rows = name === "nodes" || name === "edges" ? frame.rows * frame.page : frame.rows;
              fields += 1;
              if (selection.alias) aliases += 1;
              cost += rows;
              if (!introspection) depth = Math.max(depth, frame.level);
              if (check()) break;
              if (!selection.selectionSet) continue;
              // Introspection's fields are not among a type's own: look them up, so they are measured too.
              const definition =
                name === "__schema"
                  ? SchemaMetaFieldDef
                  : name === "__type"
                    ? TypeMetaFieldDef
                    : "getFields" in frame.type
                      ? frame.type.getFields()[name]
                      : undefined;
              const type = definition ? getNamedType(definition.type) : undefined;
              if (!type || !isCompositeType(type)) continue; // unknown field: another rule reports it
              const paginated = definition!.args.some((argument) => argument.name === "first");
              if (paginated) {
                for (const name of ["first", "last"] as const) {
                  const value = pageArgument(selection, name);
                  if (value?.kind === Kind.INT && Number(value.value) > limits.maxPageSize) {
                    refusal = tooComplex(
                      `\`${name}: ${value.value}\` is over the page limit of ${limits.maxPageSize}; ask for smaller pages and follow the cursors.`,
                      Number(value.value),
                      limits.maxPageSize,
                    );
                  }
                }
                if (refusal) break;
              }
              stack.push({
                selectionSet: selection.selectionSet,
                type,
                level: frame.level + 1,
                rows,
                page: paginated ? pageSize(selection) : 1,
                introspection,
                spread: frame.spread,
              });
            } else if (selection.kind === Kind.INLINE_FRAGMENT) {
              // Fragments count as fields do: a bomb of spreads with no fields in them costs too.
              fields += 1;
              if (check()) break;
              const condition = selection.typeCondition ? schema.getType(selection.typeCondition.name.value) : frame.type;
              stack.push({ ...frame, selectionSet: selection.selectionSet, type: condition && isCompositeType(condition) ? condition : frame.type });
            } else {
              fields += 1;
              if (check()) break;
              const fragment = fragments.get(selection.name.value);
              if (!fragment || frame.spread.has(fragment.name.value)) continue; // unknown or cyclic: other rules report it
              const condition = schema.getType(fragment.typeCondition.name.value);
              stack.push({
                ...frame,
                selectionSet: fragment.selectionSet,
                type: condition && isCompositeType(condition) ? condition : frame.type,
                spread: new Set([...frame.spread, fragment.name.value]),
              });
            }
          }
        }
        if (refusal) context.reportError(refusal);
        return false;
      },
    };
  };
}

/** Brackets nested deeper than this in a document or its variables are refused before parsing. */
const MAX_NESTING = 100;

/** The deepest nesting of {, [ and ( in a document, strings and comments skipped. */
function documentNesting(document: string): number {
  let depth = 0;
  let deepest = 0;
  for (let i = 0; i < document.length; i++) {
    const c = document[i];
    if (c === "#") {
      // A comment ends at any line terminator: \n, \r or both.
      while (i < document.length && document[i] !== "\n" && document[i] !== "\r") i++;
    } else if (c === '"') {
      if (document.startsWith('"""', i)) {
        // A block string ends at the first """ that is not escaped as \""".
        for (i += 3; i < document.length && !document.startsWith('"""', i); i++) if (document.startsWith('\\"""', i)) i += 3;
        i += 2;
      } else {
        for (i++; i < document.length && document[i] !== '"' && document[i] !== "\n" && document[i] !== "\r"; i++) if (document[i] === "\\") i++;
      }
    } else if (c === "{" || c === "[" || c === "(") {
      deepest = Math.max(deepest, ++depth);
    } else if (c === "}" || c === "]" || c === ")") {
      depth--;
    }
  }
  return deepest;
}

/** The deepest nesting of objects and arrays in a JSON value, without recursion. */
function valueNesting(value: unknown): number {
  let deepest = 0;
  const stack: Array<[unknown, number]> = [[value, 0]];
  while (stack.length > 0) {
    const [item, depth] = stack.pop()!;
    if (item === null || typeof item !== "object") continue;
    deepest = Math.max(deepest, depth + 1);
    if (deepest > MAX_NESTING) return deepest;
    for (const child of Object.values(item)) stack.push([child, depth + 1]);
  }
  return deepest;
}

/** A rule that words its errors without "Did you mean …?" (which would spell out the schema). */
const withoutSuggestions =
  (rule: ValidationRule): ValidationRule =>
  (context) =>
    rule(Object.create(context, { hideSuggestions: { value: true } }) as ValidationContext);

/**
 * Refuses documents before they cost anything: too long (413 `query_too_large`, before parsing,
 * so huge documents neither parse nor fill the caches), too deep, too wide or too expensive
 * (400 `query_too_complex`). Without introspection (production, unless GRAPHQL_INTROSPECTION),
 * `__schema`/`__type` are refused and errors suggest no field names.
 */
export function makeQueryLimitsPlugin(limits: QueryLimits, options: { introspection: boolean }): GraphileConfig.Plugin {
  return {
    name: "QueryLimitsPlugin",
    version: "1.0.0",
    schema: {
      hooks: {
        // Operation plans kept per schema (grafast's default is 500): bounded like the parse cache.
        GraphQLSchema(config) {
          return { ...config, extensions: { ...config.extensions, grafast: { ...config.extensions?.grafast, operationsCacheMaxLength: 200 } } };
        },
      },
    },
    grafserv: {
      middleware: {
        setPreset(next, event) {
          const rules = options.introspection ? event.validationRules : [...event.validationRules.map(withoutSuggestions), NoSchemaIntrospectionCustomRule];
          event.validationRules = [queryLimitsRule(limits), ...rules];
          return next();
        },
        processGraphQLRequestBody(next, event) {
          const query = event.body.query;
          if (typeof query === "string" && query.length > limits.maxDocumentLength) {
            throw new SafeError(`The query document is ${query.length} characters long; the limit is ${limits.maxDocumentLength}.`, {
              statusCode: 413,
              code: "query_too_large",
              figure: query.length,
              limit: limits.maxDocumentLength,
            });
          }
          // Parsing and validating recurse once per level: refuse absurd nesting before either.
          const nesting = Math.max(typeof query === "string" ? documentNesting(query) : 0, valueNesting(event.body.variableValues));
          if (nesting > MAX_NESTING) {
            throw new SafeError(`The request nests ${nesting} levels deep; the limit is ${MAX_NESTING}.`, {
              statusCode: 400,
              code: "query_too_complex",
              figure: nesting,
              limit: MAX_NESTING,
            });
          }
          return next();
        },
      },
    },
    grafast: {
      middleware: options.introspection
        ? {}
        : {
            execute(next, event) {
              event.args.hideSuggestions = true;
              return next();
            },
            subscribe(next, event) {
              event.args.hideSuggestions = true;
              return next();
            },
          },
    },
  };
}

type PageArgument = number | null | undefined;

/**
 * Caps page sizes on every connection: `first`/`last` over the limit are refused (also when they
 * come from variables, which validation cannot see), and a connection that names neither returns
 * at most `maxPageSize` rows (with pageInfo.hasNextPage telling there is more).
 */
export function makePageSizePlugin(maxPageSize: number): GraphileConfig.Plugin {
  const pageLimits = ([first, last]: readonly [PageArgument, PageArgument]) => {
    for (const [name, value] of [
      ["first", first],
      ["last", last],
    ] as const) {
      if (value != null && value < 0) {
        throw new SafeError(`\`${name}\` must not be negative.`, { code: "validation_failed" });
      }
      if (value != null && value > maxPageSize) {
        throw new SafeError(`\`${name}: ${value}\` is over the page limit of ${maxPageSize}; ask for smaller pages and follow the cursors.`, {
          code: "query_too_complex",
          figure: value,
          limit: maxPageSize,
        });
      }
    }
    return first == null && last == null ? { first: maxPageSize, last: null } : { first: first ?? null, last: last ?? null };
  };
  // Which connections have `first`/`last` (some function connections have no `last`): known once
  // the arguments hook has run, which is after the field hook but before any planning.
  const pageArgs = new Map<string, Set<string>>();
  return {
    name: "PageSizePlugin",
    version: "1.0.0",
    after: ["PgFirstLastBeforeAfterArgsPlugin"],
    schema: {
      hooks: {
        GraphQLObjectType_fields_field_args(args, _build, context) {
          if (!context.scope.isPgFieldConnection) return args;
          const present = new Set<string>();
          for (const name of ["first", "last"]) {
            if (!args[name]) continue;
            present.add(name);
            args[name] = { ...args[name], applyPlan: undefined };
          }
          pageArgs.set(`${context.Self.name}.${context.scope.fieldName}`, present);
          return args;
        },
        GraphQLObjectType_fields_field(field, _build, context) {
          const plan = field.plan;
          if (!context.scope.isPgFieldConnection || !plan) return field;
          const key = `${context.Self.name}.${context.scope.fieldName}`;
          return {
            ...field,
            plan(...planArgs: Parameters<typeof plan>) {
              const $connection = plan(...planArgs) as ConnectionStep<any, any, any, any, any, any>;
              const present = pageArgs.get(key) ?? new Set<string>();
              const fieldArgs = planArgs[1];
              const raw = (name: string) => (present.has(name) ? (fieldArgs.getRaw(name) as Step<PageArgument>) : constant(null));
              const $limits = lambda([raw("first"), raw("last")], pageLimits);
              $connection.setFirst(access($limits, "first"));
              if (present.has("last")) $connection.setLast(access($limits, "last"));
              return $connection;
            },
          };
        },
      },
    },
  };
}
