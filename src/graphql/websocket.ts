import type { IncomingMessage, Server } from "node:http";
import type { Duplex } from "node:stream";
import { CloseCode, makeServer } from "graphql-ws";
import { makeGraphQLWSConfig, type GrafservBase } from "postgraphile/grafserv";
import { WebSocketServer, type WebSocket } from "ws";

/**
 * GraphQL over WebSocket (graphql-transport-ws) on the HTTP server, as grafserv would attach it,
 * with two differences: a message may be at most `maxPayload` bytes (grafserv leaves `ws` at its
 * 100 MiB default, buffered before anything can refuse it), and sockets are pinged every
 * `keepaliveMs` and closed when a ping goes unanswered. Returns what releases it.
 */
export function attachWebSockets(
  serv: GrafservBase & { shouldHandleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): boolean },
  server: Server,
  options: { maxPayload: number; keepaliveMs: number },
): () => Promise<void> {
  const graphqlWs = makeServer(makeGraphQLWSConfig(serv));
  const wss = new WebSocketServer({ noServer: true, maxPayload: options.maxPayload });

  const keepalive = (socket: WebSocket) => {
    let waiting = false;
    const timer = setInterval(() => {
      if (waiting) {
        socket.terminate(); // no pong since the last ping: the peer is gone
        return;
      }
      waiting = true;
      socket.ping();
    }, options.keepaliveMs);
    timer.unref();
    socket.on("pong", () => (waiting = false));
    socket.once("close", () => clearInterval(timer));
  };

  const onConnection = (socket: WebSocket, request: IncomingMessage) => {
    // A frame over maxPayload, or a broken one, is an error on the socket: ws closes it (1009,
    // 1002); without a listener it would be an uncaught exception that ends the process.
    socket.on("error", () => socket.terminate());
    keepalive(socket);
    const closed = graphqlWs.opened(
      {
        protocol: socket.protocol,
        send: (data) => new Promise<void>((resolve, reject) => socket.send(data, (error) => (error ? reject(error) : resolve()))),
        close: (code, reason) => socket.close(code, reason),
        onMessage: (callback) =>
          socket.on("message", async (data) => {
            try {
              await callback(data.toString());
            } catch (error) {
              try {
                socket.close(CloseCode.InternalServerError, (error as Error).message);
              } catch {
                // already closed
              }
            }
          }),
      },
      // What grafserv's own handler passes: the identity and session checks read it.
      { socket, request },
    );
    socket.once("close", (code, reason) => closed(code, reason.toString()));
  };

  const onUpgrade = (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    if (!serv.shouldHandleUpgrade(req, socket, head)) {
      socket.destroy();
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => onConnection(ws, req));
  };
  server.on("upgrade", onUpgrade);

  return async () => {
    server.off("upgrade", onUpgrade);
    for (const client of wss.clients) client.terminate();
    await new Promise<void>((resolve) => wss.close(() => resolve()));
  };
}
