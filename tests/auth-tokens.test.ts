import type { AddressInfo } from "node:net";
import { createClient } from "graphql-ws";
import jwt from "jsonwebtoken";
import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { buildTestApp, type TestApp } from "./helpers/app.ts";
import { graphql, RELAXED_LIMITS, signUp, type SignedUp } from "./helpers/auth.ts";
import { createTestDatabase, type TestDatabase } from "./helpers/database.ts";

let db: TestDatabase;
let api: TestApp;

beforeAll(async () => {
  db = await createTestDatabase();
  api = await buildTestApp(db, { env: RELAXED_LIMITS });
});

afterAll(async () => {
  await api?.close();
  await db?.drop();
});

const me = (token: string) => request(api.app).get("/auth/me").set("Authorization", `Bearer ${token}`);
const refresh = (app: TestApp, refreshToken: string) => request(app.app).post("/auth/refresh").send({ refreshToken });

/** Every way a token can be wrong, with the code the API must answer. */
function forgedTokens(account: SignedUp, secret: string, audience: string, issuer: string) {
  const claims = jwt.decode(account.accessToken) as jwt.JwtPayload;
  const [header, , signature] = account.accessToken.split(".");
  const tamperedPayload = Buffer.from(JSON.stringify({ ...claims, sub: "00000000-0000-4000-8000-000000000000" })).toString("base64url");
  const unsignedHeader = Buffer.from(JSON.stringify({ alg: "none", typ: "JWT" })).toString("base64url");
  const payload = account.accessToken.split(".")[1];
  const base = { sub: claims.sub, sid: claims.sid, role: "user" };
  return [
    ["alg none", `${unsignedHeader}.${payload}.`, "invalid_token"],
    ["wrong secret", jwt.sign(base, "some-other-secret-that-is-long-enough-000000", { audience, issuer }), "invalid_token"],
    ["expired", jwt.sign({ ...base, exp: Math.floor(Date.now() / 1000) - 60 }, secret, { audience, issuer }), "token_expired"],
    ["wrong audience", jwt.sign(base, secret, { audience: "someone-else", issuer }), "invalid_token"],
    ["wrong issuer", jwt.sign(base, secret, { audience, issuer: "https://evil.example.com" }), "invalid_token"],
    ["HS512 instead of HS256", jwt.sign(base, secret, { audience, issuer, algorithm: "HS512" }), "invalid_token"],
    ["tampered payload", `${header}.${tamperedPayload}.${signature}`, "invalid_token"],
    ["not a JWT at all", "hello", "invalid_token"],
  ] as const;
}

