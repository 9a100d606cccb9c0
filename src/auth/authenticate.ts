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
  const subject = verifyBearer(deps.jwt, header);
  if (subject) await requireLiveSession(deps.ownerPool, subject);
  return subject;
}

/**
 * The token of an Authorization header, verified (signature, issuer, audience, expiry) but with
 * its session not yet checked: for callers that check it themselves, in the request's own
 * round trip (GraphQL queries, see src/graphql/request-connection.ts).
 */
export function verifyBearer(settings: Config["jwt"], header: string | undefined): VerifiedToken | undefined {
  if (header === undefined || header === "") return undefined;
  const match = /^Bearer\s+(\S+)$/i.exec(header);
  if (!match) {
    throw new AppError(401, "invalid_token", 'The Authorization header must be "Bearer <access token>".');
  }
  return verifyAccessToken(settings, match[1]!);
}

/** A 401 session_ended unless the token's session is live (not signed out, revoked or expired). */
async function requireLiveSession(ownerPool: pg.Pool, subject: { userId: string; sessionId: string }): Promise<void> {
  const { rows } = await ownerPool.query<{ live: boolean }>({
    name: "session_is_live",
    text: "select app_private.session_is_live($1, $2) as live",
    values: [subject.sessionId, subject.userId],
  });
  if (!rows[0]?.live) throw sessionEnded();
}

export const sessionEnded = () => new AppError(401, "session_ended", "This session has ended (signed out or expired); sign in again.");
