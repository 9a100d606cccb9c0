import type pg from "pg";
import type WebSocket from "ws";
import type { Config } from "../config.ts";
import type { Logger } from "../logger.ts";
import { verifyAccessToken, type VerifiedToken } from "./tokens.ts";

/** graphql-ws's "Unauthorized": the client must get a valid token before it reconnects. */
export const CLOSE_UNAUTHORIZED = 4401;

interface Tracked {
  token: VerifiedToken;
  /** The `Bearer …` the socket's operations authenticate with (the newest it sent). */
  authorization: string;
}

export interface SocketSessions {
  /** Records that `socket` speaks for a verified token; its operations then use `authorizationOf`. */
  track(socket: WebSocket, token: VerifiedToken, authorization: string): void;
  /** The authorization of a tracked socket: the connection parameter, or a newer one from a ping. */
  authorizationOf(socket: WebSocket): string | undefined;
  /** Closes every socket whose session ended or whose token expired; runs on a timer too. */
  sweep(): Promise<void>;
  stop(): void;
}

/**
 * Signed-in WebSockets outlive neither their session nor their access token. Every
 * `intervalMs` one query asks which of the tracked sessions are still live (so logout,
 * "sign out everywhere", a password reset or a revoked session close the socket within seconds,
 * on every instance), and sockets past their token's expiry are closed too.
 *
 * A client keeps its socket open across token refreshes by re-authenticating in band: a
 * graphql-ws ping whose payload is `{ "authorization": "Bearer <new access token>" }` for the
 * same session.
 */
export function createSocketSessions(deps: {
  jwt: Config["jwt"];
  ownerPool: pg.Pool;
  logger: Logger;
  intervalMs?: number;
}): SocketSessions {
  const tracked = new Map<WebSocket, Tracked>();

  const close = (socket: WebSocket, reason: string) => {
    tracked.delete(socket);
    socket.close(CLOSE_UNAUTHORIZED, reason);
  };

  const reauthenticate = (socket: WebSocket, data: WebSocket.RawData) => {
    const entry = tracked.get(socket);
    if (!entry || (data as Buffer).length > 8192) return;
    let message: { type?: unknown; payload?: { authorization?: unknown } };
    try {
      message = JSON.parse(data.toString());
    } catch {
      return; // graphql-ws answers malformed messages itself
    }
    const authorization = message?.payload?.authorization;
    if (message?.type !== "ping" || typeof authorization !== "string") return;
    try {
      const token = verifyAccessToken(deps.jwt, /^Bearer\s+(\S+)$/i.exec(authorization)?.[1] ?? "");
      if (token.sessionId !== entry.token.sessionId || token.userId !== entry.token.userId) {
        close(socket, "Re-authentication must be for the same session");
        return;
      }
      tracked.set(socket, { token, authorization });
    } catch {
      close(socket, "Re-authentication failed: the access token is not valid");
    }
  };

  const sweep = async () => {
    const now = Date.now();
    for (const [socket, { token }] of tracked) {
      if (token.expiresAt <= now) close(socket, "Access token expired: refresh it and reconnect");
    }
    if (tracked.size === 0) return;
    const sockets = [...tracked];
    const { rows } = await deps.ownerPool.query<{ session_id: string }>(
      `select s.session_id from unnest($1::uuid[], $2::uuid[]) as s(session_id, user_id)
       where not app_private.session_is_live(s.session_id, s.user_id)`,
      [sockets.map(([, t]) => t.token.sessionId), sockets.map(([, t]) => t.token.userId)],
    );
    const ended = new Set(rows.map((row) => row.session_id));
    for (const [socket, { token }] of sockets) {
      if (ended.has(token.sessionId) && tracked.has(socket)) close(socket, "Session ended: sign in again");
    }
  };

  const timer = setInterval(() => {
    sweep().catch((error: unknown) => deps.logger.warn({ err: error }, "could not check WebSocket sessions; will retry"));
  }, deps.intervalMs ?? 2000);
  timer.unref();

  return {
    track(socket, token, authorization) {
      if (!tracked.has(socket)) {
        socket.on("message", (data) => reauthenticate(socket, data));
        socket.once("close", () => tracked.delete(socket));
      }
      tracked.set(socket, { token, authorization });
    },
    authorizationOf: (socket) => tracked.get(socket)?.authorization,
    sweep,
    stop: () => clearInterval(timer),
  };
}
