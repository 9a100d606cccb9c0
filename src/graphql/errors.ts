import { defaultMaskError } from "postgraphile/grafserv";
import { GraphQLError } from "postgraphile/graphql";
import { mapDatabaseError } from "../db/errors.ts";
import { AppError } from "../http/errors.ts";

function withCode(error: GraphQLError, message: string, code: string): GraphQLError {
  return new GraphQLError(message, {
    nodes: error.nodes,
    source: error.source,
    positions: error.positions,
    path: error.path,
    originalError: error.originalError,
    extensions: { code },
  });
}

/**
 * Errors as GraphQL clients see them: our own (AppError) and the database's known ones keep
 * their message and get a stable `extensions.code`; anything else is hidden behind a logged id.
 */
export function maskError(error: GraphQLError): GraphQLError {
  const original = error.originalError;
  if (original instanceof AppError) return withCode(error, original.message, original.code);
  const mapped = mapDatabaseError(original);
  if (mapped) return withCode(error, mapped.message, mapped.code);
  return defaultMaskError(error);
}
