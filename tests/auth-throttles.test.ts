import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { clientKey } from "../src/http/client-address.ts";
import { buildTestApp, type TestApp } from "./helpers/app.ts";
import { RELAXED_LIMITS, recipient, signUp, tokenFrom, uniqueEmail } from "./helpers/auth.ts";
import { createTestDatabase, type TestDatabase } from "./helpers/database.ts";
import { runJobs } from "./helpers/jobs.ts";
import { startSmtpSink, type SmtpSink } from "./helpers/smtp.ts";

let db: TestDatabase;
let smtp: SmtpSink;
const apps: TestApp[] = [];

beforeAll(async () => {
  [db, smtp] = await Promise.all([createTestDatabase(), startSmtpSink()]);
  process.env.SMTP_URL = smtp.url;
});

afterAll(async () => {
  await Promise.all(apps.map((app) => app.close()));
  await smtp?.close();
  await db?.drop();
});

/** An app behind a proxy on loopback, so each test can speak as several clients (X-Forwarded-For). */
async function behindProxy(env: Record<string, string>): Promise<TestApp> {
  const app = await buildTestApp(db, { env: { ...RELAXED_LIMITS, TRUST_PROXY: "loopback", ...env } });
  apps.push(app);
  return app;
}

const login = (app: TestApp, email: string, password: string, client: string) =>
  request(app.app).post("/auth/login").set("X-Forwarded-For", client).send({ email, password });

describe("sign-in throttles reveal nothing about which addresses have accounts", () => {
  it("a known and an unknown address get the same answers, attempt after attempt, and no account is locked", async () => {
    const app = await behindProxy({});
    const account = await signUp(app);
    const answers = async (email: string) => {
      const seen = [];
      for (let i = 0; i < 7; i++) {
        const res = await login(app, email, `wrong guess ${i}`, "198.51.100.7");
        seen.push({ status: res.status, body: res.body, retryAfter: res.headers["retry-after"] ? "set" : "none" });
      }
      return seen;
    };
    const known = await answers(account.email);
    // The right password from that client is held back just the same, so it reveals nothing
    // (asked at once: the wait is a second or two, and a slow machine must not outlast it)...
    const rightPassword = await login(app, account.email, account.password, "198.51.100.7");
    const unknown = await answers(uniqueEmail("nobody"));
    expect(known).toEqual(unknown);
    // LOGIN_BACKOFF_AFTER (5) failures, then the client waits; never 423 account_locked.
    expect(known.map((a) => a.status)).toEqual([401, 401, 401, 401, 401, 429, 429]);
    expect(known[5]!.body.error.code).toBe("rate_limited");
    expect(rightPassword.status).toBe(429);
    // ...and the account itself is not locked: another client signs in at once.
    expect((await login(app, account.email, account.password, "198.51.100.8")).status).toBe(200);
  });

  it("slows repeated failures from one client down exponentially, up to LOGIN_BACKOFF_MAX", async () => {
    const app = await behindProxy({ LOGIN_BACKOFF_AFTER: "2", LOGIN_BACKOFF_MAX: "10m" });
    const account = await signUp(app);
    const client = "198.51.100.20";
    const wait = async () => {
      const res = await login(app, account.email, "still guessing", client);
      return res.status === 429 ? Number(res.headers["retry-after"]) : res.status;
    };
    /** Moves the client's last failure `seconds` into the past, as if the attacker had waited. */
    const elapse = (seconds: number) =>
      db.root.query("update app_private.login_failures set last_failed_at = last_failed_at - make_interval(secs => $2) where email = $1", [account.email, seconds]);

    expect(await wait()).toBe(401);
    expect(await wait()).toBe(401);
    expect(await wait()).toBe(1);
    await elapse(1);
    expect(await wait()).toBe(401);
    expect(await wait()).toBe(2);
    await elapse(2);
    expect(await wait()).toBe(401);
    expect(await wait()).toBe(4);
    // Another client is not slowed by this one's failures.
    expect((await login(app, account.email, account.password, "198.51.100.21")).status).toBe(200);
    await db.root.query("update app_private.login_failures set failures = 1000 where email = $1", [account.email]);
    expect(await wait()).toBe(600);
  });

  it("guesses sent in parallel are counted before any password is checked", async () => {
    const app = await behindProxy({ LOGIN_BACKOFF_AFTER: "3", RATE_LIMIT_LOGIN_EMAIL: "5/15m" });
    const account = await signUp(app);
    const oneClient = await Promise.all(Array.from({ length: 20 }, (_, i) => login(app, account.email, `parallel ${i}`, "198.51.100.60")));
    expect(oneClient.filter((res) => res.status === 401)).toHaveLength(3);
    expect(oneClient.filter((res) => res.status === 429)).toHaveLength(17);
    // From many clients at once, the address's window still admits only RATE_LIMIT_LOGIN_EMAIL in all.
    const other = await signUp(app);
    const manyClients = await Promise.all(Array.from({ length: 20 }, (_, i) => login(app, other.email, `spread ${i}`, `198.51.101.${i + 1}`)));
    expect(manyClients.filter((res) => res.status === 401)).toHaveLength(5);
  });
});

