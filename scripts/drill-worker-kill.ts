// Fault drill: a worker is killed (kill -9) with emails in flight.
//   node scripts/drill-worker-kill.ts
// 20 emails are queued; a worker process sending to a mail server that never answers takes some
// and is killed. A second worker, sending to a working mail server, is started. Printed: how many
// jobs the dead worker held, how long until every email arrived (graphile-worker alone: 4 hours),
// and how many arrived twice.
import type { AddressInfo } from "node:net";
import { simpleParser } from "mailparser";
import pg from "pg";
import { SMTPServer } from "smtp-server";
import { sleep, spawnEntry, throwawayDatabase } from "./lib/stack.ts";

const EMAILS = 20;
const { database, close } = await throwawayDatabase();
const pool = new pg.Pool({ connectionString: database.urls.owner, max: 2 });

const received: string[] = [];
const smtp = (answer: boolean) =>
  new SMTPServer({
    authOptional: true,
    disabledCommands: ["STARTTLS"],
    logger: false,
    onData(stream, _session, callback) {
      if (!answer) return void stream.resume(); // takes the message, never answers
      simpleParser(stream).then((message) => {
        received.push(message.to && !Array.isArray(message.to) ? message.to.text : "");
        callback();
      }, callback);
    },
  });
const listen = async (server: SMTPServer) => {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return `smtp://127.0.0.1:${(server.server.address() as AddressInfo).port}`;
};
const stalling = smtp(false);
const working = smtp(true);
const [stallingUrl, workingUrl] = [await listen(stalling), await listen(working)];

for (let i = 0; i < EMAILS; i++) {
  await pool.query("select graphile_worker.add_job('send_email', $1::json)", [
    JSON.stringify({ to: `user${i}@example.com`, template: "password_changed", variables: { name: `User ${i}` } }),
  ]);
}
const doomed = spawnEntry("src/worker/main.ts", database.urls, { SMTP_URL: stallingUrl, WORKER_CONCURRENCY: "4" });
const lockedBy = async () => (await pool.query("select locked_by, count(*)::int as n from graphile_worker.jobs where locked_at is not null group by 1")).rows;
for (let waited = 0; (await lockedBy()).length === 0; waited += 100) {
  if (waited > 30_000) throw new Error(`the first worker took no job:\n${doomed.output()}`);
  await sleep(100);
}
const [held] = await lockedBy();
doomed.child.kill("SIGKILL");
await new Promise((resolve) => doomed.child.once("exit", resolve));
const killedAt = Date.now();

const survivor = spawnEntry("src/worker/main.ts", database.urls, { SMTP_URL: workingUrl, WORKER_CONCURRENCY: "4" });
while (new Set(received).size < EMAILS) {
  if (Date.now() - killedAt > 180_000) throw new Error(`only ${new Set(received).size} of ${EMAILS} emails arrived:\n${survivor.output()}`);
  await sleep(200);
}
const allInMs = Date.now() - killedAt;
await sleep(1000); // anything sent twice would arrive now
const twice = received.length - new Set(received).size;

console.log("kill -9 of a worker with emails in flight:");
console.log(`  the killed worker held ${held!.n} job(s) (${held!.locked_by})`);
console.log(`  every one of the ${EMAILS} emails arrived ${allInMs} ms after the kill (a worker is presumed dead after 30 s of silence)`);
console.log(`  emails that arrived twice: ${twice}`);

survivor.child.kill("SIGTERM");
await new Promise((resolve) => survivor.child.once("exit", resolve));
await pool.end();
await Promise.all([stalling, working].map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
await close();
process.exit(twice === 0 ? 0 : 1);
