import { pinoHttp } from "pino-http";
import type { Logger } from "../logger.ts";

/** One structured line per request, tagged with the request id; 5xx at error, 4xx at warn. */
export function requestLog(logger: Logger) {
  return pinoHttp({
    logger,
    genReqId: (req) => req.id,
    customLogLevel: (_req, res, error) => {
      if (error || res.statusCode >= 500) return "error";
      if (res.statusCode >= 400) return "warn";
      return "info";
    },
    autoLogging: { ignore: (req) => req.url === "/healthz" || req.url === "/metrics" },
    // pino-http invents an Error for every 5xx; only real errors deserve a stack in the log.
    customErrorObject: (_req, _res, error, value: Record<string, unknown>) =>
      error.message.startsWith("failed with status code") ? { ...value, err: undefined } : value,
    serializers: {
      req: (req: { id: unknown; method: string; url: string }) => ({ id: req.id, method: req.method, url: req.url }),
      res: (res: { statusCode: number }) => ({ statusCode: res.statusCode }),
    },
  });
}
