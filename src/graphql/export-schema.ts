// `npm run schema:export`: writes the GraphQL schema, sorted, to schema.graphql. CI compares the
// committed file with a fresh build, so a schema change always shows up in review.
process.env.GRAPHILE_ENV ??= "development";

const { writeFile } = await import("node:fs/promises");
const path = await import("node:path");
const { loadConfig } = await import("../config.ts");
const { openDatabase } = await import("../db/database.ts");
const { createPools } = await import("../db/pools.ts");
const { migrateDatabase, PROJECT_ROOT } = await import("../db/setup.ts");
const { createLogger } = await import("../logger.ts");
const { makeGraphilePreset } = await import("./preset.ts");
const { schemaSDL } = await import("./schema-sdl.ts");

const config = loadConfig(process.env, process.cwd(), "cli");
const logger = createLogger({ level: "warn" });
const database = await openDatabase(config, logger);
try {
  await migrateDatabase(database.urls, logger);
  const pools = createPools(database.urls, logger, { max: 2 });
  try {
    const sdl = await schemaSDL(makeGraphilePreset({ config, pool: pools.authenticator, roles: database.urls.roles, logger }));
    const file = path.join(PROJECT_ROOT, "schema.graphql");
    await writeFile(file, sdl);
    console.log(`Wrote ${path.relative(process.cwd(), file)} (${sdl.split("\n").length} lines).`);
  } finally {
    await pools.end();
  }
} finally {
  await database.stop();
}
