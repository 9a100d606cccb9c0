import type { RequestHandler } from "express";
import type { Server } from "node:http";
import net from "node:net";
import type { Duplex } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";

/** A connection and what it is doing: requests in flight, and since when it has been idle. */
interface Connection {
  active: number;
  idleSince: number;
}

export interface Drain {
  /** Marks every response of a draining server `Connection: close`; mount it first. */
  middleware: RequestHandler;
  /** Whether the server is draining (then /readyz answers 503 so load balancers stop sending). */
  draining(): boolean;
  /**
   * Stops taking connections and lets the open ones finish: a request arriving on a kept-alive
   * connection is still answered (with `Connection: close`), and a connection is closed only
   * between requests, once idle for `idleGraceMs`. WebSockets are ended at once (clients
   * reconnect to another instance). Whatever is still open after `timeoutMs` is cut. The grace
   * defaults to the server's keep-alive timeout, which every response announces (Keep-Alive:
   * timeout=5), so clients do not send on a connection they expect to be closed by then. With
   * `delayMs`, the server first stays open that long while /readyz already answers 503.
   */
  drain(options: { timeoutMs: number; idleGraceMs?: number; delayMs?: number }): Promise<void>;
}

export function createDrain(server: Server): Drain {
  const connections = new Map<net.Socket, Connection>();
  const websockets = new Set<Duplex>();
  let draining = false;

  server.on("connection", (socket: net.Socket) => {
    connections.set(socket, { active: 0, idleSince: Date.now() });
    socket.once("close", () => connections.delete(socket));
  });
  server.on("request", (req, res) => {
    const connection = connections.get(req.socket);
    if (!connection) return;
    connection.active += 1;
    res.once("close", () => {
      connection.active -= 1;
      connection.idleSince = Date.now();
    });
  });
  server.on("upgrade", (req, socket: Duplex) => {
    connections.delete(req.socket);
    websockets.add(socket);
    socket.once("close", () => websockets.delete(socket));
  });

  return {
    middleware: (_req, res, next) => {
      if (draining) res.setHeader("Connection", "close");
      next();
    },
    draining: () => draining,
    async drain({ timeoutMs, idleGraceMs = server.keepAliveTimeout, delayMs = 0 }) {
      draining = true;
      // Not ready any more, but still taking connections for a while: load balancers keep
      // sending for a few seconds after an instance turns unready.
      if (delayMs > 0) await sleep(delayMs);
      // Stop accepting connections, without http.Server.close()'s closing of idle ones at once:
      // a request may be on its way on any of them.
      net.Server.prototype.close.call(server);
      for (const socket of websockets) socket.destroy();
      // Every idle connection gets the whole grace from now: a request sent on it meanwhile is served.
      const started = Date.now();
      for (const connection of connections.values()) connection.idleSince = Math.max(connection.idleSince, started);
      const deadline = started + timeoutMs;
      while (connections.size > 0 && Date.now() < deadline) {
        const now = Date.now();
        for (const [socket, connection] of connections) {
          if (connection.active === 0 && now - connection.idleSince >= idleGraceMs) socket.destroy();
        }
        await sleep(50);
      }
      for (const socket of connections.keys()) socket.destroy();
    },
  };
}