describe("access tokens", () => {
  it("carries sub, sid, role, iss, aud and exp and expires after JWT_ACCESS_TTL", async () => {
    const account = await signUp(api);
    const claims = jwt.decode(account.accessToken) as jwt.JwtPayload;
    expect(claims).toMatchObject({ sub: account.id, role: "user", iss: api.config.jwt.issuer, aud: "oddscenes" });
    expect(claims.sid).toMatch(/^[0-9a-f-]{36}$/);
    expect(claims.exp! - claims.iat!).toBe(900);
    expect((await me(account.accessToken)).body.user.email).toBe(account.email);
  });

  it("refuses forged, expired and misaddressed tokens on REST and GraphQL alike", async () => {
    const account = await signUp(api);
    const { secret, audience, issuer } = api.config.jwt;
    for (const [label, token, code] of forgedTokens(account, secret, audience, issuer)) {
      const rest = await me(token);
      expect(rest.status, label).toBe(401);
      expect(rest.body.error.code, label).toBe(code);
      const gql = await graphql(api, "{ currentUser { id } }", { token });
      expect(gql.status, label).toBe(401);
      expect(gql.body.errors[0].extensions.code, label).toBe(code);
      expect(gql.body.data, label).toBeUndefined();
    }
  });

  it("refuses a malformed Authorization header instead of treating the request as anonymous", async () => {
    const res = await request(api.app).post("/graphql").set("Authorization", "Token abc").send({ query: "{ currentUserId }" });
    expect(res.status).toBe(401);
    expect(res.body.errors[0].extensions.code).toBe("invalid_token");
  });

  it("serves the signed-in user to GraphQL", async () => {
    const account = await signUp(api, { name: "Grace Hopper" });
    const res = await graphql(api, "{ currentUser { rowId name email isAdmin emailVerifiedAt } currentUserId }", {
      token: account.accessToken,
    });
    expect(res.body).toEqual({
      data: {
        currentUser: { rowId: account.id, name: "Grace Hopper", email: account.email, isAdmin: false, emailVerifiedAt: null },
        currentUserId: account.id,
      },
    });
  });

  it("authenticates WebSocket operations from the authorization connection parameter", async () => {
    const account = await signUp(api, { name: "Socket User" });
    api.server.listen(0, "127.0.0.1");
    await new Promise((resolve) => api.server.once("listening", resolve));
    const url = `ws://127.0.0.1:${(api.server.address() as AddressInfo).port}/graphql`;
    const run = async (authorization: string) => {
      const client = createClient({ url, webSocketImpl: WebSocket, connectionParams: { authorization }, retryAttempts: 0 });
      try {
        const result: { data?: unknown; errors?: Array<{ message: string; extensions?: { code?: string } }> } = {};
        await new Promise<void>((resolve, reject) =>
          client.subscribe(
            { query: "{ currentUser { name } }" },
            {
              next: (value) => Object.assign(result, value),
              error: (errors) => {
                Object.assign(result, { errors });
                resolve();
              },
              complete: resolve,
            },
          ),
        ).catch(() => undefined);
        return result;
      } finally {
        await client.dispose();
      }
    };
    expect(await run(`Bearer ${account.accessToken}`)).toEqual({ data: { currentUser: { name: "Socket User" } } });
    const refused = await run("Bearer not.a.token");
    expect(refused.data).toBeUndefined();
    expect(refused.errors?.[0]?.extensions?.code).toBe("invalid_token");
    await new Promise((resolve) => api.server.close(resolve));
  });
});

describe("refresh tokens", () => {
  it("rotates on every use and keeps the session", async () => {
    const account = await signUp(api);
    const first = await refresh(api, account.refreshToken);
    expect(first.status).toBe(200);
    expect(first.body.refreshToken).not.toBe(account.refreshToken);
    expect(first.body.user.id).toBe(account.id);
    const second = await refresh(api, first.body.refreshToken);
    expect(second.status).toBe(200);
    expect((jwt.decode(second.body.accessToken) as jwt.JwtPayload).sid).toBe((jwt.decode(account.accessToken) as jwt.JwtPayload).sid);
  });

  it("answers a valid pair when a tab presents the just-rotated token within the grace window", async () => {
    const account = await signUp(api);
    const tabA = await refresh(api, account.refreshToken);
    const tabB = await refresh(api, account.refreshToken);
    expect(tabA.status).toBe(200);
    expect(tabB.status).toBe(200);
    expect(tabB.body.refreshToken).not.toBe(tabA.body.refreshToken);
    // Both tabs can go on; once one of them rotates, the other's sibling is spent.
    expect((await me(tabA.body.accessToken)).status).toBe(200);
    const next = await refresh(api, tabA.body.refreshToken);
    expect(next.status).toBe(200);
    expect((await me(next.body.accessToken)).status).toBe(200);
  });

  it("revokes the whole session when an older token is presented again", async () => {
    const account = await signUp(api);
    const first = await refresh(api, account.refreshToken);
    const second = await refresh(api, first.body.refreshToken);
    expect(second.status).toBe(200);

    const replay = await refresh(api, account.refreshToken);
    expect(replay.status).toBe(401);
    expect(replay.body.error.code).toBe("refresh_token_reused");
    expect((await refresh(api, second.body.refreshToken)).body.error.code).toBe("session_ended");
    expect((await me(second.body.accessToken)).body.error.code).toBe("session_ended");
  });

  it("revokes the session when the parent comes back after the grace window", async () => {
    const noGrace = await buildTestApp(db, { env: { ...RELAXED_LIMITS, REFRESH_REUSE_GRACE: "0" } });
    try {
      const account = await signUp(noGrace);
      const rotated = await refresh(noGrace, account.refreshToken);
      expect(rotated.status).toBe(200);
      const late = await refresh(noGrace, account.refreshToken);
      expect(late.status).toBe(401);
      expect(late.body.error.code).toBe("refresh_token_reused");
      expect((await me(rotated.body.accessToken)).status).toBe(401);
    } finally {
      await noGrace.close();
    }
  });

  it("refuses unknown tokens and limits refreshes per session", async () => {
    expect((await refresh(api, "A".repeat(43))).body.error.code).toBe("invalid_refresh_token");
    const limited = await buildTestApp(db, { env: { ...RELAXED_LIMITS, RATE_LIMIT_REFRESH_SESSION: "2/1m" } });
    try {
      const account = await signUp(limited);
      const a = await refresh(limited, account.refreshToken);
      const b = await refresh(limited, a.body.refreshToken);
      expect(b.status).toBe(200);
      const c = await refresh(limited, b.body.refreshToken);
      expect(c.status).toBe(429);
      expect(c.body.error.code).toBe("rate_limited");
      expect(Number(c.headers["retry-after"])).toBeGreaterThan(0);
      // The limited attempt did not spend the token: it works once the window allows.
      await db.root.query("delete from app_private.rate_limits where bucket = 'refresh_session'");
      expect((await refresh(limited, b.body.refreshToken)).status).toBe(200);
    } finally {
      await limited.close();
    }
  });
});

