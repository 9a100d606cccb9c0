import { STATUS_CODES, type Server } from "node:http";
import type { RequestHandler } from "express";
import { AppError } from "./errors.ts";

/**
 * What Node's HTTP parser refuses before Express sees a request (headers too large, invalid
 * header names or values, broken chunked encoding, an unknown method, a request that took too
 * long to arrive, an Expect it cannot meet) is answered in our error shape too, with a code,
 * instead of a bare status line.
 */
export function answerMalformedHttp(server: Server): void {
  server.on("clientError", (error: NodeJS.ErrnoException, socket) => {
    // Nothing can be answered on a socket that is gone or already carries (part of) a response.
    if (!socket.writable || error.code === "ECONNRESET" || (socket as { bytesWritten?: number }).bytesWritten) {
      socket.destroy();
      return;
    }
    const [status, code, message]: [number, string, string] =
      error.code === "HPE_HEADER_OVERFLOW"
        ? [431, "headers_too_large", "The request's headers (or its URL) are too large."]
        : error.code === "ERR_HTTP_REQUEST_TIMEOUT"
          ? [408, "request_timeout", "The request took too long to arrive."]
          : [400, "bad_request", "The request is not valid HTTP."];
    const body = JSON.stringify({ error: { code, message } });
    socket.end(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/json; charset=utf-8\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  });
  server.on("checkExpectation", (_req, res) => {
    res.writeHead(417, { "Content-Type": "application/json; charset=utf-8", Connection: "close" });
    res.end(JSON.stringify({ error: { code: "expectation_failed", message: "Only Expect: 100-continue is supported." } }));
  });
}

/** One media range of an Accept header: type/subtype with optional parameters. */
const MEDIA_RANGE = /^[\w.+*!#$%&'^`|~-]+\/[\w.+*!#$%&'^`|~-]+(\s*;\s*[\w.+!#$%&'^`|~-]+\s*=\s*("[^"]*"|[^;,\s"]+))*$/;

/** An Accept header GraphQL's server cannot parse is refused (406) rather than failing inside it. */
export const refuseUnreadableAccept: RequestHandler = (req, _res, next) => {
  const accept = req.get("accept");
  const readable = accept === undefined || accept.split(",").every((range) => range.trim() === "" || MEDIA_RANGE.test(range.trim()));
  next(readable ? undefined : new AppError(406, "not_acceptable", "The Accept header is not a list of media types (e.g. application/graphql-response+json)."));
};
