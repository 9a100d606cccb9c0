import type { ErrorRequestHandler, RequestHandler } from "express";
import { mapDatabaseError } from "../db/errors.ts";
import type { Logger } from "../logger.ts";

/** The one error type routes throw; the error middleware turns it into `{ error: { code, message } }`. */
export class AppError extends Error {
  readonly status: number;
  readonly code: string;
  readonly details: unknown;
  readonly headers: Record<string, string>;
  constructor(status: number, code: string, message: string, options: { details?: unknown; headers?: Record<string, string> } = {}) {
    super(message);
    this.name = "AppError";
    this.status = status;
    this.code = code;
    this.details = options.details;
    this.headers = options.headers ?? {};
  }
}

/**
 * Errors raised while reading a body: body-parser's carry a `type`; a body declared as gzip,
 * deflate or br that does not decompress is zlib's own error (a `Z_…` code); anything else
 * body-parser marks as the client's fault carries a 4xx status and `expose`.
 */
function fromBodyParser(error: unknown): AppError | undefined {
  if (typeof error !== "object" || error === null) return undefined;
  const { code, status, expose } = error as { code?: unknown; status?: unknown; expose?: unknown };
  if (typeof code === "string" && code.startsWith("Z_")) {
    return new AppError(400, "invalid_encoding", "The request body does not decompress as its Content-Encoding says.");
  }
  if (!("type" in error)) {
    return expose === true && typeof status === "number" && status >= 400 && status < 500
      ? new AppError(status, "bad_request", "The request body could not be read.")
      : undefined;
  }
  switch ((error as { type: unknown }).type) {
    case "entity.parse.failed":
      return new AppError(400, "invalid_json", "The request body is not valid JSON.");
    case "entity.too.large":
      return new AppError(413, "payload_too_large", "The request body is larger than this endpoint accepts.");
    case "encoding.unsupported":
    case "charset.unsupported":
      return new AppError(415, "unsupported_encoding", "The request body's encoding is not supported; send UTF-8.");
    case "request.aborted":
      return new AppError(400, "request_aborted", "The request was aborted before its body arrived.");
    default:
      return expose === true && typeof status === "number" && status >= 400 && status < 500
        ? new AppError(status, "bad_request", "The request body could not be read.")
        : undefined;
  }
}

export const notFound: RequestHandler = (req, _res, next) => {
  next(new AppError(404, "not_found", `No route for ${req.method} ${req.path}.`));
};

const pathOf = (url: string) => url.split("?")[0] ?? url;

/** The body of an error in the shape its endpoint speaks: GraphQL's `errors` on /graphql, ours elsewhere. */
export function errorBody(path: string, error: { code: string; message: string; details?: unknown }) {
  if (path === "/graphql" || path.startsWith("/graphql/")) {
    return { errors: [{ message: error.message, extensions: { code: error.code } }] };
  }
  return { error: { code: error.code, message: error.message, ...(error.details === undefined ? {} : { details: error.details }) } };
}

/** The only place errors become responses. Unknown errors are logged, never shown. */
export function errorHandler(logger: Logger): ErrorRequestHandler {
  return (error, req, res, next) => {
    if (res.headersSent) {
      next(error);
      return;
    }
    const mapped = mapDatabaseError(error);
    const known =
      error instanceof AppError
        ? error
        : (fromBodyParser(error) ??
          (mapped
            ? new AppError(mapped.status, mapped.code, mapped.message, {
                headers: mapped.retryAfterSeconds ? { "Retry-After": String(mapped.retryAfterSeconds) } : {},
              })
            : undefined));
    if (known) {
      res.set(known.headers);
      res.status(known.status).json(errorBody(pathOf(req.originalUrl), known));
      return;
    }
    (req.log ?? logger).error({ err: error }, "unhandled error");
    res.status(500).json(errorBody(pathOf(req.originalUrl), { code: "internal_error", message: "Something went wrong on our side; it has been logged." }));
  };
}
