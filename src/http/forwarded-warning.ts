import type { RequestHandler } from "express";
import type { Logger } from "../logger.ts";

/**
 * With TRUST_PROXY unset, X-Forwarded-For is ignored and the peer's address counts. If requests
 * arrive carrying it anyway, the API probably sits behind a proxy nobody named, and then every
 * client counts as the proxy (one shared rate limit for everyone): say so once, loudly.
 */
export function warnOnUntrustedForwardedFor(trustProxy: number | string[] | false, logger: Logger): RequestHandler {
  let warned = false;
  return (req, _res, next) => {
    if (!warned && trustProxy === false && req.headers["x-forwarded-for"] !== undefined) {
      warned = true;
      logger.warn(
        { peer: req.socket.remoteAddress },
        "requests carry X-Forwarded-For but TRUST_PROXY is unset: every client behind that proxy shares one rate limit. Set TRUST_PROXY to the proxy's hop count or address (see README, Behind a proxy).",
      );
    }
    next();
  };
}
