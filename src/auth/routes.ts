import { Router, type Request, type Response } from "express";
import type { Config } from "../config.ts";
import type { Pools } from "../db/pools.ts";
import { pgSettingsFor, userIdentity, withRequestRole } from "../db/request-role.ts";
import type { DatabaseUrls } from "../db/urls.ts";
import { AppError } from "../http/errors.ts";
import { authenticate } from "./authenticate.ts";
import { Bodies, parseBody } from "./bodies.ts";
import type { Passwords } from "./passwords.ts";
import { rateLimit, tooManyRequests } from "./rate-limit.ts";
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

/** The /auth/* routes of ARCHITECTURE section 4: HTTP and crypto here, every rule in SQL. */
export function authRoutes(deps: AuthDeps): Router {
  const { config, pools, roles, passwords } = deps;
  const owner = pools.owner;
  const limits = config.auth.rateLimits;
  const router = Router();

  /** Reads the signed-in user through row-level security, as GraphQL would. */
  const readUser = async (subject: TokenSubject): Promise<UserRow> => {
    const row = await withRequestRole(pools.authenticator, pgSettingsFor(userIdentity(subject), roles), async (client) => {
      const { rows } = await client.query<UserRow>('select * from app_public."current_user"()');
      return rows[0];
    });
    if (!row?.id) throw new AppError(401, "session_ended", "This session has ended; sign in again.");
    return row;
  };

  const sessionResponse = async (subject: TokenSubject, refreshToken: string) => ({
    user: userJson(await readUser(subject)),
    accessToken: signAccessToken(config.jwt, subject),
    refreshToken,
    expiresIn: config.jwt.accessTtlSeconds,
  });

  const requireUser = async (req: Request): Promise<TokenSubject> => {
    const subject = await authenticate({ jwt: config.jwt, ownerPool: owner }, req.get("authorization"));
    if (!subject) throw new AppError(401, "unauthenticated", "Sign in first: send Authorization: Bearer <access token>.");
    return subject;
  };

  const userAgent = (req: Request) => req.get("user-agent") ?? null;
  const emailOf = (req: Request) => (typeof req.body?.email === "string" ? req.body.email.trim() : undefined);

  router.post("/register", rateLimit(owner, "register_ip", limits.registerIp, (req) => req.ip), async (req, res) => {
    const body = parseBody(Bodies.register, req.body);
    const hash = await passwords.hash(body.password);
    const { rows } = await owner.query<{ user_id: string; session_id: string; refresh_token: string }>(
      "select * from app_private.register($1, $2, $3, $4, $5, $6, $7)",
      [body.email, body.name, hash, config.publicUrl, userAgent(req), req.ip, config.jwt.refreshTtlSeconds],
    );
    const row = rows[0]!;
    res.status(201).json(await sessionResponse({ userId: row.user_id, sessionId: row.session_id }, row.refresh_token));
  });

  router.post(
    "/login",
    rateLimit(owner, "login_ip", limits.loginIp, (req) => req.ip),
    rateLimit(owner, "login_email", limits.loginEmail, emailOf),
    async (req, res) => {
      const body = parseBody(Bodies.login, req.body);
      const { rows } = await owner.query<{ user_id: string | null; password_hash: string | null; locked_until: Date | null }>(
        "select * from app_private.find_login($1)",
        [body.email],
      );
      const account = rows[0];
      if (!account?.user_id || !account.password_hash) {
        await passwords.verifyAgainstNothing(body.password);
        throw INVALID_CREDENTIALS();
      }
      if (account.locked_until) throw accountLocked(account.locked_until);
      if (!(await passwords.verify(account.password_hash, body.password))) {
        const { lockout } = config.auth;
        await owner.query("select app_private.login_failed($1, $2, make_interval(secs => $3), make_interval(secs => $3))", [
          account.user_id,
          lockout.max,
          lockout.windowSeconds,
        ]);
        throw INVALID_CREDENTIALS();
      }
      const rehash = passwords.needsRehash(account.password_hash) ? await passwords.hash(body.password) : null;
      const session = await owner.query<{ session_id: string; refresh_token: string }>(
        "select * from app_private.login_succeeded($1, $2, $3, $4, $5)",
        [account.user_id, rehash, userAgent(req), req.ip, config.jwt.refreshTtlSeconds],
      );
      const opened = session.rows[0]!;
      res.json(await sessionResponse({ userId: account.user_id, sessionId: opened.session_id }, opened.refresh_token));
    },
  );

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

  router.post(
    "/forgot-password",
    rateLimit(owner, "forgot_password_email", limits.forgotPasswordEmail, emailOf),
    async (req, res) => {
      const body = parseBody(Bodies.forgotPassword, req.body);
      await owner.query("select app_private.request_password_reset($1, $2)", [body.email, config.publicUrl]);
      res.status(202).json({ message: "If an account uses this address, a reset link is on its way." });
    },
  );

  router.post("/reset-password", async (req, res) => {
    const body = parseBody(Bodies.resetPassword, req.body);
    const hash = await passwords.hash(body.password);
    await owner.query("select app_private.reset_password($1, $2)", [body.token, hash]);
    res.json({ message: "Your password has been changed and every session signed out; sign in with the new password." });
  });

  router.post("/verify-email", async (req, res) => {
    const body = parseBody(Bodies.verifyEmail, req.body);
    const { rows } = await owner.query<UserRow>("select * from app_private.verify_email($1)", [body.token]);
    res.json({ user: userJson(rows[0]!) });
  });

  router.post("/change-password", async (req, res) => {
    const subject = await requireUser(req);
    const body = parseBody(Bodies.changePassword, req.body);
    const { rows } = await owner.query<{ password_hash: string }>(
      "select password_hash from app_private.find_login((select email from app_public.users where id = $1))",
      [subject.userId],
    );
    if (!(await passwords.verify(rows[0]?.password_hash ?? "", body.currentPassword))) {
      throw new AppError(403, "invalid_credentials", "The current password is incorrect.");
    }
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

function accountLocked(until: Date): AppError {
  const seconds = Math.max(1, Math.ceil((until.getTime() - Date.now()) / 1000));
  return new AppError(423, "account_locked", `Too many wrong passwords; this account is locked for ${Math.ceil(seconds / 60)} more minutes.`, {
    headers: { "Retry-After": String(seconds) },
  });
}

