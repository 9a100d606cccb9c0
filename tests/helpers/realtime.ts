import type pg from "pg";
import WebSocket from "ws";

export interface Subscription {
  socket: WebSocket;
  events: any[];
  errors: any[];
  /** Resolves with the `count`-th event (1-based) once it has arrived. */
  event(count: number): Promise<any>;
  /** Resolves with the first event that matches, once it has arrived. */
  eventMatching(predicate: (event: any) => boolean): Promise<any>;
  /** Resolves with the subscription's first error once it has arrived. */
  failure(): Promise<any>;
  /** Resolves with the close code and reason once the server closes the socket. */
  closed: Promise<{ code: number; reason: string }>;
}

/**
 * Opens graphql-transport-ws sockets to `url` (remembered in `sockets`, for the test to end) as
 * `token` and subscribes; each call resolves once the server has taken the subscription.
 */
export function subscriber(url: string, sockets: WebSocket[]) {
  return async function subscribe(token: string, query: string, variables: Record<string, unknown>): Promise<Subscription> {
    const socket = new WebSocket(url, "graphql-transport-ws");
    sockets.push(socket);
    const events: any[] = [];
    const errors: any[] = [];
    const closed = new Promise<{ code: number; reason: string }>((resolve) =>
      socket.once("close", (code, reason) => resolve({ code, reason: reason.toString() })),
    );
    await new Promise((resolve, reject) => {
      socket.once("open", resolve);
      socket.once("error", reject);
    });
    let acknowledged!: () => void;
    const ready = new Promise<void>((resolve) => (acknowledged = resolve));
    socket.on("message", (data) => {
      const message = JSON.parse(data.toString());
      if (message.type === "next" && message.id === "sub") {
        if (message.payload.errors) errors.push(...message.payload.errors);
        else events.push(message.payload.data);
      }
      if (message.type === "error") errors.push(...message.payload);
      // A query sent after the subscription completes once the subscription is listening.
      if (message.type === "complete" && message.id === "probe") acknowledged();
    });
    const acked = new Promise((resolve) => socket.once("message", resolve));
    socket.send(JSON.stringify({ type: "connection_init", payload: { authorization: `Bearer ${token}` } }));
    await acked;
    socket.send(JSON.stringify({ id: "sub", type: "subscribe", payload: { query, variables } }));
    socket.send(JSON.stringify({ id: "probe", type: "subscribe", payload: { query: "{ __typename }" } }));
    await ready;
    const event = (count: number) =>
      new Promise<any>((resolve, reject) => {
        const started = Date.now();
        const check = () => {
          if (events.length >= count) return resolve(events[count - 1]);
          if (errors.length > 0) return reject(new Error(JSON.stringify(errors)));
          if (Date.now() - started > 10_000) return reject(new Error(`only ${events.length} of ${count} events arrived`));
          setTimeout(check, 10);
        };
        check();
      });
    const failure = () =>
      new Promise<any>((resolve, reject) => {
        const started = Date.now();
        const check = () => {
          if (errors.length > 0) return resolve(errors[0]);
          if (Date.now() - started > 10_000) return reject(new Error("no error arrived"));
          setTimeout(check, 10);
        };
        check();
      });
    const eventMatching = (predicate: (event: any) => boolean) =>
      new Promise<any>((resolve, reject) => {
        const started = Date.now();
        const check = () => {
          const found = events.find(predicate);
          if (found) return resolve(found);
          if (Date.now() - started > 10_000) return reject(new Error("no matching event arrived"));
          setTimeout(check, 10);
        };
        check();
      });
    return { socket, events, errors, event, eventMatching, failure, closed };
  };
}

/**
 * Waits until the server really listens for `subscription`: the subscribe message and a probe on
 * the same socket are handled concurrently, so the probe returning proves little. Announces a
 * harmless event about an existing row on the channel until it arrives, then forgets it.
 */
export async function primed(
  root: pg.Pool,
  subscription: Subscription,
  channel: string,
  announcement: { event: string; id: string },
  marker: (event: any) => boolean,
): Promise<Subscription> {
  const started = Date.now();
  while (!subscription.events.some(marker)) {
    if (Date.now() - started > 10_000) throw new Error(`the subscription on ${channel} never started listening`);
    await root.query("select pg_notify($1, $2)", [channel, JSON.stringify(announcement)]);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  // Let any further copies of the marker arrive, then start from a clean slate.
  await new Promise((resolve) => setTimeout(resolve, 100));
  subscription.events.splice(0, subscription.events.length);
  return subscription;
}
