// Realtime fan-out: many WebSocket subscribers of one project's taskChanged, and how long a change
// takes to reach all of them. The backend delivers each event to each subscriber only after
// reading the task under that subscriber's role (src/graphql/realtime.ts), so one change costs a
// database round trip per subscriber; this measures what that adds up to.
//
// One user holds all the subscriptions, so the backend must allow that many:
// GRAPHQL_MAX_SUBSCRIPTIONS (100 by default) must be at least `subscribers`.
import { createClient, type Client } from "graphql-ws";

const TASK_CHANGED = `subscription ($p: UUID!) { taskChanged(projectId: $p) { event taskRowId task { title } } }`;

/** How long a change may take to reach every subscriber before the missing ones count as lost. */
const CHANGE_TIMEOUT_MS = 5_000;
/** How long connecting and subscribing everyone (the warm-up) may take. */
const SETUP_TIMEOUT_MS = 30_000;
/** A warm-up change not seen by everyone within this is made again (late subscriptions miss it). */
const WARMUP_RETRY_MS = 1_000;

interface Subscriber {
  client: Client;
  unsubscribe: () => void;
  connected: boolean;
  /** When the event of the current change arrived (undefined while waiting for it). */
  arrivedAt: number | undefined;
  /** Events that arrived outside a change (late, or extra warm-up ones). */
  stray: number;
  error: string | undefined;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const round1 = (value: number) => Math.round(value * 10) / 10;

function describeError(error: unknown): string {
  if (Array.isArray(error)) return error.map((e: { message?: string; extensions?: { code?: string } }) => `${e.extensions?.code ?? ""} ${e.message ?? String(e)}`.trim()).join("; ");
  if (error && typeof error === "object" && "code" in error && "reason" in error) {
    return `socket closed ${(error as { code: number }).code} ${(error as { reason: string }).reason}`;
  }
  return error instanceof Error ? error.message : String(error);
}

/**
 * Opens `subscribers` graphql-ws clients (one socket each, all as the token's user) subscribed to
 * `taskChanged(projectId)`, makes sure every subscription is live (warm-up changes until each
 * subscriber has seen one), then makes `changes` changes one after another. A change's latency is
 * the time from just before `makeChange()` until the LAST subscriber has its event; each change
 * waits until all have it, or 5 s, after which those still missing count as lost (and the change
 * counts as 5000 ms in the percentiles). `makeChange` must cause exactly one event on the project
 * (e.g. one task row updated). Latencies in ms, one decimal; clients are closed at the end.
 */
export async function measureFanOut(options: {
  port: number;
  token: string;
  projectId: string;
  subscribers: number;
  changes: number;
  makeChange: () => Promise<void>;
}): Promise<{ subscribers: number; changes: number; p50: number; p99: number; max: number; delivered: number; expected: number }> {
  const { port, token, projectId, changes, makeChange } = options;
  const url = `ws://127.0.0.1:${port}/graphql`;
  // Changes whose events are awaited: arrivals outside one are strays.
  let measuring = false;
  let onArrival: (() => void) | undefined;

  const subscribers: Subscriber[] = Array.from({ length: options.subscribers }, () => {
    const subscriber: Subscriber = { client: undefined!, unsubscribe: () => {}, connected: false, arrivedAt: undefined, stray: 0, error: undefined };
    subscriber.client = createClient({
      url,
      // Node 24's own WebSocket (undici): no dependency on which `ws` resolves from bench/.
      webSocketImpl: WebSocket,
      connectionParams: { authorization: `Bearer ${token}` },
      retryAttempts: 0,
      lazy: true,
      on: {
        connected: () => {
          subscriber.connected = true;
        },
      },
    });
    return subscriber;
  });

  const closeAll = async () => {
    await Promise.all(
      subscribers.map(async (s) => {
        try {
          s.unsubscribe();
          await s.client.dispose();
        } catch {
          // already closed
        }
      }),
    );
  };

  /** Resolves true when `done()` holds (checked at every arrival and every 20 ms), false at the timeout. */
  const waitFor = async (done: () => boolean, timeoutMs: number) => {
    const deadline = performance.now() + timeoutMs;
    while (!done()) {
      const left = deadline - performance.now();
      if (left <= 0) return false;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          onArrival = undefined;
          resolve();
        }, Math.min(left, 20));
        onArrival = () => {
          clearTimeout(timer);
          onArrival = undefined;
          resolve();
        };
      });
    }
    return true;
  };
  const failed = () => subscribers.find((s) => s.error !== undefined);
  const failure = (stage: string) => {
    const broken = subscribers.filter((s) => s.error !== undefined);
    return new Error(
      `${stage}: ${broken.length} of ${subscribers.length} subscriptions failed, e.g. ${broken[0]!.error}` +
        (broken[0]!.error!.includes("too_many_subscriptions") ? ` (raise GRAPHQL_MAX_SUBSCRIPTIONS on the backend to at least ${subscribers.length})` : ""),
    );
  };

  try {
    for (const subscriber of subscribers) {
      subscriber.unsubscribe = subscriber.client.subscribe(
        { query: TASK_CHANGED, variables: { p: projectId } },
        {
          next: (result) => {
            if (result.errors?.length) {
              subscriber.error ??= describeError(result.errors);
            } else if (measuring && subscriber.arrivedAt === undefined) {
              subscriber.arrivedAt = performance.now();
            } else {
              subscriber.stray += 1;
            }
            onArrival?.();
          },
          error: (error) => {
            subscriber.error ??= describeError(error);
            onArrival?.();
          },
          complete: () => {
            subscriber.error ??= "the subscription completed";
            onArrival?.();
          },
        },
      );
    }
    // Every socket acknowledged (or failed).
    const setupDeadline = performance.now() + SETUP_TIMEOUT_MS;
    await waitFor(() => failed() !== undefined || subscribers.every((s) => s.connected), SETUP_TIMEOUT_MS);
    if (failed()) throw failure("connecting");
    const connected = subscribers.filter((s) => s.connected).length;
    if (connected < subscribers.length) throw new Error(`only ${connected} of ${subscribers.length} WebSockets connected within ${SETUP_TIMEOUT_MS / 1000} s`);

    // graphql-ws does not acknowledge a subscription: a warm-up change seen by everyone proves
    // each one is LISTENing. A subscription started after the change misses it, so change again
    // until all have seen one.
    measuring = true;
    for (;;) {
      await makeChange();
      const everyone = await waitFor(
        () => failed() !== undefined || subscribers.every((s) => s.arrivedAt !== undefined),
        Math.min(WARMUP_RETRY_MS, Math.max(0, setupDeadline - performance.now())),
      );
      if (failed()) throw failure("subscribing");
      if (everyone) break;
      if (performance.now() >= setupDeadline) {
        const live = subscribers.filter((s) => s.arrivedAt !== undefined).length;
        throw new Error(`only ${live} of ${subscribers.length} subscriptions received a warm-up change within ${SETUP_TIMEOUT_MS / 1000} s`);
      }
    }
    measuring = false;
    // Extra warm-up events (from repeated warm-up changes) land as strays, not as the next change's.
    await sleep(200);
    const strayBefore = subscribers.reduce((sum, s) => sum + s.stray, 0);

    const latencies: number[] = [];
    let delivered = 0;
    for (let change = 0; change < changes; change++) {
      for (const subscriber of subscribers) subscriber.arrivedAt = undefined;
      measuring = true;
      const started = performance.now();
      await makeChange();
      const complete = await waitFor(() => subscribers.every((s) => s.arrivedAt !== undefined), CHANGE_TIMEOUT_MS - (performance.now() - started));
      measuring = false;
      const arrivals = subscribers.filter((s) => s.arrivedAt !== undefined).map((s) => s.arrivedAt! - started);
      delivered += arrivals.length;
      latencies.push(complete ? Math.max(...arrivals) : CHANGE_TIMEOUT_MS);
    }
    const strays = subscribers.reduce((sum, s) => sum + s.stray, 0) - strayBefore;
    if (strays > 0) console.error(`measureFanOut: ${strays} event(s) arrived outside a change (late, or makeChange caused more than one event)`);
    if (failed()) console.error(`measureFanOut: ${subscribers.filter((s) => s.error).length} subscription(s) failed while measuring, e.g. ${failed()!.error}`);

    latencies.sort((a, b) => a - b);
    const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0;
    return {
      subscribers: subscribers.length,
      changes,
      p50: round1(at(0.5)),
      p99: round1(at(0.99)),
      max: round1(latencies[latencies.length - 1] ?? 0),
      delivered,
      expected: subscribers.length * changes,
    };
  } finally {
    measuring = false;
    await closeAll();
  }
}
