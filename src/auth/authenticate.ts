import type pg from "pg";
import type { Config } from "../config.ts";
import { AppError } from "../http/errors.ts";
import { verifyAccessToken, type VerifiedToken } from "./tokens.ts";

/**
 * Turns an Authorization header into the caller: undefined when there is none, the subject
 * when the token is valid and its session is live, a 401 otherwise (never a silent downgrade).
 */
export async function authenticate(
  deps: { jwt: Config["jwt"]; ownerPool: pg.Pool },
  header: string | undefined,
): Promise<VerifiedToken | undefined> {
  if (header === undefined || header === "") return undefined;
  const match = /^Bearer\s+(\S+)$/i.exec(header);
  if (!match) {
    throw new AppError(401, "invalid_token", 'The Authorization header must be "Bearer <access token>".');
  }
  const subject = verifyAccessToken(deps.jwt, match[1]!);
  const { rows } = await deps.ownerPool.query<{ live: boolean }>("select app_private.session_is_live($1, $2) as live", [
    subject.sessionId,
    subject.userId,
  ]);
  if (!rows[0]?.live) {
    throw new AppError(401, "session_ended", "This session has ended (signed out or expired); sign in again.");
  }
  return subject;
}