describe("guessing through other doors", () => {
  it("change-password is throttled per user, so a stolen access token cannot guess the password", async () => {
    const app = await behindProxy({ RATE_LIMIT_LOGIN_EMAIL: "3/15m" });
    const account = await signUp(app);
    const attempt = () =>
      request(app.app).post("/auth/change-password").set("Authorization", `Bearer ${account.accessToken}`).send({ currentPassword: "a guess", newPassword: "attacker chosen password" });
    for (let i = 0; i < 3; i++) expect((await attempt()).status).toBe(403);
    const limited = await attempt();
    expect(limited.status).toBe(429);
    expect(limited.body.error.code).toBe("rate_limited");
  });

  it("reset requests at the same moment leave exactly one live link", async () => {
    const app = await behindProxy({});
    for (let round = 0; round < 5; round++) {
      const account = await signUp(app);
      await Promise.all([1, 2, 3, 4].map(() => request(app.app).post("/auth/forgot-password").send({ email: account.email })));
      const { rows } = await db.root.query(
        "select count(*)::int as live from app_private.email_tokens where user_id = $1 and purpose = 'reset_password' and used_at is null",
        [account.id],
      );
      expect(rows[0].live).toBe(1);
    }
  });
});

describe("strangers cannot lock a user out", () => {
  it("a device that signed in before keeps signing in, from any network, while strangers hammer the address", async () => {
    const app = await behindProxy({ RATE_LIMIT_LOGIN_EMAIL: "3/15m" });
    const account = await signUp(app);
    const home = "203.0.113.10";
    const first = await login(app, account.email, account.password, home);
    expect(first.status).toBe(200);
    const deviceToken = first.body.deviceToken as string;
    expect(deviceToken).toMatch(/^[A-Za-z0-9_-]{43}$/);

    // Strangers from many addresses, one of them sharing the user's own address (a NAT).
    for (let i = 0; i < 10; i++) await login(app, account.email, "attacker guess", `192.0.2.${i + 1}`);
    for (let i = 0; i < 10; i++) await login(app, account.email, "attacker guess", home);
    expect((await login(app, account.email, account.password, "203.0.113.99")).status).toBe(429);

    const withDevice = (client: string) =>
      request(app.app).post("/auth/login").set("X-Forwarded-For", client).send({ email: account.email, password: account.password, deviceToken });
    const atHome = await withDevice(home);
    expect(atHome.status).toBe(200);
    expect(atHome.body.deviceToken).toBe(deviceToken);
    expect((await withDevice("198.18.0.1")).status).toBe(200);
  });

  it("a device token helps only the account it was given for, and stops helping after 10 wrong passwords", async () => {
    const app = await behindProxy({ RATE_LIMIT_LOGIN_EMAIL: "3/15m", LOGIN_BACKOFF_AFTER: "100" });
    const [owner, other] = await Promise.all([signUp(app), signUp(app)]);
    const deviceToken = (await login(app, owner.email, owner.password, "203.0.113.20")).body.deviceToken;
    const attempt = (email: string, password: string) =>
      request(app.app).post("/auth/login").set("X-Forwarded-For", "203.0.113.20").send({ email, password, deviceToken });

    for (let i = 0; i < 3; i++) await attempt(other.email, "guess");
    expect((await attempt(other.email, other.password)).status).toBe(429);

    // A stolen device token does not buy unlimited guesses: 10 wrong, then it counts for nothing.
    for (let i = 0; i < 10; i++) expect((await attempt(owner.email, `guess ${i}`)).status).toBe(401);
    for (let i = 0; i < 3; i++) expect((await attempt(owner.email, `guess ${i}`)).status).toBe(401);
    expect((await attempt(owner.email, owner.password)).status).toBe(429);
  });

  it("a password reset lets the user in from a new device at once, without lifting the attacker's wait", async () => {
    const app = await behindProxy({ RATE_LIMIT_LOGIN_EMAIL: "3/15m", LOGIN_BACKOFF_AFTER: "3" });
    const account = await signUp(app);
    const attacker = "192.0.2.200";
    for (let i = 0; i < 5; i++) await login(app, account.email, "attacker guess", attacker);
    expect((await login(app, account.email, account.password, "203.0.113.50")).status).toBe(429);

    const cafe = "203.0.113.50";
    await request(app.app).post("/auth/forgot-password").set("X-Forwarded-For", cafe).send({ email: account.email });
    await runJobs(db);
    const token = tokenFrom(await smtp.waitFor((m) => recipient(m) === account.email && m.subject === "Reset your password"));
    const reset = await request(app.app).post("/auth/reset-password").set("X-Forwarded-For", cafe).send({ token, password: "the new secret phrase" });
    expect(reset.status).toBe(200);
    expect(reset.body.deviceToken).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect((await login(app, account.email, "the new secret phrase", cafe)).status).toBe(200);
    expect(
      (await request(app.app).post("/auth/login").set("X-Forwarded-For", "198.18.0.2").send({ email: account.email, password: "the new secret phrase", deviceToken: reset.body.deviceToken })).status,
    ).toBe(200);
    // The attacker's own failures survive the reset: their next guesses keep waiting.
    const { rows } = await db.root.query("select failures from app_private.login_failures where email = $1 and client = $2", [account.email, attacker]);
    expect(rows).toEqual([{ failures: 3 }]);
    // (Its one-second wait has passed by now: one more guess, then a longer wait, not a fresh budget.)
    expect((await login(app, account.email, "attacker guess", attacker)).status).toBe(401);
    expect((await login(app, account.email, "attacker guess", attacker)).status).toBe(429);
  });
});

