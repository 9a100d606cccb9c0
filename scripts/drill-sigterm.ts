// Fault drill: a deploy stops an instance (SIGTERM) while it is under load.
//   node scripts/drill-sigterm.ts
// 32 kept-alive clients send GraphQL queries to a backend process; after 2 s it gets SIGTERM. A
// client told `Connection: close` moves on (as a load balancer would once /readyz fails). Printed:
// answers by status, requests that got no answer at all (resets: none may appear), how long the
// process took to exit and its exit code.
import { formatCounts, load, sleep, spawnBackend, throwawayDatabase } from "./lib/stack.ts";

const { database, close } = await throwawayDatabase();
const backend = await spawnBackend({ urls: database.urls });

let moved = 0;
const traffic = load(backend.port, 32, () => ({ method: "POST", path: "/graphql", body: JSON.stringify({ query: "{ plans { nodes { name amount } } }" }) }));
await sleep(2000);
const before = traffic.result.total;
const signalledAt = Date.now();
backend.child.kill("SIGTERM");
const exitCode = await new Promise<number | null>((resolve) => backend.child.once("exit", (code) => resolve(code)));
const exitedMs = Date.now() - signalledAt;
await sleep(200);
const stats = await traffic.stop();
// Once the process is gone, new connections are refused: that is the load balancer's cue, not a loss.
const refusedAfterExit = stats.failures.get("ECONNREFUSED") ?? 0;
stats.failures.delete("ECONNREFUSED");
moved = refusedAfterExit;

console.log("SIGTERM under 32 kept-alive connections:");
console.log(`  answered before the signal: ${before}; after it: ${stats.total - before - moved}`);
console.log(`  answers by status: ${formatCounts(stats.byStatus)}`);
console.log(`  requests cut without an answer (reset, hang up): ${formatCounts(stats.failures)}`);
console.log(`  new connections refused once it stopped listening: ${refusedAfterExit}`);
console.log(`  exited ${exitedMs} ms after SIGTERM with code ${exitCode}`);
await close();
process.exit(stats.failures.size === 0 && exitCode === 0 ? 0 : 1);
