import type pg from "pg";
import type { Rate } from "../config.ts";
import { AppError } from "../http/errors.ts";

/** Counts one hit in Postgres (shared by every instance); returns the seconds to wait, or 0. */
export async function consumeRateLimit(pool: pg.Pool, bucket: string, key: string, rate: Rate): Promise<number> {
  const { rows } = await pool.query<{ retry_after: number }>(
    "select app_private.consume_rate_limit($1, $2, $3, $4) as retry_after",
    [bucket, key, rate.max, rate.windowSeconds],
  );
  return rows[0]?.retry_after ?? 0;
}

export function tooManyRequests(retryAfter: number): AppError {
  return new AppError(429, "rate_limited", `Too many attempts; try again in ${retryAfter} seconds.`, {
    headers: { "Retry-After": String(retryAfter) },
  });
}

/**
 * Counts a hit for `key` and throws 429 with Retry-After once its rate is used up. Keys must be
 * validated input (a bounded email, a user id, a client address), never raw request fields.
 */
export async function enforceRateLimit(pool: pg.Pool, bucket: string, key: string, rate: Rate): Promise<void> {
  const retryAfter = await consumeRateLimit(pool, bucket, key.toLowerCase(), rate);
  if (retryAfter > 0) throw tooManyRequests(retryAfter);
}
