import { object, SafeError, sideEffect, trap, TRAP_ERROR, type ObjectStep, type Step } from "postgraphile/grafast";

/** What @dataplan/pg's delete step fails with when no row matched (it is not a database error). */
const NOTHING_DELETED = /^No values were deleted in collection/;

/** "TaskComment" → "Task comment", for messages people read. */
function humanize(typeName: string): string {
  const words = typeName.replace(/([a-z0-9])([A-Z])/g, "$1 $2").toLowerCase();
  return words.charAt(0).toUpperCase() + words.slice(1);
}

/**
 * PostGraphile's update and delete mutations touch no row when row-level security hides it or no
 * such row exists: updates then answer `null` with no error, deletes a masked internal error.
 * Both become `not_found`, worded the same for a made-up id and for a row the caller may not
 * touch, so the answer reveals nothing.
 */
export const MissingRowIsNotFoundPlugin: GraphileConfig.Plugin = {
  name: "MissingRowIsNotFoundPlugin",
  version: "1.0.0",
  schema: {
    hooks: {
      GraphQLObjectType_fields_field(field, build, context) {
        const { isPgUpdateMutation, isPgDeleteMutation, pgFieldResource } = context.scope;
        const plan = field.plan;
        if (!(isPgUpdateMutation || isPgDeleteMutation) || !plan || !pgFieldResource) return field;
        const thing = humanize(build.inflection.tableType(pgFieldResource.codec));
        const message = `${thing} not found, or you may not ${isPgUpdateMutation ? "change" : "delete"} it.`;
        return {
          ...field,
          plan(...args: Parameters<typeof plan>) {
            const $payload = plan(...args) as ObjectStep<{ result: Step }>;
            const $result = $payload.get("result");
            sideEffect(trap($result, TRAP_ERROR), (row: unknown) => {
              if (row instanceof Error && !NOTHING_DELETED.test(row.message)) throw row;
              if (row == null || row instanceof Error) throw new SafeError(message, { code: "not_found" });
            });
            // Created after the side effect, so the payload fails with it.
            return object({ result: $result });
          },
        };
      },
    },
  },
};
