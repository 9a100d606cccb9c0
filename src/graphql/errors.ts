import { randomUUID } from "node:crypto";
import { isSafeError } from "postgraphile/grafast";
import { GraphQLError } from "postgraphile/graphql";
import { mapDatabaseError } from "../db/errors.ts";
import { AppError } from "../http/errors.ts";
import type { Logger } from "../logger.ts";

/** Codes for refusals made by the HTTP layer of GraphQL (grafserv) rather than by our code. */
const STATUS_CODES: Record<number, string> = {
  400: "bad_request",
  401: "unauthenticated",
  403: "forbidden",
  404: "not_found",
  405: "method_not_allowed",
  406: "not_acceptable",
  413: "payload_too_large",
  415: "unsupported_media_type",
  429: "rate_limited",
  503: "service_unavailable",
};

/** How graphql-js begins the message of a variable value it could not coerce. */
const VARIABLE_ERROR = /^Variable "\$[_A-Za-z][_0-9A-Za-z]*" (got invalid value|of required type|of non-null type)/;

interface ErrorLike {
  message: string;
  path?: unknown;
  extensions?: Record<string, unknown>;
}

/**
 * The stable code of an error raised by the GraphQL machinery itself: a document that does not
 * parse or validate, a refused HTTP request. Errors of ours already carry one.
 */
export function codeOf(error: ErrorLike, httpStatus?: number): string {
  const own = error.extensions?.code;
  if (typeof own === "string") return own;
  const status = typeof error.extensions?.statusCode === "number" ? error.extensions.statusCode : undefined;
  if (status && STATUS_CODES[status]) return STATUS_CODES[status];
  if (error.path === undefined) {
    if (error.message.startsWith("Syntax Error")) return "graphql_parse_failed";
    if (httpStatus && httpStatus !== 200 && httpStatus !== 400 && STATUS_CODES[httpStatus]) return STATUS_CODES[httpStatus];
    return "graphql_validation_failed";
  }
  return "internal_error";
}

function withCode(error: GraphQLError, message: string, extensions: Record<string, unknown>): GraphQLError {
  return new GraphQLError(message, {
    nodes: error.nodes,
    source: error.source,
    positions: error.positions,
    path: error.path,
    originalError: error.originalError,
    extensions,
  });
}

/**
 * Errors as GraphQL clients see them, over HTTP and WebSocket alike: every one carries a stable
 * `extensions.code`. Ours (AppError), the database's known ones and GraphQL's own (safe) errors
 * keep their message; anything else is logged with an id and answered as internal_error, leaking
 * nothing.
 */
export function makeMaskError(logger: Logger) {
  return function maskError(error: GraphQLError): GraphQLError {
    const original = error.originalError;
    if (original instanceof AppError) return withCode(error, original.message, { code: original.code });
    const mapped = mapDatabaseError(original);
    if (mapped) {
      // Bad input as the database saw it; logged quietly in case it was our SQL, not the input.
      if (mapped.code === "validation_failed") logger.debug({ err: original, path: error.path }, "GraphQL input refused by the database");
      return withCode(error, mapped.message, { code: mapped.code });
    }
    if (original && isSafeError(original)) {
      // Grafast's own refusals of bad input (e.g. a forged cursor) are safe to show.
      const code = typeof original.extensions?.code === "string" ? original.extensions.code : "validation_failed";
      return withCode(error, original.message, { ...original.extensions, code });
    }
    // The filter plugin's own refusals of `null` and `{}` (plain Errors it has not marked safe).
    if (original && /^(Null literals|Empty objects) are forbidden in filter argument input\.$/.test(original.message)) {
      return withCode(error, original.message, { code: "validation_failed" });
    }
    // A variable that does not fit its type: graphql-js words these itself (naming the variable
    // and the value), so the message is safe to show.
    if (error.path === undefined && VARIABLE_ERROR.test(error.message)) return withCode(error, error.message, { code: "validation_failed" });
    if (!original) return withCode(error, error.message, { ...error.extensions, code: codeOf(error) });
    const errorId = randomUUID();
    logger.error({ err: original, errorId, path: error.path }, "GraphQL operation failed");
    return withCode(error, `Something went wrong on our side; it has been logged (id ${errorId}).`, { code: "internal_error", errorId });
  };
}

/**
 * Grafserv answers some requests without calling maskError (a document that does not parse or
 * validate, a body that is too large, a wrong method). This middleware gives those errors a code
 * too, so every error a client sees has one.
 */
export const ErrorCodesPlugin: GraphileConfig.Plugin = {
  name: "ErrorCodesPlugin",
  version: "1.0.0",
  grafserv: {
    middleware: {
      async processRequest(next, event) {
        // Results as objects rather than serialized buffers, so they can be completed cheaply.
        event.requestDigest.preferJSON = true;
        const result = await next();
        if (result?.type === "json" && typeof result.json === "object" && result.json !== null && "errors" in result.json) {
          const errors = (result.json as { errors?: ErrorLike[] }).errors ?? [];
          for (const error of errors) {
            error.extensions = { ...error.extensions, code: codeOf(error, result.statusCode) };
          }
          // Some refusals are the request's fault or the server's state whatever the Accept
          // header: say so in the status too (grafserv answers 200 to application/json clients).
          const codes = new Set(errors.map((error) => error.extensions?.code));
          if (codes.has("database_unavailable")) return { ...result, statusCode: 503, headers: { ...result.headers, "retry-after": "5" } };
          if (codes.has("query_too_complex") || codes.has("websocket_required")) return { ...result, statusCode: 400 };
          if (codes.has("session_ended")) return { ...result, statusCode: 401 };
        }
        if (result?.type === "error") {
          const safe = isSafeError(result.error) ? result.error : undefined;
          const message = safe ? safe.message : "The request could not be handled.";
          const extensions = typeof safe?.extensions?.code === "string" ? safe.extensions : undefined;
          return {
            type: "json",
            statusCode: result.statusCode,
            headers: { ...result.headers, "content-type": "application/json; charset=utf-8" },
            json: { errors: [{ message, extensions: extensions ?? { code: STATUS_CODES[result.statusCode] ?? "internal_error" } }] },
          };
        }
        return result;
      },
    },
  },
};

/**
 * Counts every GraphQL response over HTTP by status and first error code (GraphQL errors usually
 * travel in a 200, so the HTTP metrics alone do not show them). Runs outside ErrorCodesPlugin, so
 * it sees the codes and statuses clients see.
 */
export function makeGraphqlMetricsPlugin(count: (statusCode: number, codes: string[]) => void): GraphileConfig.Plugin {
  return {
    name: "GraphqlMetricsPlugin",
    version: "1.0.0",
    before: ["ErrorCodesPlugin"],
    grafserv: {
      middleware: {
        async processRequest(next) {
          const result = await next();
          if (result?.type === "json") {
            const errors = (result.json as { errors?: ErrorLike[] } | null)?.errors ?? [];
            count(result.statusCode, errors.map((error) => codeOf(error, result.statusCode)));
          } else if (result) {
            count(result.statusCode, []);
          }
          return result;
        },
      },
    },
  };
}
