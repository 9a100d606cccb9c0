// Fault drill: the database restarts, then goes away for a while, under load.
//   node scripts/drill-database.ts
// A backend runs as its own process against a throwaway embedded PostgreSQL, reached through a TCP
// proxy. 32 kept-alive clients send GraphQL and REST requests while the database first kills every
// connection (what a restart does to clients: 57P01) and then is unreachable for 3 s. Printed:
// answers by status in each phase (no 500 may appear: an unreachable database is 503 with
// Retry-After), and how long after the database is back the first 200 arrives.
import { startTcpProxy } from "./lib/tcp-proxy.ts";
import { formatCounts, load, sleep, spawnBackend, throwawayDatabase, via } from "./lib/stack.ts";

const { database, close } = await throwawayDatabase();
const target = new URL(database.urls.owner);
const proxy = await startTcpProxy({ host: target.hostname, port: Number(target.port) });
const backend = await spawnBackend({ urls: via(database.urls, proxy.port) });
const root = new (await import("pg")).default.Pool({ connectionString: database.urls.root, max: 1 });

const requests = [
  () => ({ method: "POST", path: "/graphql", body: JSON.stringify({ query: "{ plans { nodes { name } } }" }) }),
  () => ({ method: "POST", path: "/auth/refresh", body: JSON.stringify({ refreshToken: "not-a-token-of-ours-0123456789abcdef" }) }),
];
let turn = 0;
const traffic = load(backend.port, 32, () => requests[turn++ % requests.length]!());

const phase = async (name: string, ms: number, action?: () => Promise<void>) => {
  const before = new Map(traffic.result.byStatus);
  const failuresBefore = new Map(traffic.result.failures);
  await action?.();
  await sleep(ms);
  const diff = (now: Map<string, number>, then: Map<string, number>) =>
    new Map([...now].map(([key, n]) => [key, n - (then.get(key) ?? 0)] as [string, number]).filter(([, n]) => n > 0));
  console.log(`  ${name.padEnd(34)} answers ${formatCounts(diff(traffic.result.byStatus, before))}; no answer ${formatCounts(diff(traffic.result.failures, failuresBefore))}`);
};

console.log("Database restart and outage under 32 kept-alive connections:");
await phase("steady (2 s)", 2000);
await phase("every connection killed (57P01)", 2000, async () => {
  await root.query("select pg_terminate_backend(pid) from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()");
});
const downAt = Date.now();
await phase("database unreachable (3 s)", 3000, () => proxy.cut());
await proxy.restore();
const backAt = Date.now();
await phase("database back (3 s)", 3000);
const stats = await traffic.stop();
const back = backAt - traffic.started;
const firstOk = stats.timeline.find((entry) => entry.status === "200" && entry.at >= back);
const fiveHundreds = [...stats.byStatus].filter(([status]) => status.startsWith("5") && status !== "503");
console.log(`  total ${stats.total} requests; 5xx other than 503: ${fiveHundreds.length ? formatCounts(new Map(fiveHundreds)) : "none"}`);
console.log(`  database away ${backAt - downAt} ms; first 200 ${firstOk ? `${firstOk.at - back} ms after it was back` : "never"}`);

backend.child.kill("SIGTERM");
await new Promise((resolve) => backend.child.once("exit", resolve));
await root.end();
await proxy.close();
await close();
process.exit(fiveHundreds.length ? 1 : 0);