describe("rate limits count the client Express trusts, not the one it claims to be", () => {
  it("without TRUST_PROXY, a new X-Forwarded-For per request does not dodge the per-IP limit", async () => {
    const app = await buildTestApp(db, { env: { ...RELAXED_LIMITS, RATE_LIMIT_REGISTER_IP: "2/1h" } });
    apps.push(app);
    await db.root.query("delete from app_private.rate_limits where bucket = 'register_ip'");
    const register = (i: number) =>
      request(app.app).post("/auth/register").set("X-Forwarded-For", `10.0.0.${i}`).send({ email: uniqueEmail(), password: "correct horse battery", name: "Spoofer" });
    expect((await register(1)).status).toBe(201);
    expect((await register(2)).status).toBe(201);
    const third = await register(3);
    expect(third.status).toBe(429);
    expect(third.body.error.code).toBe("rate_limited");
  });

  it("with TRUST_PROXY naming the proxy, X-Forwarded-For says who the client is", async () => {
    const app = await behindProxy({ RATE_LIMIT_REGISTER_IP: "2/1h" });
    const register = (client: string) =>
      request(app.app).post("/auth/register").set("X-Forwarded-For", client).send({ email: uniqueEmail(), password: "correct horse battery", name: "Proxied" });
    expect((await register("198.51.100.101")).status).toBe(201);
    expect((await register("198.51.100.102")).status).toBe(201);
    expect((await register("198.51.100.102")).status).toBe(201);
    expect((await register("198.51.100.102")).status).toBe(429);
  });

  it("IPv6 clients are counted by their /64, IPv4-mapped addresses as IPv4", () => {
    expect(clientKey("2001:db8:1:2:aaaa::1")).toBe(clientKey("2001:db8:1:2:bbbb:cccc:dddd:eeee"));
    expect(clientKey("2001:db8:1:2:aaaa::1")).toBe("2001:db8:1:2::/64");
    expect(clientKey("2001:db8:1:3::1")).not.toBe(clientKey("2001:db8:1:2::1"));
    expect(clientKey("::ffff:192.0.2.1")).toBe("192.0.2.1");
    expect(clientKey(undefined)).toBe("unknown");
  });
});

describe("nothing unvalidated keys a rate limit", () => {
  it("an address of 900,000 characters is refused as invalid on every route, and keys nothing", async () => {
    const app = await behindProxy({});
    const huge = `${"a".repeat(900_000)}@example.com`;
    for (const [route, body] of [
      ["/auth/login", { email: huge, password: "whatever it is" }],
      ["/auth/forgot-password", { email: huge }],
      ["/auth/register", { email: huge, password: "correct horse battery", name: "Huge" }],
    ] as const) {
      const res = await request(app.app).post(route).send(body);
      expect(res.status, route).toBe(400);
      expect(res.body.error.code, route).toBe("validation_failed");
    }
    const { rows } = await db.root.query("select count(*)::int as n from app_private.rate_limits where length(key) > 254");
    expect(rows[0].n).toBe(0);
  });
});

describe("concurrent sign-ins from one client", () => {
  it("never trip over each other's bookkeeping (a right password deleting the row an attempt is reading)", async () => {
    // Attempts and successes from one (address, client) interleave on separate connections, as
    // 32 browsers of one office signing in at once do: each attempt must come back with an answer.
    const email = uniqueEmail("race");
    const worker = async () => {
      const client = await db.root.connect();
      try {
        for (let i = 0; i < 150; i++) {
          await client.query("select * from app_private.begin_login_attempt($1, 'office', null, 1000000, 60, 1000000, 60)", [email]);
          if (i % 2 === 0) await client.query("delete from app_private.login_failures where email = $1 and client = 'office'", [email]);
        }
      } finally {
        client.release();
      }
    };
    const outcomes = await Promise.allSettled(Array.from({ length: 4 }, worker));
    expect(outcomes.filter((outcome) => outcome.status === "rejected").map((outcome) => String((outcome as PromiseRejectedResult).reason))).toEqual([]);
  });
});
