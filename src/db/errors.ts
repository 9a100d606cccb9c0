import { DatabaseError } from "pg";

/** A database failure translated into the API's contract: HTTP status, stable code, message. */
export interface MappedError {
  status: number;
  code: string;
  message: string;
}

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
