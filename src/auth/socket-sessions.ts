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
 * Signed-in WebSockets outlive neither their session nor their access token. When the database
 * announces ended sessions (logout, "sign out everywhere", revokeSession, a password reset, a
 * disabled account), and in any case every `intervalMs`, one query asks which of the tracked
 * sessions are still live, on every instance; sockets past their token's expiry are closed too.
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
  /**
   * LISTEN/NOTIFY (PostGraphile's subscriber): the database announces ended sessions on
   * `oddscenes:sessions_ended`, and every instance checks its sockets at once.
   */
  subscriber?: { subscribe(topic: string): AsyncIterableIterator<unknown> | PromiseLike<AsyncIterableIterator<unknown>> };
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

  // One check at a time: announcements that arrive during a check (a burst of sign-outs) are all
  // answered by one more check after it, not by a query each.
  let checking = false;
  let checkAgain = false;
  const sweepNow = () => {
    if (checking) {
      checkAgain = true;
      return;
    }
    checking = true;
    void sweep()
      .catch((error: unknown) => deps.logger.warn({ err: error }, "could not check WebSocket sessions; will retry"))
      .finally(() => {
        checking = false;
        if (checkAgain) {
          checkAgain = false;
          sweepNow();
        }
      });
  };
  const timer = setInterval(sweepNow, deps.intervalMs ?? 2000);
  timer.unref();

  // Ended sessions are announced by the database: their sockets close at once, not at the next
  // check. The subscription ends when the connection drops; it is made again a second later (the
  // timer covers the gap).
  let stopped = false;
  let announcements: AsyncIterableIterator<unknown> | undefined;
  const listen = async () => {
    while (!stopped && deps.subscriber) {
      try {
        announcements = await deps.subscriber.subscribe("oddscenes:sessions_ended");
        for await (const _ of announcements) {
          if (tracked.size > 0) sweepNow();
        }
      } catch (error) {
        if (!stopped) deps.logger.debug({ err: error }, "session announcements interrupted; listening again");
      }
      if (!stopped) await new Promise((resolve) => setTimeout(resolve, 1000).unref());
    }
  };
  void listen();

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
    stop: () => {
      stopped = true;
      clearInterval(timer);
      void announcements?.return?.();
    },
  };
}
