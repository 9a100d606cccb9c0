import type { RequestHandler } from "express";
import type pg from "pg";
import type WebSocket from "ws";
import type { Config } from "../config.ts";
import { ANONYMOUS, userIdentity, type RequestIdentity } from "../db/request-role.ts";
import type { IdentityResolver } from "../graphql/preset.ts";
import { authenticate, verifyBearer } from "./authenticate.ts";
import type { SocketSessions } from "./socket-sessions.ts";

interface Deps {
  jwt: Config["jwt"];
  ownerPool: pg.Pool;
}

const IDENTITY = "graphqlIdentity";

/** The caller of an HTTP GraphQL request, once graphqlHttpAuth has run. */
export function httpIdentity(res: { locals: Record<string, unknown> }): RequestIdentity | undefined {
  return res.locals[IDENTITY] as RequestIdentity | undefined;
}

/**
 * Authenticates HTTP GraphQL requests before PostGraphile sees them: a bad token answers 401
 * with a GraphQL error whose `extensions.code` says why, instead of running as anonymous.
 * Whether the token's session is still live is checked in the round trip of the operation's
 * first SQL statement (src/graphql/request-connection.ts).
 */
export function graphqlHttpAuth(deps: Pick<Deps, "jwt">): RequestHandler {
  return (req, res, next) => {
    try {
      const subject = verifyBearer(deps.jwt, req.headers.authorization);
      res.locals[IDENTITY] = subject ? userIdentity(subject) : ANONYMOUS;
      next();
    } catch (error) {
      next(error);
    }
  };
}

/**
 * The caller of an operation: set by `graphqlHttpAuth` for HTTP. For WebSockets it comes from
 * the `authorization` connection parameter (or a newer token the client re-authenticated with);
 * a signed-in socket is handed to `sessions`, which closes it when the session ends.
 */
export function graphqlIdentity(deps: Deps & { sessions: SocketSessions }): IdentityResolver {
  return async (requestContext) => {
    if (requestContext.expressv4) {
      const identity = httpIdentity(requestContext.expressv4.res);
      if (!identity) throw new Error("graphqlHttpAuth must run before PostGraphile");
      return identity;
    }
    const socket = requestContext.ws?.socket as WebSocket | undefined;
    const fromParams = requestContext.ws?.normalizedConnectionParams?.authorization;
    const authorization = (socket && deps.sessions.authorizationOf(socket)) ?? (typeof fromParams === "string" ? fromParams : undefined);
    const token = await authenticate(deps, authorization);
    if (!token) return ANONYMOUS;
    if (socket && authorization) deps.sessions.track(socket, token, authorization);
    return userIdentity(token);
  };
}
