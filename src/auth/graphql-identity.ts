import type { RequestHandler } from "express";
import type { Config } from "../config.ts";
import { ANONYMOUS, userIdentity, type RequestIdentity } from "../db/request-role.ts";
import type { IdentityResolver } from "../graphql/preset.ts";
import { AppError } from "../http/errors.ts";
import type pg from "pg";
import { authenticate } from "./authenticate.ts";

interface Deps {
  jwt: Config["jwt"];
  ownerPool: pg.Pool;
}

const IDENTITY = "graphqlIdentity";

async function identityFor(deps: Deps, header: unknown): Promise<RequestIdentity> {
  const subject = await authenticate(deps, typeof header === "string" ? header : undefined);
  return subject ? userIdentity(subject) : ANONYMOUS;
}

/**
 * Authenticates HTTP GraphQL requests before PostGraphile sees them: a bad token answers 401
 * with a GraphQL error whose `extensions.code` says why, instead of running as anonymous.
 */
export function graphqlHttpAuth(deps: Deps): RequestHandler {
  return async (req, res, next) => {
    try {
      res.locals[IDENTITY] = await identityFor(deps, req.headers.authorization);
      next();
    } catch (error) {
      if (!(error instanceof AppError)) return next(error);
      res.status(error.status).json({ errors: [{ message: error.message, extensions: { code: error.code } }] });
    }
  };
}

/**
 * The caller of an operation: set by `graphqlHttpAuth` for HTTP; for WebSockets read from the
 * `authorization` connection parameter (a refusal reaches the client as a GraphQL error).
 */
export function graphqlIdentity(deps: Deps): IdentityResolver {
  return async (requestContext) => {
    if (requestContext.expressv4) {
      const identity = requestContext.expressv4.res.locals[IDENTITY] as RequestIdentity | undefined;
      if (!identity) throw new Error("graphqlHttpAuth must run before PostGraphile");
      return identity;
    }
    return identityFor(deps, requestContext.ws?.normalizedConnectionParams?.authorization);
  };
}
