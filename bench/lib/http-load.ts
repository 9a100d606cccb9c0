// The HTTP load generator: `connections` kept-alive connections, each sending its next request as
// soon as the previous answer is in, for a fixed time; every answer's latency is kept for the
// percentiles, and a failed answer (per `ok`) is counted. CPU of the server process and of its
// database is read just before the first request and just after the last answer.
import http from "node:http";
import { postgresCpuMs, processCpuMs } from "./cpu.ts";

export interface Request {
  method: string;
  path: string;
  body?: string;
  token?: string;
}
export interface Answer {
  status: number;
  body: string;
}
/** One connection's request maker: its next request from its previous answer (state lives in the closure). */
export type NextRequest = (previous?: Answer) => Request;
/** Makes connection `index`'s request maker (may do setup, e.g. a sign-in, before the clock starts). */
export type ConnectionFactory = (index: number) => Promise<NextRequest>;

/** One measured window of one side. */
export interface Measurement {
  rps: number;
  p50: number;
  p99: number;
  requests: number;
  failures: number;
  /** The first failed answer (status and the start of the body). */
  firstFailure?: string;
  /** CPU of the server process over the window, in ms (absent when not measured). */
  nodeCpuMs?: number;
  /** CPU of the database server over the window, in ms. */
  pgCpuMs?: number;
}

export function percentile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
}

export async function measureHttp(options: {
  port: number;
  connections: number;
  seconds: number;
  connection: ConnectionFactory;
  ok: (answer: Answer) => boolean;
  /** The server's pid, for its CPU. */
  serverPid?: number;
  /** The database's postmaster pid, for its CPU. */
  postmasterPid?: number;
}): Promise<Measurement> {
  const { port, connections, seconds, ok } = options;
  const agent = new http.Agent({ keepAlive: true, maxSockets: connections });
  const send = (request: Request) =>
    new Promise<Answer>((resolve, reject) => {
      const req = http.request(
        {
          host: "127.0.0.1",
          port,
          method: request.method,
          path: request.path,
          agent,
          headers: { "content-type": "application/json", ...(request.token ? { authorization: `Bearer ${request.token}` } : {}) },
        },
        (res) => {
          let body = "";
          res.setEncoding("utf8");
          res.on("data", (chunk: string) => (body += chunk));
          res.on("end", () => resolve({ status: res.statusCode!, body }));
          res.on("error", reject);
        },
      );
      req.on("error", reject);
      req.end(request.body);
    });
  try {
    const makers = await Promise.all(Array.from({ length: connections }, (_, i) => options.connection(i)));
    const latencies: number[] = [];
    let failures = 0;
    let firstFailure: string | undefined;
    const nodeBefore = options.serverPid === undefined ? undefined : processCpuMs(options.serverPid);
    const pgBefore = options.postmasterPid === undefined ? undefined : postgresCpuMs(options.postmasterPid);
    const startedAt = performance.now();
    const deadline = startedAt + seconds * 1000;
    await Promise.all(
      makers.map(async (next) => {
        let previous: Answer | undefined;
        while (performance.now() < deadline) {
          const request = next(previous);
          const started = performance.now();
          const answer = await send(request).catch((error: Error) => ({ status: 0, body: `(no answer: ${error.message})` }));
          latencies.push(performance.now() - started);
          previous = answer;
          if (!ok(answer)) {
            if (failures === 0) firstFailure = `${answer.status} ${answer.body.slice(0, 300)}`;
            failures += 1;
          }
        }
      }),
    );
    // The window really measured: until the last answer (sent before the deadline) came in.
    const elapsedSeconds = (performance.now() - startedAt) / 1000;
    const nodeCpuMs = nodeBefore === undefined ? undefined : processCpuMs(options.serverPid!) - nodeBefore;
    const pgCpuMs = pgBefore === undefined ? undefined : postgresCpuMs(options.postmasterPid!) - pgBefore;
    latencies.sort((a, b) => a - b);
    return {
      // Successful answers per second.
      rps: (latencies.length - failures) / elapsedSeconds,
      p50: percentile(latencies, 0.5),
      p99: percentile(latencies, 0.99),
      requests: latencies.length,
      failures,
      firstFailure,
      nodeCpuMs,
      pgCpuMs,
    };
  } finally {
    agent.destroy();
  }
}
