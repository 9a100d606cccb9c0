import { DatabaseError } from "pg";

/** A database failure translated into the API's contract: HTTP status, stable code, message. */
export interface MappedError {
  status: number;
  code: string;
  message: string;
  /** For a database that is down: when to try again (the Retry-After header). */
  retryAfterSeconds?: number;
}

/** Network errors of a connection that never opened or broke. */
const NETWORK_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH", "ENOTFOUND", "EAI_AGAIN", "EPIPE"]);
/** What node-postgres says when a connection is lost, times out or is unusable. */
const CONNECTION_MESSAGES =
  /^(Connection terminated( unexpectedly| due to connection timeout)?|timeout exceeded when trying to connect|Client has encountered a connection error and is not queryable|Client was closed and is not queryable|Cannot use a pool after calling end on the pool)$/;

/**
 * Whether an error means "the database cannot be reached right now" rather than "this request is
 * wrong": connection failures (class 08), an administrator shutdown or a restart (57P01-57P03),
 * too many connections (53300), and the network errors behind them. These answer 503 with
 * Retry-After, so clients and load balancers wait instead of giving up.
 */
export function isDatabaseUnavailable(error: unknown, depth = 0): boolean {
  if (!(error instanceof Error) || depth > 5) return false;
  if (error instanceof DatabaseError) {
    const code = error.code ?? "";
    return code.startsWith("08") || ["57P01", "57P02", "57P03", "53300"].includes(code);
  }
  const code = (error as { code?: unknown }).code;
  if (typeof code === "string" && NETWORK_CODES.has(code)) return true;
  if (CONNECTION_MESSAGES.test(error.message)) return true;
  if (error instanceof AggregateError && error.errors.some((inner) => isDatabaseUnavailable(inner, depth + 1))) return true;
  return error.cause !== undefined && isDatabaseUnavailable(error.cause, depth + 1);
}

export const DATABASE_UNAVAILABLE: MappedError = {
  status: 503,
  code: "database_unavailable",
  message: "The database cannot be reached right now; try again in a few seconds.",
  retryAfterSeconds: 5,
};

/**
 * Our own SQLSTATEs name the rule family; `DETAIL` may carry a more specific code
 * (e.g. OS409 with detail `email_taken`). docs/error-codes.md lists them.
 */
const FAMILIES: Record<string, { status: number; code: string }> = {
  OS400: { status: 400, code: "validation_failed" },
  OS401: { status: 401, code: "unauthenticated" },
  OS403: { status: 403, code: "forbidden" },
  OS404: { status: 404, code: "not_found" },
  OS409: { status: 409, code: "conflict" },
  OSPLN: { status: 402, code: "plan_limit_reached" },
};

const SPECIFIC_CODE = /^[a-z][a-z_]{2,40}$/;

/** Maps a PostgreSQL error to the API contract, or returns undefined for unexpected ones. */
export function mapDatabaseError(error: unknown): MappedError | undefined {
  if (isDatabaseUnavailable(error)) return DATABASE_UNAVAILABLE;
  if (!(error instanceof DatabaseError) || !error.code) return undefined;
  const family = FAMILIES[error.code];
  if (family) {
    const code = error.detail && SPECIFIC_CODE.test(error.detail) ? error.detail : family.code;
    return { status: family.status, code, message: error.message };
  }
  switch (error.code) {
    case "23505":
      return { status: 409, code: "conflict", message: "That value is already taken; it must be unique." };
    case "23503":
      return { status: 409, code: "conflict", message: "That refers to something that does not exist (or is still in use)." };
    case "23514":
      return { status: 400, code: "validation_failed", message: `A value breaks the rule "${error.constraint ?? "check"}".` };
    case "23502":
      return { status: 400, code: "validation_failed", message: `${error.column ? `"${error.column}"` : "A value"} is required.` };
    case "2201W":
      return { status: 400, code: "validation_failed", message: "first and last must not be negative." };
    case "2201X":
      return { status: 400, code: "validation_failed", message: "offset must not be negative." };
    case "42501":
      return { status: 403, code: "forbidden", message: "You do not have permission to do that." };
    case "57014":
      return { status: 503, code: "timeout", message: "The request took too long and was cancelled; try again." };
    case "40P01":
    case "40001":
      return { status: 409, code: "concurrent_update", message: "Another change to the same data got in the way; try again." };
  }
  // Class 22 is bad data (a malformed date, uuid or number, a NUL byte, a value out of range):
  // PostgreSQL's message names the value and the type, and reveals nothing else.
  if (error.code.startsWith("22")) return { status: 400, code: "validation_failed", message: `${capitalize(error.message)}.` };
  // Class 54: a value or query too large for the database (index row size, stack depth).
  if (error.code.startsWith("54")) return { status: 400, code: "validation_failed", message: "A value or the request is too large." };
  return undefined;
}

function capitalize(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}
