// Hostile GraphQL, measured: how fast each kind of abusive document is refused, whether health
// checks stay fast meanwhile, and what hundreds of distinct large documents do to memory.
//   node scripts/graphql-abuse.ts
import { sleep, spawnBackend, throwawayDatabase } from "./lib/stack.ts";

const { database, close } = await throwawayDatabase();
const backend = await spawnBackend({ urls: database.urls });
const url = `http://127.0.0.1:${backend.port}`;

const post = async (query: string) => {
  const started = performance.now();
  const res = await fetch(`${url}/graphql`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ query }) });
  const body = (await res.json()) as { errors?: Array<{ extensions?: { code?: string } }> };
  return { ms: performance.now() - started, status: res.status, code: body.errors?.[0]?.extensions?.code ?? "none" };
};
const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

const bomb = (levels: number) =>
  `{ plans { nodes { ...F0 } } } ${Array.from({ length: levels }, (_, i) =>
    i === levels - 1 ? `fragment F${i} on Plan { name }` : `fragment F${i} on Plan { ...F${i + 1} ...F${i + 1} }`,
  ).join(" ")}`;
const cases: Array<[string, string]> = [
  ["fragment bomb, 2^22 fields in 1 KB", bomb(22)],
  ["20,000 aliases of currentUser (689 KB)", `{ ${Array.from({ length: 20_000 }, (_, i) => `a${i}: currentUser { name }`).join(" ")} }`],
  ["4,000 aliases of tasks(first: 100)", `{ ${Array.from({ length: 4_000 }, (_, i) => `a${i}: tasks(first: 100) { nodes { title } }`).join(" ")} }`],
  ["400 aliases of tasks(first: 100)", `{ ${Array.from({ length: 400 }, (_, i) => `a${i}: tasks(first: 100) { nodes { title } }`).join(" ")} }`],
  ["first: 2147483647", "{ tasks(first: 2147483647) { nodes { title } } }"],
  ["4 nested pages of 100", "{ organizations(first: 100) { nodes { projects(first: 100) { nodes { tasks(first: 100) { nodes { comments(first: 100) { nodes { body } } } } } } } } }"],
];

console.log("Refusals (median of 10, client-side, including the HTTP round trip):");
for (const [name, query] of cases) {
  const runs = [];
  for (let i = 0; i < 10; i++) runs.push(await post(`${query}${" ".repeat(i)}`));
  console.log(`  ${name.padEnd(42)} ${median(runs.map((r) => r.ms)).toFixed(1).padStart(6)} ms  ${runs[0]!.status} ${runs[0]!.code}`);
}

// Health checks while bombs keep coming.
let bombing = true;
const bombs = (async () => {
  let i = 0;
  while (bombing) await post(`${bomb(24)}${" ".repeat(i++ % 50)}`);
})();
const health: number[] = [];
for (let i = 0; i < 50; i++) {
  const started = performance.now();
  await fetch(`${url}/healthz`);
  health.push(performance.now() - started);
  await sleep(20);
}
bombing = false;
await bombs;
console.log(`/healthz while bombs are refused: median ${median(health).toFixed(1)} ms, worst ${Math.max(...health).toFixed(1)} ms`);

const rss = async () => {
  const text = await (await fetch(`${url}/metrics`)).text();
  return Number(/^process_resident_memory_bytes (\d+)/m.exec(text)?.[1] ?? 0) / 1024 / 1024;
};
const before = await rss();
for (let i = 0; i < 600; i++) {
  // Distinct documents just under the 32 KB limit: each parses, validates and is cached.
  const fields = Array.from({ length: 40 }, (_, j) => `f${i}_${j}: plans(first: 1) { nodes { name description amount currency interval } }`).join(" ");
  await post(`{ ${fields} ${"#".repeat(Math.max(0, 31_000 - fields.length))} }`);
}
console.log(`RSS: ${before.toFixed(0)} MB before, ${(await rss()).toFixed(0)} MB after 600 distinct ~31 KB documents`);

backend.child.kill("SIGTERM");
await new Promise((resolve) => backend.child.once("exit", resolve));
await close();
