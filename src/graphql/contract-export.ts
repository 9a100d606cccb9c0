import { writeFile } from "node:fs/promises";
import path from "node:path";
import { lexicographicSortSchema, printSchema } from "postgraphile/graphql";
import { openApiDocument } from "../http/openapi.ts";
import type { Logger } from "../logger.ts";

/**
 * Development watch mode (DEV_WATCH, set by `npm run dev`): every time PostGraphile builds the
 * schema (at start, and again whenever the database's schema changes, e.g. db:watch applying
 * current.sql), schema.graphql is rewritten, exactly as `npm run schema:export` would write it.
 */
export function makeSchemaExportPlugin(directory: string, logger: Logger): GraphileConfig.Plugin {
  const file = path.join(directory, "schema.graphql");
  return {
    name: "SchemaExportPlugin",
    version: "1.0.0",
    schema: {
      hooks: {
        finalize(schema) {
          const sdl = printSchema(lexicographicSortSchema(schema)) + "\n";
          writeFile(file, sdl).then(
            () => logger.info({ file }, "schema rebuilt; schema.graphql rewritten"),
            (error: unknown) => logger.warn({ err: error, file }, "could not write schema.graphql"),
          );
          return schema;
        },
      },
    },
  };
}

/** Rewrites openapi.json from the routes' zod schemas (the dev server restarts on every source change). */
export async function exportOpenApi(directory: string, logger: Logger): Promise<void> {
  const file = path.join(directory, "openapi.json");
  await writeFile(file, JSON.stringify(openApiDocument(), null, 2) + "\n").catch((error: unknown) =>
    logger.warn({ err: error, file }, "could not write openapi.json"),
  );
}
