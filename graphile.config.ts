// The preset for Graphile's tools (`npx graphile behavior debug`, `npx postgraphile`, and
// `npx graphile-worker` without -C): the same PostGraphile preset the app builds, plus the worker
// preset. Without DATABASE_URL it uses the embedded database that `npm start` runs.
// Grafast reads GRAPHILE_ENV when first imported, hence the dynamic imports below.
process.env.GRAPHILE_ENV ??= process.env.NODE_ENV === "production" ? "production" : "development";

const { default: pg } = await import("pg");
const { loadConfig } = await import("./src/config.ts");
const { resolveRunningUrls } = await import("./src/db/urls.ts");
const { makeGraphilePreset } = await import("./src/graphql/preset.ts");
const { createLogger } = await import("./src/logger.ts");
const { makeWorkerPreset } = await import("./src/worker/preset.ts");

const config = loadConfig(process.env, process.cwd(), "cli");
const urls = resolveRunningUrls(config);

const preset: GraphileConfig.Preset = {
  extends: [
    makeGraphilePreset({
      config,
      pool: new pg.Pool({ connectionString: urls.authenticator }),
      roles: urls.roles,
      logger: createLogger({ level: config.logLevel }),
    }),
    makeWorkerPreset({ concurrency: config.worker.concurrency, connectionString: urls.owner }),
  ],
};

export default preset;
