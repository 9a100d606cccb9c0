import { Router, type Request, type Response } from "express";
import type { Config } from "../config.ts";
import type { Pools } from "../db/pools.ts";
import { pgSettingsFor, requestPolicy, userIdentity, withRequestRole } from "../db/request-role.ts";
import type { DatabaseUrls } from "../db/urls.ts";
import { clientKey, ipOf } from "../http/client-address.ts";
import { AppError } from "../http/errors.ts";
import { authenticate } from "./authenticate.ts";
import { Bodies, parseBody } from "./bodies.ts";
import type { Passwords } from "./passwords.ts";
import { enforceRateLimit, tooManyRequests } from "./rate-limit.ts";
import { signAccessToken, type TokenSubject } from "./tokens.ts";

export interface AuthDeps {
  config: Config;
  pools: Pools;
  roles: DatabaseUrls["roles"];
  passwords: Passwords;
}

interface UserRow {
  id: string;
  email: string;
  name: string;
  avatar_url: string | null;
  is_admin: boolean;
  email_verified_at: Date | null;
  created_at: Date;
  updated_at: Date;
}

/** The user as the API shows it: camelCase, no secrets. */
function userJson(row: UserRow) {
  return {
    id: row.id,
    email: row.email,
    name: row.name,
    avatarUrl: row.avatar_url,
    isAdmin: row.is_admin,
    emailVerifiedAt: row.email_verified_at,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

const INVALID_CREDENTIALS = () => new AppError(401, "invalid_credentials", "The email or password is incorrect.");

/** The /auth/* REST routes (listed in the README): HTTP and crypto here, every rule in SQL. */
export function authRoutes(deps: AuthDeps): Router {
  const { config, pools, roles, passwords } = deps;
  const owner = pools.owner;
  const limits = config.auth.rateLimits;
  const router = Router();

  /** Reads the signed-in user through row-level security, as GraphQL would. */
  const readUser = async (subject: TokenSubject): Promise<UserRow> => {
    const policy = requestPolicy(config, roles);
    const row = await withRequestRole(pools.authenticator, pgSettingsFor(userIdentity(subject), policy), async (client) => {
      const { rows } = await client.query<UserRow>('select * from app_public."current_user"()');
      return rows[0];
    });
    if (!row?.id) throw new AppError(401, "session_ended", "This session has ended; sign in again.");
    return row;
  };

  const sessionResponse = async (subject: TokenSubject, refreshToken: string, deviceToken?: string | null) => ({
    user: userJson(await readUser(subject)),
    accessToken: signAccessToken(config.jwt, subject),
    refreshToken,
    expiresIn: config.jwt.accessTtlSeconds,
    ...(deviceToken ? { deviceToken } : {}),
  });

  const requireUser = async (req: Request): Promise<TokenSubject> => {
    const subject = await authenticate({ jwt: config.jwt, ownerPool: owner }, req.get("authorization"));
    if (!subject) throw new AppError(401, "unauthenticated", "Sign in first: send Authorization: Bearer <access token>.");
    return subject;
  };

  const userAgent = (req: Request) => req.get("user-agent") ?? null;
  // Bodies are validated before anything is keyed on them, so no raw field reaches a rate limit.
  const client = (req: Request) => clientKey(ipOf(req) ?? undefined);

  router.post("/register", async (req, res) => {
    const body = parseBody(Bodies.register, req.body);
    await enforceRateLimit(owner, "register_ip", client(req), limits.registerIp);
    const hash = await passwords.hash(body.password);
    const { rows } = await owner.query<{ user_id: string; session_id: string; refresh_token: string; device_token: string }>(
      "select * from app_private.register($1, $2, $3, $4, $5, $6)",
      [body.email, body.name, hash, userAgent(req), ipOf(req), config.jwt.refreshTtlSeconds],
    );
    const row = rows[0]!;
    res.status(201).json(await sessionResponse({ userId: row.user_id, sessionId: row.session_id }, row.refresh_token, row.device_token));
  });

  /**
   * Every answer and its timing are the same whether or not the address has an account: a
   * throttled client gets 429 with Retry-After either way, never a per-account lock. The attempt
   * is reserved (counted as a failure) before the password is checked, so parallel guesses count
   * at once; a right password takes it back. A device token from an earlier sign-in on this
   * device exempts it from what strangers' failures on the address would cause.
   */
  router.post("/login", async (req, res) => {
    const body = parseBody(Bodies.login, req.body);
    await enforceRateLimit(owner, "login_ip", client(req), limits.loginIp);
    const { backoff } = config.auth;
    const attempt = await owner.query<{ retry_after: number; device_id: string | null }>(
      "select * from app_private.begin_login_attempt($1, $2, $3, $4, $5, $6, $7)",
      [body.email, client(req), body.deviceToken ?? null, backoff.after, backoff.maxSeconds, limits.loginEmail.max, limits.loginEmail.windowSeconds],
    );
    const { retry_after: retryAfter, device_id: deviceId } = attempt.rows[0]!;
    if (retryAfter > 0) throw tooManyRequests(retryAfter);

    const { rows } = await owner.query<{ user_id: string | null; password_hash: string | null }>(
      "select * from app_private.find_login($1)",
      [body.email],
    );
    const account = rows[0];
    const verified = account?.user_id && account.password_hash
      ? await passwords.verify(account.password_hash, body.password)
      : await passwords.verifyAgainstNothing(body.password).then(() => false);
    if (!verified || !account?.user_id || !account.password_hash) {
      // Recorded in the account's security activity; an unknown address takes the same steps.
      await owner.query("select app_private.record_sign_in_failure($1, $2, $3)", [account?.user_id ?? null, ipOf(req), userAgent(req)]);
      throw INVALID_CREDENTIALS();
    }

    const rehash = passwords.needsRehash(account.password_hash) ? await passwords.hash(body.password) : null;
    const session = await owner.query<{ session_id: string; refresh_token: string; device_token: string | null }>(
      "select * from app_private.login_succeeded($1, $2, $3, $4, $5, $6, $7, $8)",
      [account.user_id, body.email, client(req), deviceId, rehash, userAgent(req), ipOf(req), config.jwt.refreshTtlSeconds],
    );
    const opened = session.rows[0]!;
    res.json(await sessionResponse({ userId: account.user_id, sessionId: opened.session_id }, opened.refresh_token, opened.device_token ?? body.deviceToken));
  });

  router.post("/refresh", async (req, res) => {
    const body = parseBody(Bodies.refresh, req.body);
    const { rows } = await owner.query<{
      outcome: string;
      user_id: string;
      session_id: string;
      refresh_token: string;
      retry_after: number | null;
    }>("select * from app_private.rotate_refresh_token($1, $2, $3, $4, $5)", [
      body.refreshToken,
      config.jwt.reuseGraceSeconds,
      config.jwt.refreshTtlSeconds,
      limits.refreshSession.max,
      limits.refreshSession.windowSeconds,
    ]);
    const result = rows[0]!;
    switch (result.outcome) {
      case "rotated":
      case "rotated_in_grace":
        res.json(await sessionResponse({ userId: result.user_id, sessionId: result.session_id }, result.refresh_token));
        return;
      case "rate_limited":
        throw tooManyRequests(result.retry_after ?? 1);
      case "reused":
        req.log.warn({ sessionId: result.session_id }, "refresh token reused: session revoked");
        throw new AppError(
          401,
          "refresh_token_reused",
          "This refresh token was already used, so the session has been signed out to be safe; sign in again.",
        );
      case "session_ended":
        throw new AppError(401, "session_ended", "This session has ended (signed out or expired); sign in again.");
      default:
        throw new AppError(401, "invalid_refresh_token", "The refresh token is not valid.");
    }
  });

  router.post("/logout", async (req, res) => {
    const body = parseBody(Bodies.logout, req.body);
    if (body.refreshToken) {
      await owner.query("select app_private.revoke_session_by_refresh_token($1, 'logout')", [body.refreshToken]);
    } else if (req.get("authorization")) {
      const subject = await requireUser(req);
      await owner.query("select app_private.revoke_session($1, 'logout')", [subject.sessionId]);
    } else {
      throw new AppError(400, "validation_failed", "Send the refresh token in the body or an Authorization: Bearer header.");
    }
    res.status(204).end();
  });

  router.post("/logout-all", async (req, res) => {
    const subject = await requireUser(req);
    await owner.query("select app_private.revoke_user_sessions($1, null, 'logout_all')", [subject.userId]);
    res.status(204).end();
  });

  router.post("/forgot-password", async (req, res) => {
    const body = parseBody(Bodies.forgotPassword, req.body);
    await enforceRateLimit(owner, "forgot_password_email", body.email, limits.forgotPasswordEmail);
    await owner.query("select app_private.request_password_reset($1)", [body.email]);
    res.status(202).json({ message: "If an account uses this address, a reset link is on its way." });
  });

  router.post("/reset-password", async (req, res) => {
    const body = parseBody(Bodies.resetPassword, req.body);
    const hash = await passwords.hash(body.password);
    const { rows } = await owner.query<{ device_token: string }>("select * from app_private.reset_password($1, $2, $3)", [
      body.token,
      hash,
      client(req),
    ]);
    res.json({
      message: "Your password has been changed and every session signed out; sign in with the new password.",
      deviceToken: rows[0]!.device_token,
    });
  });

  router.post("/resend-verification", async (req, res) => {
    const subject = await requireUser(req);
    parseBody(Bodies.resendVerification, req.body);
    await enforceRateLimit(owner, "resend_verification", subject.userId, limits.resendVerification);
    await owner.query("select app_private.resend_verification($1)", [subject.userId]);
    res.status(202).json({ message: "A new confirmation link is on its way; older links no longer work." });
  });

  router.post("/verify-email", async (req, res) => {
    const body = parseBody(Bodies.verifyEmail, req.body);
    const { rows } = await owner.query<UserRow>("select * from app_private.verify_email($1)", [body.token]);
    res.json({ user: userJson(rows[0]!) });
  });

  /** The caller's current password, checked (403 invalid_credentials), with a budget per user so a stolen access token cannot guess it. */
  const requireCurrentPassword = async (userId: string, currentPassword: string) => {
    await enforceRateLimit(owner, "change_password_user", userId, limits.loginEmail);
    const { rows } = await owner.query<{ password_hash: string }>(
      "select password_hash from app_private.find_login((select email from app_public.users where id = $1))",
      [userId],
    );
    if (!(await passwords.verify(rows[0]?.password_hash ?? "", currentPassword))) {
      throw new AppError(403, "invalid_credentials", "The current password is incorrect.");
    }
  };

  /**
   * A new address: a confirmation link goes there, a notice to the current one; the address
   * changes when the link is used. The answer is the same whether another account has the
   * address or not (its owner is told someone tried).
   */
  router.post("/change-email", async (req, res) => {
    const subject = await requireUser(req);
    const body = parseBody(Bodies.changeEmail, req.body);
    await requireCurrentPassword(subject.userId, body.currentPassword);
    // Each request mails two addresses (one of them maybe a stranger's): as few as verification emails.
    await enforceRateLimit(owner, "change_email_user", subject.userId, limits.resendVerification);
    // ...and per address asked for, so several accounts together cannot flood one mailbox either.
    await enforceRateLimit(owner, "change_email_address", body.newEmail, limits.resendVerification);
    await owner.query("select app_private.request_email_change($1, $2)", [subject.userId, body.newEmail]);
    res.status(202).json({ message: `If ${body.newEmail} can be used, a confirmation link is on its way there; your address changes when it is opened.` });
  });

  router.post("/confirm-email-change", async (req, res) => {
    const body = parseBody(Bodies.confirmEmailChange, req.body);
    const { rows } = await owner.query<UserRow>("select * from app_private.confirm_email_change($1)", [body.token]);
    res.json({ user: userJson(rows[0]!) });
  });

  /**
   * Deletes the caller's account (with the password): refused while it would leave an
   * organization with members but no owner, or a subscription billing. The account stops at once
   * (sessions end, sign-in refused); a job deletes it and a confirmation is emailed.
   */
  router.post("/delete-account", async (req, res) => {
    const subject = await requireUser(req);
    const body = parseBody(Bodies.deleteAccount, req.body);
    await requireCurrentPassword(subject.userId, body.password);
    await owner.query("select app_private.request_account_deletion($1)", [subject.userId]);
    res.status(202).json({ message: "Your account is closed and will be deleted in a moment; a confirmation is on its way by email." });
  });

  /** The document of a data export (requestDataExport), by the token of its emailed link (24 hours). */
  router.post("/data-export", async (req, res) => {
    const body = parseBody(Bodies.dataExport, req.body);
    const { rows } = await owner.query<{ document: unknown }>("select app_private.data_export_by_token($1) as document", [body.token]);
    res.attachment("oddscenes-export.json").json(rows[0]!.document);
  });

  router.post("/change-password", async (req, res) => {
    const subject = await requireUser(req);
    const body = parseBody(Bodies.changePassword, req.body);
    await requireCurrentPassword(subject.userId, body.currentPassword);
    await owner.query("select app_private.change_password($1, $2, $3)", [
      subject.userId,
      subject.sessionId,
      await passwords.hash(body.newPassword),
    ]);
    res.json({ message: "Your password has been changed; your other sessions were signed out." });
  });

  router.get("/me", async (req, res: Response) => {
    const subject = await requireUser(req);
    res.json({ user: userJson(await readUser(subject)) });
  });

  return router;
}
