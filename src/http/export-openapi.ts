// `npm run openapi:export`: writes the REST API's OpenAPI document to openapi.json. A test
// compares the committed file with a fresh build, so a change to a route always shows up in review.
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { PROJECT_ROOT } from "../db/setup.ts";
import { openApiDocument } from "./openapi.ts";

const file = path.join(PROJECT_ROOT, "openapi.json");
const text = JSON.stringify(openApiDocument(), null, 2) + "\n";
await writeFile(file, text);
console.log(`Wrote ${path.relative(process.cwd(), file)} (${Object.keys(openApiDocument().paths ?? {}).length} paths).`);
