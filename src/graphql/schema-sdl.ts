import { makeSchema } from "postgraphile";
import { lexicographicSortSchema, printSchema } from "postgraphile/graphql";

/** The schema as sorted SDL: what `schema.graphql` holds and CI compares against. */
export async function schemaSDL(preset: GraphileConfig.Preset): Promise<string> {
  const { schema } = await makeSchema(preset);
  return printSchema(lexicographicSortSchema(schema)) + "\n";
}
