import type { IncomingMessage } from "node:http";
import type { RequestHandler } from "express";
import { GraphQLError } from "postgraphile/graphql";
import { RateLimiterMemory, RateLimiterRes } from "rate-limiter-flexible";
import { httpIdentity } from "../auth/graphql-identity.ts";
import type { Config } from "../config.ts";
import { clientKey } from "../http/client-address.ts";
import { AppError } from "../http/errors.ts";

export interface GraphqlRateLimiter {
  /** Counts one operation for a client address; the seconds to wait when over its rate, else 0. */
  consumeClient(client: string): Promise<number>;
  /** Counts one operation for a signed-in user; the seconds to wait when over their rate, else 0. */
  consumeUser(userId: string): Promise<number>;
  /** Gives back what consumeUser counted for an operation that turned out not to be the user's. */
  refundUser(userId: string): Promise<void>;
}

/**
 * Per-client and per-user limits on GraphQL operations, counted in this process's memory so they
 * cost no database round trip: with N API instances a client gets up to N times the rate.
 * Every operation counts 1 (cost-weighted counting can come with a cost estimate).
 */
export function createGraphqlRateLimiter(limits: Config["graphqlRateLimits"]): GraphqlRateLimiter {
  const byClient = new RateLimiterMemory({ keyPrefix: "graphql_ip", points: limits.ip.max, duration: limits.ip.windowSeconds });
  const byUser = new RateLimiterMemory({ keyPrefix: "graphql_user", points: limits.user.max, duration: limits.user.windowSeconds });
  const consume = async (limiter: RateLimiterMemory, key: string) => {
    try {
      await limiter.consume(key);
      return 0;
    } catch (rejection) {
      if (rejection instanceof RateLimiterRes) return Math.max(1, Math.ceil(rejection.msBeforeNext / 1000));
      throw rejection;
    }
  };
  return {
    consumeClient: (client) => consume(byClient, client),
    consumeUser: (userId) => consume(byUser, userId),
    refundUser: async (userId) => void (await byUser.reward(userId, 1)),
  };
}

const message = (seconds: number) => `Too many requests; try again in ${seconds} seconds.`;

const tooMany = (retryAfter: number) =>
  new AppError(429, "rate_limited", message(retryAfter), { headers: { "Retry-After": String(retryAfter) } });

/**
 * HTTP, before authentication: every request counts against its client address, so requests
 * that fail (a bad token, a document that does not parse) are counted too.
 */
export function graphqlClientRateLimit(limiter: GraphqlRateLimiter): RequestHandler {
  return async (req, _res, next) => {
    const retryAfter = await limiter.consumeClient(clientKey(req.ip));
    next(retryAfter === 0 ? undefined : tooMany(retryAfter));
  };
}

/**
 * HTTP, after authentication: signed-in requests count against their user too. The token's
 * session is checked later, with the request's first SQL statement: a token whose session has
 * ended (answered 401) gets its count back, so a stolen token signed out everywhere cannot use
 * up its user's rate.
 */
export function graphqlUserRateLimit(limiter: GraphqlRateLimiter): RequestHandler {
  return async (_req, res, next) => {
    const userId = httpIdentity(res)?.claims.user_id;
    const retryAfter = userId ? await limiter.consumeUser(userId) : 0;
    if (userId && retryAfter === 0) res.once("finish", () => res.statusCode === 401 && void limiter.refundUser(userId));
    next(retryAfter === 0 ? undefined : tooMany(retryAfter));
  };
}

const isErrors = (value: object): value is readonly GraphQLError[] => Array.isArray(value);

const refusal = (retryAfter: number) => [new GraphQLError(message(retryAfter), { extensions: { code: "rate_limited", retryAfter } })];

/**
 * WebSocket: every `subscribe` message (subscriptions, and queries sent over the socket) counts
 * against the client address before it is parsed or authenticated, and against the user once
 * they are known; over a limit the operation is refused with `rate_limited` and
 * `extensions.retryAfter`. `clientOf` finds the client's address as Express would (TRUST_PROXY).
 */
export function makeGraphqlRateLimitPlugin(limiter: GraphqlRateLimiter, clientOf: (request: IncomingMessage) => string): GraphileConfig.Plugin {
  return {
    name: "GraphqlRateLimitPlugin",
    version: "1.0.0",
    grafserv: {
      middleware: {
        async onSubscribe(next, event) {
          const request = (event.ctx.extra as { request: IncomingMessage }).request;
          const clientWait = await limiter.consumeClient(clientOf(request));
          if (clientWait > 0) return refusal(clientWait);
          const result = await next();
          if (!result || isErrors(result)) return result;
          const userId = (result.contextValue as { pgSettings?: Record<string, string> } | undefined)?.pgSettings?.["jwt.claims.user_id"];
          const userWait = userId ? await limiter.consumeUser(userId) : 0;
          return userWait === 0 ? result : refusal(userWait);
        },
      },
    },
  };
}