describe("signing out", () => {
  it("logout with the refresh token ends that session at once, access token included", async () => {
    const account = await signUp(api);
    const res = await request(api.app).post("/auth/logout").send({ refreshToken: account.refreshToken });
    expect(res.status).toBe(204);
    expect((await me(account.accessToken)).body.error.code).toBe("session_ended");
    const gql = await graphql(api, "{ currentUserId }", { token: account.accessToken });
    expect(gql.status).toBe(401);
    expect(gql.body.errors[0].extensions.code).toBe("session_ended");
    expect((await refresh(api, account.refreshToken)).body.error.code).toBe("session_ended");
  });

  it("logout with a Bearer token ends only that session", async () => {
    const account = await signUp(api);
    const other = await request(api.app).post("/auth/login").send({ email: account.email, password: account.password });
    const res = await request(api.app).post("/auth/logout").set("Authorization", `Bearer ${account.accessToken}`);
    expect(res.status).toBe(204);
    expect((await me(account.accessToken)).status).toBe(401);
    expect((await me(other.body.accessToken)).status).toBe(200);
  });

  it("logout needs a token of some kind", async () => {
    const res = await request(api.app).post("/auth/logout").send({});
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe("validation_failed");
  });

  it("logout-all ends every session of the user and no one else's", async () => {
    const account = await signUp(api);
    const second = await request(api.app).post("/auth/login").send({ email: account.email, password: account.password });
    const stranger = await signUp(api);
    const res = await request(api.app).post("/auth/logout-all").set("Authorization", `Bearer ${account.accessToken}`);
    expect(res.status).toBe(204);
    expect((await me(account.accessToken)).status).toBe(401);
    expect((await me(second.body.accessToken)).status).toBe(401);
    expect((await refresh(api, second.body.refreshToken)).body.error.code).toBe("session_ended");
    expect((await me(stranger.accessToken)).status).toBe(200);
  });

  it("logout-all and /auth/me need a Bearer token", async () => {
    const all = await request(api.app).post("/auth/logout-all");
    expect(all.status).toBe(401);
    expect(all.body.error.code).toBe("unauthenticated");
    expect((await request(api.app).get("/auth/me")).body.error.code).toBe("unauthenticated");
  });
});
