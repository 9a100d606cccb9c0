import { createSecretKey, type KeyObject } from "node:crypto";
import jwt from "jsonwebtoken";
import type { Config } from "../config.ts";
import { AppError } from "../http/errors.ts";

/** Who an access token speaks for. */
export interface TokenSubject {
  userId: string;
  sessionId: string;
}

/** A verified access token: its subject, and when it stops being valid (epoch milliseconds). */
export interface VerifiedToken extends TokenSubject {
  expiresAt: number;
}

/**
 * The signing key as a KeyObject, made once per secret: given the string, jsonwebtoken first
 * tries (and fails) to parse it as a public key on every verify.
 */
const keys = new Map<string, KeyObject>();
function keyOf(secret: string): KeyObject {
  let key = keys.get(secret);
  if (!key) keys.set(secret, (key = createSecretKey(Buffer.from(secret, "utf8"))));
  return key;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** A short-lived HS256 access token: sub (user), sid (session), role, iss, aud, exp. */
export function signAccessToken(settings: Config["jwt"], subject: TokenSubject): string {
  return jwt.sign({ sid: subject.sessionId, role: "user" }, keyOf(settings.secret), {
    algorithm: "HS256",
    subject: subject.userId,
    issuer: settings.issuer,
    audience: settings.audience,
    expiresIn: settings.accessTtlSeconds,
  });
}

/**
 * Verifies signature (HS256 only, so `none` and other algorithms fail), issuer, audience and
 * expiry. Throws a 401 AppError; whether the session is still live is checked separately.
 */
export function verifyAccessToken(settings: Config["jwt"], token: string): VerifiedToken {
  let claims: jwt.JwtPayload | string;
  try {
    claims = jwt.verify(token, keyOf(settings.secret), {
      algorithms: ["HS256"],
      issuer: settings.issuer,
      audience: settings.audience,
    });
  } catch (error) {
    if (error instanceof jwt.TokenExpiredError) {
      throw new AppError(401, "token_expired", "The access token has expired; refresh it and try again.");
    }
    throw new AppError(401, "invalid_token", "The access token is not valid.");
  }
  // An expiry past what this server issues (an Infinity from 1e309, a year ahead) is not ours.
  const latest = Date.now() / 1000 + settings.accessTtlSeconds + 60;
  if (
    typeof claims === "string" ||
    !UUID.test(claims.sub ?? "") ||
    !UUID.test(String(claims.sid ?? "")) ||
    typeof claims.exp !== "number" ||
    !Number.isFinite(claims.exp) ||
    claims.exp > latest
  ) {
    throw new AppError(401, "invalid_token", "The access token is not valid.");
  }
  return { userId: claims.sub!, sessionId: String(claims.sid), expiresAt: claims.exp * 1000 };
}
