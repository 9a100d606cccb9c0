import cors from "cors";

/** Cross-origin access for the origins in CORS_ORIGINS ("*" allows any); none by default. */
export function corsPolicy(origins: string[]) {
  return cors({
    origin: origins.includes("*") ? true : origins,
    exposedHeaders: ["X-Request-Id", "Retry-After"],
    maxAge: 600,
  });
}
