import type { RequestHandler } from "express";
import helmet from "helmet";

/** Helmet everywhere; Ruru (GraphiQL) needs its inline scripts, so its pages skip the CSP in development. */
export function securityHeaders(options: { graphiql: boolean }): RequestHandler {
  const strict = helmet();
  const forRuru = helmet({ contentSecurityPolicy: false });
  return (req, res, next) => {
    const ruruPage = options.graphiql && (req.path === "/graphiql" || req.path.startsWith("/ruru-static/"));
    (ruruPage ? forRuru : strict)(req, res, next);
  };
}
