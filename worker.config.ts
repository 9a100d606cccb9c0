// Preset for the graphile-worker CLI: `npm run worker` (and `npm run worker -- --once`).
// It reads the same environment as `npm start`; without DATABASE_URL it joins the embedded
// database that `npm start` runs. It does not load PostGraphile.
import { loadConfig } from "./src/config.ts";
import { resolveRunningUrls } from "./src/db/urls.ts";
import { makeWorkerPreset } from "./src/worker/preset.ts";

const config = loadConfig();

const preset: GraphileConfig.Preset = makeWorkerPreset({
  concurrency: config.worker.concurrency,
  connectionString: resolveRunningUrls(config).owner,
});

export default preset;
