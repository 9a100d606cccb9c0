/**
 * A property-based fuzz of the whole HTTP surface with a fixed seed: every REST route, /graphql
 * and /webhooks/stripe receive malformed and hostile requests (wrong methods, bad bodies, bad
 * encodings, forged tokens, odd headers, hostile GraphQL documents and variables…), generated
 * deterministically by a seeded PRNG, and every answer must keep the API's contract:
 *
 * 1. no status >= 500 (Stripe is configured, so no route is legitimately "unavailable");
 * 2. every 4xx carries a stable machine-readable code (`{ error: { code, message } }` on REST,
 *    `errors[].extensions.code` on GraphQL) and no body leaks a stack trace or an internal path;
 * 3. every request is answered within SLOW_MS, and afterwards the server is healthy and its
 *    memory has not grown past RSS_GROWTH_LIMIT (and the JS heap, after a full GC, past
 *    HEAP_GROWTH_LIMIT).
 *
 * Violations are collected per group (REST, GraphQL, webhook) and asserted once per group, so a
 * failure lists every offending case at once, de-duplicated by (route, case kind, status, problem).
 * The requests go to the app's own HTTP server (createApp's `server`, listening on a free port)
 * through supertest, and through raw sockets for what an HTTP client library refuses to send.
 */
import { createHmac } from "node:crypto";
import { appendFileSync } from "node:fs";
import http from "node:http";
import v8 from "node:v8";
import vm from "node:vm";
import type { AddressInfo } from "node:net";
import net from "node:net";
import { brotliCompressSync, deflateSync, gzipSync } from "node:zlib";
import { getIntrospectionQuery } from "postgraphile/graphql";
import request from "supertest";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { signAccessToken } from "../src/auth/tokens.ts";
import { buildTestApp, type TestApp } from "./helpers/app.ts";
import { RELAXED_LIMITS, signUp, type SignedUp } from "./helpers/auth.ts";
import { createTestDatabase, type TestDatabase } from "./helpers/database.ts";
import { startFakeStripe, STRIPE_TEST, stripeEnv, stripeEvent, type FakeStripe } from "./helpers/stripe.ts";
import { arrangeTenants, gqlOk, type Tenants } from "./helpers/tenants.ts";

// ------------------------------------------------------------------------------------------------
// Settings
// ------------------------------------------------------------------------------------------------

const SEED = 0x5eedf022;
/** Requests in flight at once (each lane of cases is sequential; lanes run side by side). */
const CONCURRENCY = 4;
/** Random combinations of mutations per REST route, on top of the catalogue. */
const RANDOM_PER_REST_ROUTE = 40;
const RANDOM_GRAPHQL = 150;
const RANDOM_WEBHOOK = 80;
/** A single request slower than this is a violation: one request must not be able to stall the server. */
const SLOW_MS = 5_000;
/** Past this the client gives up on a request (and records it as unanswered). */
const HARD_TIMEOUT_MS = 15_000;
/**
 * RSS may grow by at most this much over the whole run. RSS is the allocator's high-water mark,
 * not live memory: measured on this suite, the first pass over the REST cases (bodies of 100 KB to
 * 2 MB, zlib streams, V8 growing its heap from ~125 to ~195 MB) lifts RSS by 250-290 MB, and
 * running the same cases twice more adds under 10 MB, while the heap after a full GC stays flat.
 * 512 MB leaves room for that plateau on a slower or busier machine; a server that kept what it
 * was sent, or forked work per request, would cross it.
 */
const RSS_GROWTH_LIMIT = 512 * 1024 * 1024;
/**
 * The sharper leak check: JS heap plus external memory (Buffers) after a full GC. Measured growth
 * over the run is ~35 MB (PostGraphile's document caches, the pools); the requests carry a few
 * hundred MB in all, so retaining even a fraction of them would cross this.
 */
const HEAP_GROWTH_LIMIT = 128 * 1024 * 1024;
const K = 1024;

// ------------------------------------------------------------------------------------------------
// Seeded PRNG (mulberry32)
// ------------------------------------------------------------------------------------------------

class Rng {
  #state: number;
  constructor(seed: number) {
    this.#state = seed >>> 0;
  }
  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
  /** `count` distinct items, in the order drawn. */
  sample<T>(items: readonly T[], count: number): T[] {
    const pool = [...items];
    const out: T[] = [];
    while (out.length < count && pool.length > 0) out.push(pool.splice(this.int(pool.length), 1)[0]!);
    return out;
  }
  bytes(n: number): Buffer {
    const out = Buffer.alloc(n);
    for (let i = 0; i < n; i++) out[i] = this.int(256);
    return out;
  }
  printable(n: number): string {
    let out = "";
    for (let i = 0; i < n; i++) out += String.fromCharCode(0x20 + this.int(0x5f));
    return out;
  }
}

// ------------------------------------------------------------------------------------------------
// JSON with the values JSON.stringify cannot write (1e309, 2^53+1, raw bytes)
// ------------------------------------------------------------------------------------------------

/** JSON text spliced in verbatim. */
class Raw {
  readonly text: string;
  constructor(text: string) {
    this.text = text;
  }
}

/** Bytes spliced in verbatim (invalid UTF-8 inside a string, for instance). */
class Bytes {
  readonly bytes: Buffer;
  constructor(bytes: Buffer) {
    this.bytes = bytes;
  }
}

function serialize(value: unknown, out: Array<string | Buffer>): void {
  if (value instanceof Raw) out.push(value.text);
  else if (value instanceof Bytes) out.push(value.bytes);
  else if (Array.isArray(value)) {
    out.push("[");
    value.forEach((item, i) => {
      if (i > 0) out.push(",");
      serialize(item, out);
    });
    out.push("]");
  } else if (value !== null && typeof value === "object") {
    out.push("{");
    Object.entries(value).forEach(([key, item], i) => {
      if (i > 0) out.push(",");
      out.push(`${JSON.stringify(key)}:`);
      serialize(item, out);
    });
    out.push("}");
  } else out.push(JSON.stringify(value) ?? "null");
}

function toJson(value: unknown): Buffer {
  const out: Array<string | Buffer> = [];
  serialize(value, out);
  return Buffer.concat(out.map((part) => (typeof part === "string" ? Buffer.from(part, "utf8") : part)));
}

const B = (text: string) => Buffer.from(text, "utf8");
/** A JSON string literal whose content has `bytes` in the middle of `text`. */
const stringWithBytes = (text: string, bytes: number[]) =>
  new Bytes(Buffer.concat([B(`"${text.slice(0, Math.ceil(text.length / 2))}`), Buffer.from(bytes), B(`${text.slice(Math.ceil(text.length / 2))}"`)]));
const withNul = (text: string) => `${text.slice(0, Math.ceil(text.length / 2))}\u0000${text.slice(Math.ceil(text.length / 2))}`;
const withSurrogate = (text: string) => `${text.slice(0, Math.ceil(text.length / 2))}\ud800${text.slice(Math.ceil(text.length / 2))}`;

const deepArray = (depth: number) => new Raw(`${"[".repeat(depth)}${"]".repeat(depth)}`);
const deepObject = (depth: number, key = "a") => new Raw(`${`{"${key}":`.repeat(depth)}1${"}".repeat(depth)}`);

/** Values that are wrong for nearly every field: types, sizes, numbers JSON cannot hold, bytes. */
const HOSTILE_VALUES: Array<[name: string, value: unknown]> = [
  ["null", null],
  ["true", true],
  ["zero", 0],
  ["-1", -1],
  ["1.5", 1.5],
  ["2147483648", 2147483648],
  ["-2147483649", -2147483649],
  ["9007199254740993", new Raw("9007199254740993")],
  ["1e309", new Raw("1e309")],
  ["-1e309", new Raw("-1e309")],
  ["1e-400", new Raw("1e-400")],
  ["5000-digit-number", new Raw("9".repeat(5000))],
  ["empty-string", ""],
  ["whitespace", " \t\n "],
  ["nul", "\u0000"],
  ["lone-surrogate", "\ud800"],
  ["reversed-surrogates", "\udc00\ud800"],
  ["100kb-string", "x".repeat(100 * K)],
  ["100kb-emoji", "\u{1F600}".repeat(25 * K)],
  ["empty-array", []],
  ["string-array", ["a", "b"]],
  ["empty-object", {}],
  ["operator-object", { $ne: null, $gt: "" }],
  ["proto-object", new Raw('{"__proto__":{"polluted":true},"constructor":{"prototype":{"polluted":true}}}')],
  ["deep-array-5000", deepArray(5000)],
  ["deep-object-5000", deepObject(5000)],
  ["sql-injection", "' or 1=1; select pg_sleep(10); --"],
  ["format-string", "%s%s%n%x%d${7*7}{{7*7}}"],
  ["crlf", "a\r\nSet-Cookie: x=1\r\n\r\n"],
  ["bidi-bom", "\u202e\ufeff\u2028\u2029"],
  ["numeric-string", "2147483648"],
  ["path-traversal", "../../../../etc/passwd"],
];

// ------------------------------------------------------------------------------------------------
// Requests as drafts, mutated, then put on the wire
// ------------------------------------------------------------------------------------------------

type Group = "REST" | "GraphQL" | "webhook";

interface Session {
  userId: string;
  sessionId: string;
  accessToken: string;
  refreshToken: string;
}

interface Ctx {
  /** The account the case acts as when it authenticates. */
  user: SignedUp;
  /** A fresh session (and access token) of `user`. */
  mint(): Promise<Session>;
}

interface Draft {
  method: string;
  path: string;
  query: string;
  headers: Record<string, string>;
  /** Objects and arrays are sent as JSON; a Buffer as is; undefined sends no body. */
  body: unknown;
  /** undefined: application/json when there is a body; null: no Content-Type at all. */
  contentType: string | null | undefined;
  /** Which Authorization header to send (see authorization()). */
  auth: string;
  encoding?: { header: string; transform: (body: Buffer) => Buffer };
  /** Computes a Stripe-Signature over the final payload (webhook cases). */
  signer?: (payload: Buffer) => string;
}

interface Mutator {
  name: string;
  /** Order of application: 0 method/path, 1 fields, 2 body, 3 content type, 4 encoding, 5 headers. */
  phase: number;
  apply(d: Draft, ctx: Ctx): void | Promise<void>;
  /**
   * Adds kilobytes to the request line or headers. Random combinations take at most one, so they
   * stay under Node's 16 KB header limit (going over it is a case of its own, see transportCases).
   */
  big?: boolean;
}

interface Case {
  group: Group;
  /** Cases of one lane run in order; lanes run side by side. */
  lane: string;
  /** The route under test, e.g. "POST /auth/login". */
  route: string;
  /** The case kind violations are de-duplicated by. */
  kind: string;
  /** Shown with a violation: which random combination, which identity. */
  note?: string;
  user: SignedUp;
  base?: (ctx: Ctx) => Draft | Promise<Draft>;
  mutators?: Mutator[];
  /** Bytes sent on a raw socket (what an HTTP client refuses to produce). */
  raw?: Buffer;
}

interface Wire {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: Buffer | undefined;
}

interface Outcome {
  status: number;
  text: string;
  ms: number;
  error?: string;
}

function setHeader(d: Draft, name: string, value: string): void {
  for (const key of Object.keys(d.headers)) if (key.toLowerCase() === name.toLowerCase()) delete d.headers[key];
  d.headers[name] = value;
}

const mutator = (name: string, phase: number, apply: Mutator["apply"], big = false): Mutator => ({ name, phase, apply, big });

/** `count` distinct mutators in order of application, with at most one big one. */
function combination(rng: Rng, pool: readonly Mutator[], count: number): Mutator[] {
  for (;;) {
    const picked = rng.sample(pool, count);
    if (picked.filter((m) => m.big).length <= 1) return picked.sort((a, b) => a.phase - b.phase);
  }
}

// ------------------------------------------------------------------------------------------------
// Test fixture
// ------------------------------------------------------------------------------------------------

let db: TestDatabase;
let api: TestApp;
let stripe: FakeStripe;
let port: number;
let t: Tenants;
/** An organization of the owner without a subscription, so billing mutations reach Stripe. */
let fuzzOrgId: string;
let restUsers: Map<string, SignedUp>;
let rssBefore = 0;
let heapBefore = 0;

/** A full garbage collection (exposing V8's gc() at run time), so heap figures are live memory. */
function collectGarbage(): void {
  v8.setFlagsFromString("--expose-gc");
  const gc = vm.runInNewContext("gc") as () => void;
  gc();
  gc();
}

const liveHeap = () => {
  collectGarbage();
  const usage = process.memoryUsage();
  return usage.heapUsed + usage.external;
};

beforeAll(async () => {
  [db, stripe] = await Promise.all([createTestDatabase(), startFakeStripe()]);
  api = await buildTestApp(db, {
    env: {
      ...RELAXED_LIMITS,
      ...stripeEnv(stripe),
      // Limits stay out of the way, so hostile input reaches the code behind them.
      RATE_LIMIT_GRAPHQL_IP: "100000/1m",
      RATE_LIMIT_GRAPHQL_USER: "100000/1m",
      RATE_LIMIT_RESEND_VERIFICATION: "100000/1m",
      LOGIN_BACKOFF_AFTER: "100",
      // X-Forwarded-For from the (loopback) client is honoured, so its garbage reaches req.ip.
      TRUST_PROXY: "loopback",
    },
  });
  api.server.listen(0, "127.0.0.1");
  await new Promise((resolve) => api.server.once("listening", resolve));
  port = (api.server.address() as AddressInfo).port;

  t = await arrangeTenants(api, db, "fuzz");
  fuzzOrgId = (
    await gqlOk(api, t.owner.accessToken, `mutation { createOrganization(input: { slug: "fuzz-billing-org", name: "Fuzz billing" }) { organization { rowId } } }`)
  ).createOrganization.organization.rowId;
  // One account per authenticated REST route, so a logout-all in one lane cannot end another's sessions.
  const laneNames = ["/auth/login", "/auth/refresh", "/auth/logout", "/auth/logout-all", "/auth/forgot-password", "/auth/resend-verification", "/auth/change-password", "/auth/me", "other"];
  const users = await Promise.all(laneNames.map((_, i) => signUp(api, { email: `fuzz-lane-${i}@example.com`, name: `Fuzz lane ${i}` })));
  restUsers = new Map(laneNames.map((name, i) => [name, users[i]!]));
}, 120_000);

afterAll(async () => {
  api?.server.closeAllConnections();
  await new Promise<void>((resolve) => (api?.server.listening ? api.server.close(() => resolve()) : resolve()));
  await api?.close();
  await stripe?.close();
  await db?.drop();
});

/** Opens a session as the API's sign-in would (no password hashing), for a fresh token per request. */
async function mint(user: { id: string; email: string }): Promise<Session> {
  const { rows } = await db.root.query<{ session_id: string; refresh_token: string }>(
    "select session_id, refresh_token from app_private.login_succeeded($1, $2, $3, null, null, $4, $5, $6)",
    [user.id, user.email, "127.0.0.1", "fuzz", "127.0.0.1", 3600],
  );
  const sessionId = rows[0]!.session_id;
  return { userId: user.id, sessionId, accessToken: signAccessToken(api.config.jwt, { userId: user.id, sessionId }), refreshToken: rows[0]!.refresh_token };
}

// ------------------------------------------------------------------------------------------------
// Authorization headers: valid, malformed, forged, expired…
// ------------------------------------------------------------------------------------------------

const b64 = (value: object | string) => Buffer.from(typeof value === "string" ? value : JSON.stringify(value)).toString("base64url");

/** A JWT signed with HMAC, whatever its claims (jsonwebtoken refuses to sign some of these). */
function hmacJwt(payload: object | string, key: string, alg: "HS256" | "HS512" = "HS256", header: object = {}): string {
  const head = b64({ alg, typ: "JWT", ...header });
  const body = b64(payload);
  const signature = createHmac(alg === "HS512" ? "sha512" : "sha256", key).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${signature}`;
}

const AUTH_VARIANTS = [
  "none",
  "valid",
  "lowercase-scheme",
  "tab-separated",
  "bearer-only",
  "bearer-space",
  "basic",
  "two-tokens",
  "not-a-jwt",
  "alg-none",
  "wrong-secret",
  "expired",
  "no-exp",
  "exp-string",
  "exp-1e309",
  "hs512",
  "sub-not-uuid",
  "sid-object",
  "unknown-session",
  "revoked-session",
  "other-audience",
  "kid-injection",
  "huge-claims",
  "bearer-8kb",
  "garbage-segments",
  "empty-segments",
  "many-dots",
  "latin1",
] as const;

async function authorization(variant: string, ctx: Ctx): Promise<string | undefined> {
  const { secret, issuer, audience } = api.config.jwt;
  const now = Math.floor(Date.now() / 1000);
  const claims = async (extra: Record<string, unknown> = {}) => {
    const s = await ctx.mint();
    return { sub: s.userId, sid: s.sessionId, role: "user", iss: issuer, aud: audience, iat: now, exp: now + 600, ...extra };
  };
  switch (variant) {
    case "none":
      return undefined;
    case "valid":
      return `Bearer ${(await ctx.mint()).accessToken}`;
    case "lowercase-scheme":
      return `bearer ${(await ctx.mint()).accessToken}`;
    case "tab-separated":
      return `Bearer\t${(await ctx.mint()).accessToken}`;
    case "bearer-only":
      return "Bearer";
    case "bearer-space":
      return "Bearer    ";
    case "basic":
      return "Basic dXNlcjpwYXNzd29yZA==";
    case "two-tokens": {
      const token = (await ctx.mint()).accessToken;
      return `Bearer ${token}, Bearer ${token}`;
    }
    case "not-a-jwt":
      return "Bearer not.a.jwt";
    case "alg-none":
      return `Bearer ${b64({ alg: "none", typ: "JWT" })}.${b64(await claims())}.`;
    case "wrong-secret":
      return `Bearer ${hmacJwt(await claims(), "someone-elses-secret-that-is-long-enough-0123456789")}`;
    case "expired":
      return `Bearer ${hmacJwt(await claims({ iat: now - 7200, exp: now - 3600 }), secret)}`;
    case "no-exp": {
      const { exp: _exp, ...rest } = await claims();
      return `Bearer ${hmacJwt(rest, secret)}`;
    }
    case "exp-string":
      return `Bearer ${hmacJwt(await claims({ exp: "tomorrow" }), secret)}`;
    case "exp-1e309": {
      const { exp: _exp, ...rest } = await claims();
      return `Bearer ${hmacJwt(`${JSON.stringify(rest).slice(0, -1)},"exp":1e309}`, secret)}`;
    }
    case "hs512":
      return `Bearer ${hmacJwt(await claims(), secret, "HS512")}`;
    case "sub-not-uuid":
      return `Bearer ${hmacJwt(await claims({ sub: "'; drop table app_public.users; --" }), secret)}`;
    case "sid-object":
      return `Bearer ${hmacJwt(await claims({ sid: { $ne: null } }), secret)}`;
    case "unknown-session":
      return `Bearer ${hmacJwt(await claims({ sid: "00000000-0000-4000-8000-000000000000" }), secret)}`;
    case "revoked-session": {
      const s = await ctx.mint();
      await db.root.query("select app_private.revoke_session($1, 'logout')", [s.sessionId]);
      return `Bearer ${s.accessToken}`;
    }
    case "other-audience":
      return `Bearer ${hmacJwt(await claims({ aud: "someone-else", iss: "someone-else" }), secret)}`;
    case "kid-injection":
      return `Bearer ${hmacJwt(await claims(), secret, "HS256", { kid: "../../../../dev/null", jku: "http://evil.example/jwks" })}`;
    case "huge-claims":
      return `Bearer ${hmacJwt(await claims({ junk: "x".repeat(6 * K) }), secret)}`;
    case "bearer-8kb":
      return `Bearer ${"a".repeat(8 * K)}`;
    case "garbage-segments":
      return "Bearer ###.$$$.%%%";
    case "empty-segments":
      return "Bearer ..";
    case "many-dots":
      return `Bearer ${".".repeat(2000)}`;
    case "latin1":
      return "Bearer \u00ff\u00fe\u00e9\u00a0";
    default:
      throw new Error(`unknown auth variant ${variant}`);
  }
}

// ------------------------------------------------------------------------------------------------
// Mutations shared by every route
// ------------------------------------------------------------------------------------------------

const METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE", "PURGE", "PROPFIND"];

const methodMutators = (own: string) =>
  METHODS.filter((m) => m !== own).map((m) =>
    mutator(`method:${m}`, 0, (d) => {
      d.method = m;
    }),
  );

const PATH_VARIANTS: Array<[string, (path: string) => string]> = [
  ["trailing-slash", (p) => `${p}/`],
  ["double-slash", (p) => `/${p}`],
  ["upper-case", (p) => p.toUpperCase()],
  ["encoded-nul", (p) => `${p}%00`],
  ["matrix-param", (p) => `${p};x=1`],
  ["dot-segments", (p) => `/nope/..${p}`],
  ["bad-percent", (p) => `${p}%zz%`],
  ["encoded-slash", (p) => `/%2F${p.slice(1).replaceAll("/", "%2F")}`],
  ["invalid-utf8-percent", (p) => `${p}/%FF%FE%C0%80`],
  ["sub-path", (p) => `${p}/x/y`],
  ["long-8kb", (p) => `${p}/${"a".repeat(8 * K)}`],
];
const pathMutators = () =>
  PATH_VARIANTS.map(([name, change]) =>
    mutator(
      `path:${name}`,
      0,
      (d) => {
        d.path = change(d.path);
      },
      change("/").length > 1000,
    ),
  );

const QUERY_VARIANTS: Array<[string, string]> = [
  ["proto-pollution", "?__proto__[polluted]=1&constructor[prototype][polluted]=1&__proto__.x=1"],
  ["1000-params", `?${Array.from({ length: 1000 }, (_, i) => `p${i}=${i}`).join("&")}`],
  ["bad-percent", "?q=%zz&r=%&s=%E0%A4%A"],
  ["nul", "?q=%00&%00=1"],
  ["nested-brackets", `?a${"[b]".repeat(500)}=1`],
  ["sparse-array", "?a[]=1&a[]=2&a[100000]=3"],
  ["graphql", "?query=%7BcurrentUserId%7D&variables=%7B%7D"],
];
const queryMutators = () =>
  QUERY_VARIANTS.map(([name, query]) =>
    mutator(
      `query:${name}`,
      0,
      (d) => {
        d.query = query;
      },
      query.length > 1000,
    ),
  );

const gzipBomb = gzipSync(Buffer.concat([Buffer.alloc(16 * 1024 * 1024, 0x20), B("{}")]));
const BAD_BODIES: Array<[string, () => Buffer]> = [
  ["empty", () => B("")],
  ["not-json", () => B("not json at all")],
  ["open-brace", () => B("{")],
  ["truncated", () => B('{"email":"a@example.com","pass')],
  ["single-quotes", () => B("{'email': 'a@example.com'}")],
  ["nan", () => B("NaN")],
  ["null", () => B("null")],
  ["true", () => B("true")],
  ["number", () => B("123")],
  ["string", () => B('"just a string"')],
  ["array", () => B("[]")],
  ["array-of-objects", () => B('[{"email":"a@example.com"},{}]')],
  ["two-documents", () => B("{}{}")],
  ["bom", () => B("\ufeff{}")],
  ["trailing-comma", () => B('{"a":1,}')],
  ["comment", () => B("{/* comment */}")],
  ["duplicate-keys", () => B('{"email":"a@example.com","email":{"$ne":null}}')],
  ["raw-control-chars", () => B('{"a":"\u0000\u0001\u001f"}')],
  ["invalid-utf8", () => Buffer.concat([B('{"a":"'), Buffer.from([0xff, 0xfe, 0xc3, 0x28, 0xa0, 0xa1]), B('"}')])],
  ["overlong-utf8", () => Buffer.concat([B('{"a":"'), Buffer.from([0xc0, 0x80, 0xe0, 0x80, 0xaf]), B('"}')])],
  ["cesu-surrogate", () => Buffer.concat([B('{"a":"'), Buffer.from([0xed, 0xa0, 0x80, 0xed, 0xb0, 0x80]), B('"}')])],
  ["utf16le", () => Buffer.from('{"a":"b"}', "utf16le")],
  ["deep-array-100k", () => B(`${"[".repeat(100_000)}${"]".repeat(100_000)}`)],
  ["deep-object-50k", () => toJson(deepObject(50_000))],
  ["unclosed-deep-array", () => B("[".repeat(200_000))],
  ["wide-object-30k-keys", () => B(`{${Array.from({ length: 30_000 }, (_, i) => `"k${i}":${i}`).join(",")}}`)],
  ["oversized-2mb", () => B(`{"a":"${"x".repeat(2 * 1024 * 1024)}"}`)],
  ["form-encoded", () => B("email=a%40example.com&password=x&name=y&__proto__[x]=1")],
  ["binary-noise", () => new Rng(SEED ^ 0xb0d1).bytes(4 * K)],
];
const badBodyMutators = () =>
  BAD_BODIES.map(([name, body]) =>
    mutator(`body:${name}`, 2, (d) => {
      d.body = body();
    }),
  );

const CONTENT_TYPES: Array<[string, string | null]> = [
  ["none", null],
  ["text-plain", "text/plain"],
  ["form", "application/x-www-form-urlencoded"],
  ["multipart", "multipart/form-data; boundary=----fuzz"],
  ["xml", "application/xml"],
  ["json-utf16", "application/json; charset=utf-16"],
  ["json-latin1", "application/json; charset=iso-8859-1"],
  ["json-unknown-charset", "application/json; charset=x-fuzz"],
  ["malformed", "application/json;;;==;"],
  ["vendor-json", "application/vnd.api+json"],
  ["graphql", "application/graphql"],
  ["octet-stream", "application/octet-stream"],
  ["wildcard", "*/*"],
  ["long-parameter", `application/json; x=${"a".repeat(4 * K)}`],
  ["odd-parameters", 'application/json; charset="utf-8"; boundary=x; q=1e309'],
];
const contentTypeMutators = () =>
  CONTENT_TYPES.map(([name, type]) =>
    mutator(
      `content-type:${name}`,
      3,
      (d) => {
        d.contentType = type;
      },
      (type ?? "").length > 1000,
    ),
  );

const ENCODINGS: Array<[string, string, (body: Buffer) => Buffer]> = [
  ["gzip-garbage", "gzip", () => B("this is not gzip data")],
  ["deflate-garbage", "deflate", () => B("this is not deflate data")],
  ["br-garbage", "br", () => B("this is not brotli data")],
  ["gzip-truncated", "gzip", (b) => gzipSync(b).subarray(0, Math.max(10, Math.floor(gzipSync(b).length / 2)))],
  ["gzip-empty", "gzip", () => Buffer.alloc(0)],
  ["gzip-valid", "gzip", (b) => gzipSync(b)],
  ["deflate-valid", "deflate", (b) => deflateSync(b)],
  ["br-valid", "br", (b) => brotliCompressSync(b)],
  ["gzip-bomb-16mb", "gzip", () => gzipBomb],
  ["unknown", "compress", (b) => b],
  ["stacked", "deflate, gzip", (b) => gzipSync(deflateSync(b))],
  ["stacked-garbage", "gzip, gzip, gzip", () => B("garbage")],
  ["identity-upper-case", "IDENTITY", (b) => b],
];
const encodingMutators = () =>
  ENCODINGS.map(([name, header, transform]) =>
    mutator(`content-encoding:${name}`, 4, (d) => {
      d.encoding = { header, transform };
    }),
  );

const HEADER_VARIANTS: Array<[string, Record<string, string>]> = [
  ["xff-garbage", { "X-Forwarded-For": "garbage, 999.999.999.999, ::ffff:zz, ' or 1=1 --" }],
  ["xff-8kb", { "X-Forwarded-For": Array.from({ length: 800 }, (_, i) => `10.0.${i % 256}.1`).join(", ") }],
  ["xff-ipv6-zone", { "X-Forwarded-For": "fe80::1%eth0, [::1]:443, 2001:db8::/64" }],
  ["xff-empty-entries", { "X-Forwarded-For": ", , ,," }],
  ["xff-nonascii", { "X-Forwarded-For": "\u00ff\u00fe.1.1.1" }],
  ["forwarded-garbage", { Forwarded: 'for="[garbage";proto=javascript;host=evil.example, for=unknown' }],
  ["proxy-headers", { "X-Real-IP": "not-an-ip", "X-Forwarded-Proto": "gopher", "X-Forwarded-Host": "evil.example", "X-Forwarded-Port": "99999" }],
  ["long-header-8kb", { "X-Fuzz": "a".repeat(8 * K) }],
  ["many-headers", Object.fromEntries(Array.from({ length: 90 }, (_, i) => [`X-Fuzz-${i}`, `${i}`]))],
  ["request-id-hostile", { "X-Request-Id": "../../etc/passwd<script>" }],
  ["request-id-8kb", { "X-Request-Id": "a".repeat(8 * K) }],
  ["accept-xml", { Accept: "application/xml" }],
  ["accept-nothing", { Accept: "application/json;q=0, */*;q=0" }],
  ["accept-garbage", { Accept: ";;;,,,=/=/" }],
  ["accept-event-stream", { Accept: "text/event-stream" }],
  ["accept-multipart", { Accept: "multipart/mixed" }],
  ["accept-html", { Accept: "text/html" }],
  ["accept-misc", { "Accept-Charset": "utf-7", "Accept-Encoding": "br;q=1e309, *;q=-1", "Accept-Language": "x".repeat(4 * K) }],
  ["origin-evil", { Origin: "http://evil.example" }],
  ["origin-null", { Origin: "null" }],
  ["preflight-headers", { Origin: "http://evil.example", "Access-Control-Request-Method": "DELETE", "Access-Control-Request-Headers": "x-".repeat(2000) }],
  ["host-garbage", { Host: "evil.example:99999" }],
  ["conditional", { "If-None-Match": "*", "If-Modified-Since": "garbage", Range: "bytes=0-0,0-0,0-0,-1" }],
  ["user-agent-8kb", { "User-Agent": "u".repeat(8 * K) }],
  ["latin1-values", { "X-Fuzz": "\u00ff\u00fe\u00e9", "User-Agent": "\u00ff\u00fe" }],
  ["cookie-garbage", { Cookie: "refreshToken=garbage; accessToken=%00%ff; session=; =; ;;; __proto__=x" }],
  ["cookie-8kb", { Cookie: `c=${"a".repeat(8 * K)}` }],
  ["cookie-1000-pairs", { Cookie: Array.from({ length: 1000 }, (_, i) => `c${i}=${i}`).join("; ") }],
  ["method-override", { "X-HTTP-Method-Override": "DELETE", "X-Method-Override": "PUT" }],
];
const headerMutators = () =>
  HEADER_VARIANTS.map(([name, headers]) =>
    mutator(
      `header:${name}`,
      5,
      (d) => {
        for (const [key, value] of Object.entries(headers)) setHeader(d, key, value);
      },
      Object.entries(headers).reduce((size, [key, value]) => size + key.length + value.length, 0) > 1000,
    ),
  );

const authMutators = () =>
  AUTH_VARIANTS.map((variant) =>
    mutator(
      `auth:${variant}`,
      5,
      (d) => {
        d.auth = variant;
      },
      variant === "bearer-8kb" || variant === "huge-claims" || variant === "many-dots",
    ),
  );

/** Hostile values, NUL bytes, lone surrogates and invalid UTF-8 in each field of a JSON body. */
function fieldMutators(template: Record<string, unknown>): Mutator[] {
  const out: Mutator[] = [];
  const onObject = (name: string, change: (body: Record<string, unknown>) => void) =>
    mutator(name, 1, (d) => {
      if (d.body !== null && typeof d.body === "object" && !Buffer.isBuffer(d.body) && !Array.isArray(d.body)) change(d.body as Record<string, unknown>);
    });
  for (const field of Object.keys(template)) {
    const valid = String(template[field] ?? "value");
    out.push(onObject(`missing:${field}`, (b) => delete b[field]));
    for (const [name, value] of HOSTILE_VALUES) out.push(onObject(`value:${field}=${name}`, (b) => (b[field] = value)));
    out.push(onObject(`nul-in:${field}`, (b) => (b[field] = withNul(typeof b[field] === "string" ? (b[field] as string) : valid))));
    out.push(onObject(`surrogate-in:${field}`, (b) => (b[field] = withSurrogate(typeof b[field] === "string" ? (b[field] as string) : valid))));
    out.push(onObject(`invalid-utf8-in:${field}`, (b) => (b[field] = stringWithBytes(typeof b[field] === "string" ? (b[field] as string) : valid, [0xff, 0xc3, 0x28]))));
    out.push(onObject(`overlong-nul-in:${field}`, (b) => (b[field] = stringWithBytes(typeof b[field] === "string" ? (b[field] as string) : valid, [0xc0, 0x80]))));
  }
  out.push(onObject("missing:all", (b) => Object.keys(b).forEach((key) => delete b[key])));
  out.push(onObject("extra:isAdmin", (b) => Object.assign(b, { isAdmin: true, role: "admin", id: "00000000-0000-4000-8000-000000000000" })));
  out.push(onObject("extra:proto", (b) => Object.assign(b, { pollution: new Raw('{"__proto__":{"isAdmin":true}}'), constructor: { prototype: { isAdmin: true } } })));
  out.push(onObject("extra:5000-keys", (b) => Object.assign(b, Object.fromEntries(Array.from({ length: 5000 }, (_, i) => [`k${i}`, i])))));
  return out;
}

/** Everything but field mutations: the same catalogue for every route. */
const transportMutators = (method: string) => [
  ...methodMutators(method),
  ...pathMutators(),
  ...queryMutators(),
  ...badBodyMutators(),
  ...contentTypeMutators(),
  ...encodingMutators(),
  ...headerMutators(),
  ...authMutators(),
];

/** A draft of `method path` with `body`, authenticated as `auth`. */
const draft = (method: string, path: string, body: unknown, auth = "none"): Draft => ({ method, path, query: "", headers: {}, body, contentType: undefined, auth });

// ------------------------------------------------------------------------------------------------
// Raw-socket cases: what Node's HTTP parser itself refuses
// ------------------------------------------------------------------------------------------------

function rawRequest(method: string, path: string, headers: string[], body = "", version = "HTTP/1.1"): Buffer {
  return B([`${method} ${path} ${version}`, ...headers, "Connection: close", "", body].join("\r\n"));
}

function transportCases(group: Group, route: string, method: string, path: string, user: SignedUp, full: boolean): Case[] {
  const body = '{"email":"a@example.com","password":"x"}';
  const common = ["Host: 127.0.0.1", "Content-Type: application/json", `Content-Length: ${body.length}`];
  const raws: Array<[string, Buffer]> = [["header-64kb", rawRequest(method, path, [...common, `X-Fuzz: ${"a".repeat(64 * K)}`], body)]];
  if (full) {
    raws.push(
      ["url-20kb", rawRequest(method, `${path}?${"a".repeat(20 * K)}`, common, body)],
      ["nul-in-header", rawRequest(method, path, [...common, "X-Fuzz: a\u0000b"], body)],
      ["control-char-in-header", rawRequest(method, path, [...common, "X-Fuzz: a\u0001\u007fb"], body)],
      ["invalid-header-name", rawRequest(method, path, [...common, "Bad Header(): x"], body)],
      ["obs-fold", rawRequest(method, path, [...common, "X-Fuzz: a", " folded"], body)],
      ["content-length-and-chunked", rawRequest(method, path, ["Host: 127.0.0.1", "Content-Type: application/json", "Content-Length: 5", "Transfer-Encoding: chunked"], `${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`)],
      ["bad-chunk-size", rawRequest(method, path, ["Host: 127.0.0.1", "Content-Type: application/json", "Transfer-Encoding: chunked"], "zz\r\n{}\r\n0\r\n\r\n")],
      ["duplicate-content-length", rawRequest(method, path, ["Host: 127.0.0.1", "Content-Type: application/json", `Content-Length: ${body.length}`, "Content-Length: 3"], body)],
      ["negative-content-length", rawRequest(method, path, ["Host: 127.0.0.1", "Content-Type: application/json", "Content-Length: -1"], body)],
      ["missing-host", rawRequest(method, path, ["Content-Type: application/json", `Content-Length: ${body.length}`], body)],
      ["http-version-9", rawRequest(method, path, common, body, "HTTP/9.9")],
      ["absolute-form", rawRequest(method, `http://evil.example${path}`, common, body)],
      ["expect-garbage", rawRequest(method, path, [...common, "Expect: garbage"], body)],
      ["unknown-method", rawRequest("FUZZ", path, common, body)],
    );
  }
  return raws.map(([kind, raw]) => ({ group, lane: `${group}:transport`, route, kind: `transport:${kind}`, user, raw }));
}

// ------------------------------------------------------------------------------------------------
// REST cases
// ------------------------------------------------------------------------------------------------

interface RestRoute {
  method: "GET" | "POST";
  path: string;
  /** How a legitimate caller authenticates. */
  auth: "none" | "valid";
  /** A body that passes validation (fresh tokens where the route consumes them). */
  body?: (ctx: Ctx, unique: number) => Record<string, unknown> | Promise<Record<string, unknown>>;
  /** Field names of the body, for field mutations. */
  fields?: Record<string, unknown>;
}

const PASSWORD = "correct horse battery staple";
const TOKEN = "tok_".padEnd(43, "x");

const REST_ROUTES: RestRoute[] = [
  {
    method: "POST",
    path: "/auth/register",
    auth: "none",
    body: (_ctx, unique) => ({ email: `fuzz-register-${unique}@example.com`, password: PASSWORD, name: "Fuzz Register" }),
    fields: { email: "fuzz@example.com", password: PASSWORD, name: "Fuzz Register" },
  },
  {
    method: "POST",
    path: "/auth/login",
    auth: "none",
    body: (ctx) => ({ email: ctx.user.email, password: ctx.user.password, deviceToken: TOKEN }),
    fields: { email: "fuzz@example.com", password: PASSWORD, deviceToken: TOKEN },
  },
  { method: "POST", path: "/auth/refresh", auth: "none", body: async (ctx) => ({ refreshToken: (await ctx.mint()).refreshToken }), fields: { refreshToken: TOKEN } },
  { method: "POST", path: "/auth/logout", auth: "none", body: async (ctx) => ({ refreshToken: (await ctx.mint()).refreshToken }), fields: { refreshToken: TOKEN } },
  { method: "POST", path: "/auth/logout-all", auth: "valid", body: () => ({}), fields: {} },
  { method: "POST", path: "/auth/forgot-password", auth: "none", body: (ctx) => ({ email: ctx.user.email }), fields: { email: "fuzz@example.com" } },
  { method: "POST", path: "/auth/reset-password", auth: "none", body: () => ({ token: TOKEN, password: PASSWORD }), fields: { token: TOKEN, password: PASSWORD } },
  { method: "POST", path: "/auth/resend-verification", auth: "valid", body: () => ({}), fields: {} },
  { method: "POST", path: "/auth/verify-email", auth: "none", body: () => ({ token: TOKEN }), fields: { token: TOKEN } },
  {
    method: "POST",
    path: "/auth/change-password",
    auth: "valid",
    // The new password is the old one, so a success leaves the account as it was.
    body: (ctx) => ({ currentPassword: ctx.user.password, newPassword: ctx.user.password }),
    fields: { currentPassword: PASSWORD, newPassword: PASSWORD },
  },
  { method: "GET", path: "/auth/me", auth: "valid" },
  { method: "GET", path: "/healthz", auth: "none" },
  { method: "GET", path: "/readyz", auth: "none" },
  { method: "GET", path: "/metrics", auth: "none" },
  { method: "GET", path: "/nowhere", auth: "none" },
];

function restCases(): Case[] {
  const rng = new Rng(SEED);
  const cases: Case[] = [];
  let unique = 0;
  for (const route of REST_ROUTES) {
    const label = `${route.method} ${route.path}`;
    const user = restUsers.get(route.path) ?? restUsers.get("other")!;
    const base = async (ctx: Ctx) => draft(route.method, route.path, route.body ? await route.body(ctx, unique++) : undefined, route.auth);
    const fields = route.fields ? fieldMutators(route.fields) : [];
    const all = [...fields, ...transportMutators(route.method)];
    const add = (kind: string, mutators: Mutator[], note?: string) => cases.push({ group: "REST", lane: label, route: label, kind, note, user, base, mutators });
    add("baseline", []);
    for (const m of all) add(m.name, [m]);
    for (let i = 0; i < RANDOM_PER_REST_ROUTE; i++) {
      const picked = combination(rng, all, 2 + rng.int(3));
      add("random", picked, picked.map((m) => m.name).join(" + "));
    }
  }
  cases.push(...transportCases("REST", "POST /auth/login", "POST", "/auth/login", restUsers.get("other")!, true));
  cases.push(...transportCases("REST", "GET /healthz", "GET", "/healthz", restUsers.get("other")!, false));
  return cases;
}

// ------------------------------------------------------------------------------------------------
// GraphQL cases
// ------------------------------------------------------------------------------------------------

const fragmentBomb = (levels: number) =>
  `{ ...F0 } ${Array.from({ length: levels }, (_, i) => (i === levels - 1 ? `fragment F${i} on Query { currentUserId }` : `fragment F${i} on Query { ...F${i + 1} ...F${i + 1} }`)).join(" ")}`;
const nested = (depth: number) => `{ ${"query { ".repeat(depth)}currentUserId${" }".repeat(depth)} }`;

/** Documents (with variables) that are malformed, hostile or expensive. */
function graphqlDocuments(): Array<[kind: string, body: unknown]> {
  const q = (query: string, variables?: unknown, operationName?: unknown) => ({ query, ...(variables === undefined ? {} : { variables }), ...(operationName === undefined ? {} : { operationName }) });
  const tasks = "{ nodes { rowId title } }";
  return [
    ["baseline", q("{ currentUser { rowId name } currentUserId }")],
    ["syntax:empty", q("")],
    ["syntax:whitespace", q("   \n\t  ")],
    ["syntax:open-brace", q("{")],
    ["syntax:close-brace", q("}")],
    ["syntax:unbalanced", q("{ currentUser { rowId } } }")],
    ["syntax:unterminated-string", q('{ searchTasks(query: "abc) { nodes { rowId } } }')],
    ["syntax:nul-char", q("{ currentUser\u0000 { rowId } }")],
    ["syntax:lone-surrogate-escape", q('{ searchTasks(query: "\\ud800") { nodes { rowId } } }')],
    ["syntax:lone-surrogate-char", q('{ searchTasks(query: "\ud800") { nodes { rowId } } }')],
    ["syntax:garbage", q(new Rng(SEED ^ 0x9a4b).printable(2000))],
    ["syntax:json-as-query", q('{"query": "{ currentUserId }"}')],
    ["syntax:int-overflow-literal", q(`{ tasks(first: 99999999999999999999) ${tasks} }`)],
    ["syntax:1e309-literal", q(`{ tasks(first: 1e309) ${tasks} }`)],
    ["syntax:braces-10000", q("{".repeat(10_000))],
    ["unknown:field", q("{ nope }")],
    ["unknown:subfield", q("{ currentUser { nope } }")],
    ["unknown:argument", q("{ currentUser(nope: 1) { rowId } }")],
    ["unknown:type-condition", q("{ ... on Nope { x } }")],
    ["unknown:directive", q("{ currentUser @nope { rowId } }")],
    ["unknown:mutation", q("mutation { nope }")],
    ["unknown:variable", q("{ task(rowId: $nope) { rowId } }")],
    ["unknown:operation-name", q("query A { currentUserId }", undefined, "Nope")],
    ["unknown:enum-value", q(`{ tasks(first: 5, orderBy: [NOPE]) ${tasks} }`)],
    ["first:2147483647", q(`{ tasks(first: 2147483647) ${tasks} }`)],
    ["first:negative", q(`{ tasks(first: -1) ${tasks} }`)],
    ["first:2147483648", q(`{ tasks(first: 2147483648) ${tasks} }`)],
    ["last:2147483647", q(`{ tasks(last: 2147483647) ${tasks} }`)],
    ["offset:2147483647", q(`{ tasks(first: 5, offset: 2147483647) ${tasks} }`)],
    ["offset:negative", q(`{ tasks(first: 5, offset: -5) ${tasks} }`)],
    ["first-and-last", q(`{ tasks(first: 2147483647, last: 2147483647) ${tasks} }`)],
    ["searchTasks:100kb-variable", q(`query ($q: String) { searchTasks(query: $q, first: 5) ${tasks} }`, { q: "x".repeat(100 * K) })],
    ["searchTasks:100kb-words", q(`query ($q: String) { searchTasks(query: $q, first: 5) ${tasks} }`, { q: "word ".repeat(20 * K) })],
    ["searchTasks:100kb-operators", q(`query ($q: String) { searchTasks(query: $q, first: 5) ${tasks} }`, { q: '-"a" or '.repeat(12 * K) })],
    ["searchTasks:nul", q(`query ($q: String) { searchTasks(query: $q, first: 5) ${tasks} }`, { q: "press\u0000release" })],
    ["searchTasks:syntax-soup", q(`query ($q: String) { searchTasks(query: $q, first: 5) ${tasks} }`, { q: `"""-!!&|<->():*\\'"` })],
    ["searchTasks:100kb-literal", q(`{ searchTasks(query: "${"x".repeat(100 * K)}") ${tasks} }`)],
    ["aliases:5000-currentUser", q(`{ ${Array.from({ length: 5000 }, (_, i) => `a${i}: currentUser { rowId }`).join(" ")} }`)],
    ["aliases:1500-compact", q(`{${Array.from({ length: 1500 }, (_, i) => `a${i}:currentUserId`).join(" ")}}`)],
    ["aliases:conflicting", q("{ a: currentUserId a: currentUserIsAdmin }")],
    ["fields:2000-duplicates", q(`{ ${"currentUserId ".repeat(2000)}}`)],
    ["directives:1500-duplicates", q(`{ currentUserId ${"@skip(if: false) ".repeat(1500)}}`)],
    ["variables:1500-unused", q(`query (${Array.from({ length: 1500 }, (_, i) => `$v${i}: Int`).join(", ")}) { currentUserId }`)],
    ["depth:100", q(nested(100))],
    ["depth:3000", q(nested(3000))],
    ["depth:list-literal-5000", q(`{ searchTasks(query: ${"[".repeat(5000)}${"]".repeat(5000)}) { nodes { rowId } } }`)],
    ["depth:filter-literal-2000", q(`{ tasks(first: 5, filter: ${"{ not: ".repeat(2000)}{ title: { equalTo: "x" } }${" }".repeat(2000)}) ${tasks} }`)],
    ["depth:filter-variable-20000", q(`query ($f: TaskFilter) { tasks(first: 5, filter: $f) ${tasks} }`, { f: deepObject(20_000, "not") })],
    ["width:filter-or-5000", q(`query ($f: TaskFilter) { tasks(first: 5, filter: $f) ${tasks} }`, { f: { or: Array.from({ length: 5000 }, (_, i) => ({ title: { equalTo: `t${i}` } })) } })],
    ["width:uuid-in-10000", q(`query ($f: TaskFilter) { tasks(first: 5, filter: $f) ${tasks} }`, { f: { rowId: { in: Array.from({ length: 10_000 }, (_, i) => `00000000-0000-4000-8000-${String(i).padStart(12, "0")}`) } } })],
    ["fragments:bomb-20", q(fragmentBomb(20))],
    ["fragments:bomb-30", q(fragmentBomb(30))],
    ["fragments:cycle", q("{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }")],
    ["fragments:self", q("{ ...A } fragment A on Query { currentUserId ...A }")],
    ["fragments:800-unused", q(`{ currentUserId } ${Array.from({ length: 800 }, (_, i) => `fragment F${i} on Query { currentUserId }`).join(" ")}`)],
    ["fragments:wrong-type", q("{ ... on User { rowId } }")],
    ["introspection:full", q(getIntrospectionQuery({ descriptions: true, specifiedByUrl: true, directiveIsRepeatable: true, schemaDescription: true, inputValueDeprecation: true }))],
    ["introspection:nul-type-name", q('{ __type(name: "\\u0000") { name } }')],
    ["introspection:deep-ofType", q(`{ __schema { types { ${"ofType { ".repeat(60)}name${" }".repeat(60)} } } }`)],
    ["introspection:typename-everywhere", q(`{ __typename ${Array.from({ length: 500 }, (_, i) => `t${i}: __typename`).join(" ")} }`)],
    ["subscription:as-post", q("subscription ($p: UUID!) { taskChanged(projectId: $p) { __typename } }", { p: "00000000-0000-4000-8000-000000000000" })],
    ["subscription:as-post-real-project", q("subscription ($p: UUID!) { taskChanged(projectId: $p) { __typename } }", { p: "PROJECT" })],
    ["subscription:two-roots", q("subscription { a: taskChanged(projectId: \"00000000-0000-4000-8000-000000000000\") { __typename } b: taskCommentAdded(taskId: \"00000000-0000-4000-8000-000000000000\") { __typename } }")],
    ["operations:two-unnamed", q("{ currentUserId } { currentUserIsAdmin }")],
    ["operations:two-named-no-name", q("query A { currentUserId } query B { currentUserIsAdmin }")],
    ["operations:mutation-and-query", q("query A { currentUserId } mutation B { updateCurrentUser(input: {}) { clientMutationId } }", undefined, "B")],
    ["mutation:createTask-nul-title", q("mutation ($p: UUID!, $title: String!) { createTask(input: { task: { projectId: $p, title: $title } }) { task { rowId } } }", { p: "PROJECT", title: "Write\u0000it" })],
    ["mutation:createTask-100kb-description", q("mutation ($p: UUID!, $d: String) { createTask(input: { task: { projectId: $p, title: \"Big\", description: $d } }) { task { rowId } } }", { p: "PROJECT", d: "d".repeat(100 * K) })],
    ["mutation:createTask-bad-dueAt", q('mutation ($p: UUID!) { createTask(input: { task: { projectId: $p, title: "Due", dueAt: "99999-99-99T99:99:99Z" } }) { task { rowId } } }', { p: "PROJECT" })],
    ["mutation:createTask-bad-enum", q('mutation ($p: UUID!) { createTask(input: { task: { projectId: $p, title: "Enum", priority: "high" } }) { task { rowId } } }', { p: "PROJECT" })],
    ["mutation:updateCurrentUser-100kb-avatar", q("mutation ($u: String) { updateCurrentUser(input: { avatarUrl: $u }) { user { rowId } } }", { u: `javascript:${"a".repeat(100 * K)}` })],
    ["mutation:deleteOrganization-unknown", q('mutation { deleteOrganization(input: { organizationId: "00000000-0000-4000-8000-000000000000" }) { clientMutationId } }')],
    ["mutation:clientMutationId-100kb", q("mutation ($c: String) { updateCurrentUser(input: { clientMutationId: $c }) { clientMutationId } }", { c: "c".repeat(100 * K) })],
    ["body:query-number", { query: 123 }],
    ["body:query-null", { query: null }],
    ["body:query-array", { query: ["{ currentUserId }"] }],
    ["body:query-object", { query: { kind: "Document", definitions: [] } }],
    ["body:no-query", {}],
    ["body:variables-string", { query: "query ($n: Int) { tasks(first: $n) { nodes { rowId } } }", variables: '{"n": 1}' }],
    ["body:variables-garbage-string", { query: "{ currentUserId }", variables: "{not json" }],
    ["body:variables-array", { query: "{ currentUserId }", variables: [1, 2] }],
    ["body:variables-number", { query: "{ currentUserId }", variables: 42 }],
    ["body:operationName-number", { query: "{ currentUserId }", operationName: 42 }],
    ["body:operationName-object", { query: "{ currentUserId }", operationName: { $ne: null } }],
    ["body:extensions-garbage", { query: "{ currentUserId }", extensions: "garbage" }],
    ["body:persisted-query", { extensions: { persistedQuery: { version: 1, sha256Hash: "0".repeat(64) } } }],
    ["body:proto", new Raw('{"__proto__":{"query":"{ currentUserId }"},"query":"{ currentUserId }","variables":{"__proto__":{"x":1}}}')],
    ["body:deep-variables", { query: "{ currentUserId }", variables: { a: deepArray(50_000) } }],
    ["body:30k-variables", { query: "{ currentUserId }", variables: Object.fromEntries(Array.from({ length: 30_000 }, (_, i) => [`v${i}`, i])) }],
    ["batch:two", [{ query: "{ currentUserId }" }, { query: "{ currentUserIsAdmin }" }]],
    ["batch:empty", []],
    ["batch:1000", Array.from({ length: 1000 }, () => ({ query: "{ currentUserId }" }))],
  ];
}

/** Documents with one variable `$v`, sent with every hostile value and the scalar's own bad values. */
const SCALAR_DOCUMENTS: Array<[kind: string, query: string, extras: unknown[], mutation: boolean]> = [
  ["String:searchTasks", "query ($v: String) { searchTasks(query: $v, first: 5) { nodes { rowId } } }", ["(", ")))", '"""', "-", "!!!&&&|||<-><->", "a:* & b:*"], false],
  ["String:organizationBySlug", "query ($v: String!) { organizationBySlug(slug: $v) { rowId } }", ["ACME", "a/b", "%"], false],
  ["Int:first", "query ($v: Int) { tasks(first: $v) { nodes { rowId } } }", [2147483647, new Raw("2147483647.0"), new Raw("1e2")], false],
  ["Int:offset", "query ($v: Int) { tasks(first: 5, offset: $v) { nodes { rowId } } }", [2147483647, -2147483648], false],
  [
    "Datetime:dueAt",
    "query ($v: Datetime) { tasks(first: 5, filter: { dueAt: { lessThan: $v } }) { nodes { rowId } } }",
    ["not a date", "2024-13-45T99:99:99Z", "infinity", "-infinity", "99999-12-31T00:00:00Z", "0000-00-00", "2024-01-01T00:00:00+99:99", "epoch", "allballs", "1e309", "294277-01-01T00:00:00Z", "-4714-11-23T00:00:00Z BC"],
    false,
  ],
  [
    "UUID:task",
    "query ($v: UUID!) { task(rowId: $v) { rowId } }",
    ["not-a-uuid", "00000000-0000-0000-0000-000000000000", "{00000000-0000-4000-8000-000000000000}", "00000000000040008000000000000000", "ZZZZZZZZ-0000-4000-8000-000000000000"],
    false,
  ],
  [
    "BigFloat:position",
    "query ($v: BigFloat) { tasks(first: 5, filter: { position: { equalTo: $v } }) { nodes { rowId } } }",
    ["NaN", "Infinity", "-Infinity", "1e999999", "1e-999999", "abc", "0x10", "1_000", " 1 ", "-0", "9".repeat(200_000), "1.".concat("0".repeat(20_000))],
    false,
  ],
  [
    "Cursor:after",
    "query ($v: Cursor) { tasks(first: 5, after: $v) { nodes { rowId } } }",
    ["Zm9yZ2Vk", "!!!", b64(JSON.stringify(["natural", 1e300])), b64('["natural",1e309]'), b64(JSON.stringify(["primary_key_asc", ["not-a-uuid"]])), b64(JSON.stringify(["primary_key_asc", []])), b64("x".repeat(50 * K))],
    false,
  ],
  ["ID:node", "query ($v: ID!) { node(id: $v) { id } }", [b64('["Task","not-a-uuid"]'), b64('["Nope",1]'), b64("[]"), b64('"x"'), b64('["Task"]'), b64(`["Task","${"\u0000"}"]`)], false],
  ["TaskFilter:filter", "query ($v: TaskFilter) { tasks(first: 5, filter: $v) { nodes { rowId } } }", [{ title: { equalTo: "\u0000" } }, { title: { likeInsensitive: "%".repeat(10 * K) } }, { nope: 1 }], false],
  ["String:createTask.title", "mutation ($p: UUID!, $v: String!) { createTask(input: { task: { projectId: $p, title: $v } }) { task { rowId } } }", [], true],
  ["String:updateCurrentUser.name", "mutation ($v: String) { updateCurrentUser(input: { name: $v }) { user { rowId } } }", [], true],
  ["String:inviteToOrganization.email", "mutation ($o: UUID, $v: String) { inviteToOrganization(input: { organizationId: $o, email: $v, role: member }) { clientMutationId } }", ["a@b", "a@b.c\u0000"], true],
  ["UUID:moveTask.afterTaskId", "mutation ($t: UUID, $v: UUID) { moveTask(input: { taskId: $t, status: done, afterTaskId: $v }) { clientMutationId } }", ["not-a-uuid"], true],
  ["UUID:createCheckoutSession.planId", "mutation ($o: UUID!, $v: UUID!) { createCheckoutSession(input: { organizationId: $o, planId: $v }) { __typename } }", ["00000000-0000-4000-8000-000000000000"], true],
  ["UUID:createBillingPortalSession", "mutation ($v: UUID!) { createBillingPortalSession(input: { organizationId: $v }) { __typename } }", ["00000000-0000-4000-8000-000000000000"], true],
];

/** Variables the scalar documents need besides `$v`, known once the tenants exist. */
function otherVariables(query: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (query.includes("$p:")) out.p = t.acme.projectId;
  if (query.includes("$o:")) out.o = query.includes("createCheckoutSession") ? fuzzOrgId : t.acme.id;
  if (query.includes("$t:")) out.t = t.acme.taskId;
  return out;
}

/** Replaces the "PROJECT" placeholder in a document's variables by the member's project. */
function withProject(body: unknown): unknown {
  if (body && typeof body === "object" && !Array.isArray(body) && !(body instanceof Raw)) {
    const variables = (body as { variables?: unknown }).variables;
    if (variables && typeof variables === "object" && (variables as Record<string, unknown>).p === "PROJECT") {
      return { ...body, variables: { ...variables, p: t.acme.projectId } };
    }
  }
  return body;
}

function graphqlCases(): Case[] {
  const rng = new Rng(SEED ^ 0x6a);
  const cases: Case[] = [];
  const route = "POST /graphql";
  let lane = 0;
  const nextLane = () => `graphql:${lane++ % CONCURRENCY}`;
  const identities: Array<[string, SignedUp, string]> = [
    ["anonymous", t.member, "none"],
    ["member", t.member, "valid"],
  ];
  const documents = graphqlDocuments();
  // Every document, as anonymous and as a signed-in member.
  for (const [kind, body] of documents) {
    for (const [who, user, auth] of identities) {
      cases.push({ group: "GraphQL", lane: nextLane(), route, kind: `doc:${kind}`, note: `as ${who}`, user, base: () => draft("POST", "/graphql", withProject(body), auth) });
    }
  }
  // Every scalar document with every bad value; queries as a random identity, mutations signed in
  // (as the owner for billing, so they get past the role check).
  for (const [kind, query, extras, isMutation] of SCALAR_DOCUMENTS) {
    const values: Array<[string, unknown]> = [...HOSTILE_VALUES, ...extras.map((value, i): [string, unknown] => [`extra-${i}:${typeof value === "string" ? value.slice(0, 24) : value instanceof Raw ? value.text.slice(0, 24) : JSON.stringify(value).slice(0, 24)}`, value])];
    for (const [name, value] of values) {
      const [who, user, auth] = isMutation ? (query.includes("Checkout") || query.includes("BillingPortal") ? ["owner", t.owner, "valid"] : identities[1]!) : rng.pick(identities);
      cases.push({
        group: "GraphQL",
        lane: nextLane(),
        route,
        kind: `var:${kind}=${name}`,
        note: `as ${who}`,
        user,
        base: () => draft("POST", "/graphql", { query, variables: { ...otherVariables(query), v: value } }, auth),
      });
    }
  }
  // GET with query strings, and the other methods and paths.
  const gets: Array<[string, string]> = [
    ["get:query", `?query=${encodeURIComponent("{ currentUserId }")}`],
    ["get:mutation", `?query=${encodeURIComponent('mutation { updateCurrentUser(input: { name: "via GET" }) { clientMutationId } }')}`],
    ["get:bad-variables", `?query=${encodeURIComponent("query ($n: Int) { tasks(first: $n) { nodes { rowId } } }")}&variables=%7Bnot%20json`],
    ["get:variables-1e309", `?query=${encodeURIComponent("query ($n: Int) { tasks(first: $n) { nodes { rowId } } }")}&variables=${encodeURIComponent('{"n":1e309}')}`],
    ["get:long-query", `?query=${encodeURIComponent(`{ ${"currentUserId ".repeat(500)}}`)}`],
    ["get:repeated-query", "?query=%7BcurrentUserId%7D&query=%7BcurrentUserIsAdmin%7D"],
    ["get:nul", "?query=%00&variables=%00&operationName=%00"],
    ["get:no-query", ""],
  ];
  for (const [kind, query] of gets) {
    for (const [who, user, auth] of identities) {
      cases.push({ group: "GraphQL", lane: nextLane(), route: "GET /graphql", kind, note: `as ${who}`, user, base: () => ({ ...draft("GET", "/graphql", undefined, auth), query }) });
    }
  }
  for (const [kind, method, path] of [
    ["graphiql:get", "GET", "/graphiql"],
    ["graphiql:post", "POST", "/graphiql"],
    ["graphiql:query", "GET", "/graphiql?query=%3Cscript%3E"],
    ["ruru-static:traversal", "GET", "/ruru-static/..%2F..%2Fpackage.json"],
    ["graphql:sub-path", "POST", "/graphql/stream"],
  ] as const) {
    cases.push({ group: "GraphQL", lane: nextLane(), route: `${method} ${path.split("?")[0]}`, kind, user: t.member, base: () => draft(method, path, method === "POST" ? { query: "{ currentUserId }" } : undefined) });
  }
  // Every transport mutation once, on a simple signed-in query.
  const simple = () => draft("POST", "/graphql", { query: "{ currentUser { rowId name } }" }, "valid");
  const transport = transportMutators("POST");
  for (const m of transport) cases.push({ group: "GraphQL", lane: nextLane(), route, kind: m.name, user: t.member, base: simple, mutators: [m] });
  // Random: a document, an identity and one to three transport mutations.
  for (let i = 0; i < RANDOM_GRAPHQL; i++) {
    const [kind, body] = rng.pick(documents);
    const [who, user, auth] = rng.pick(identities);
    const picked = combination(rng, transport, 1 + rng.int(3));
    cases.push({
      group: "GraphQL",
      lane: nextLane(),
      route,
      kind: "random",
      note: `doc:${kind} as ${who} + ${picked.map((m) => m.name).join(" + ")}`,
      user,
      base: () => draft("POST", "/graphql", withProject(body), auth),
      mutators: picked,
    });
  }
  cases.push(...transportCases("GraphQL", route, "POST", "/graphql", t.member, false));
  return cases;
}

// ------------------------------------------------------------------------------------------------
// Stripe webhook cases
// ------------------------------------------------------------------------------------------------

/** The Stripe-Signature Stripe would send for `payload` (the SDK verifies over the UTF-8 decoded text). */
function stripeSignature(payload: Buffer, options: { secret?: string; timestamp?: number } = {}): string {
  const timestamp = options.timestamp ?? Math.floor(Date.now() / 1000);
  const text = new TextDecoder("utf8").decode(payload);
  const v1 = createHmac("sha256", options.secret ?? STRIPE_TEST.webhookSecret).update(`${timestamp}.${text}`, "utf8").digest("hex");
  return `t=${timestamp},v1=${v1}`;
}

/** What a signer returns to send no Stripe-Signature header at all. */
const OMIT_SIGNATURE = "\u0000omit";

function webhookCases(): Case[] {
  const rng = new Rng(SEED ^ 0x57);
  const route = "POST /webhooks/stripe";
  const user = restUsers.get("other")!;
  const cases: Case[] = [];
  let lane = 0;
  let serial = 0;
  const nextLane = () => `webhook:${lane++ % 2}`;
  const signed = (payload: Buffer) => stripeSignature(payload);
  const event = (type = "customer.subscription.updated") => stripeEvent(type, { id: `sub_fuzz_${serial}`, object: "subscription" }, { id: `evt_fuzz_${serial++}` });
  const base = (): Draft => ({ ...draft("POST", "/webhooks/stripe", event()), signer: signed });

  const onEvent = (name: string, change: (e: Record<string, any>) => void) =>
    mutator(name, 1, (d) => {
      if (d.body && typeof d.body === "object" && !Buffer.isBuffer(d.body) && !Array.isArray(d.body)) change(d.body as Record<string, any>);
    });
  const eventMutators: Mutator[] = [];
  for (const field of ["id", "type", "created", "livemode", "api_version", "data", "data.object", "data.object.id", "data.object.subscription"]) {
    const set = (e: Record<string, any>, value: unknown) => {
      if (field === "data.object.subscription") {
        e.type = "checkout.session.completed";
        e.data = { object: { id: "cs_fuzz", object: "checkout.session", mode: "subscription", subscription: value } };
        return;
      }
      const path = field.split(".");
      let target = e;
      for (const key of path.slice(0, -1)) target = target[key] && typeof target[key] === "object" ? target[key] : (target[key] = {});
      target[path.at(-1)!] = value;
    };
    eventMutators.push(onEvent(`missing:${field}`, (e) => set(e, undefined)));
    for (const [name, value] of HOSTILE_VALUES) eventMutators.push(onEvent(`value:${field}=${name}`, (e) => set(e, value)));
    eventMutators.push(onEvent(`nul-in:${field}`, (e) => set(e, withNul(`${field}_value`))));
  }
  eventMutators.push(onEvent("value:type=invoice-with-garbage-object", (e) => ((e.type = "invoice.paid"), (e.data = { object: { id: { $ne: null }, object: "invoice" } }))));
  eventMutators.push(onEvent("value:type=price-with-100kb-id", (e) => ((e.type = "price.updated"), (e.data = { object: { id: `price_${"x".repeat(100 * K)}` } }))));
  eventMutators.push(onEvent("extra:900kb-field", (e) => (e.padding = "p".repeat(900 * K))));
  eventMutators.push(onEvent("duplicate-delivery", (e) => (e.id = "evt_fuzz_duplicate")));

  const SIGNATURES: Array<[string, (payload: Buffer) => string | undefined]> = [
    ["missing", () => undefined],
    ["empty", () => ""],
    ["whitespace", () => "   "],
    ["garbage", () => "garbage"],
    ["t-only", () => "t="],
    ["v1-only", () => "v1="],
    ["non-numeric-t", () => "t=abc,v1=def"],
    ["forged", () => "t=1,v1=deadbeef"],
    ["huge-t", (p) => stripeSignature(p).replace(/^t=\d+/, "t=99999999999999999999999")],
    ["negative-t", (p) => stripeSignature(p).replace(/^t=\d+/, "t=-1")],
    ["wrong-secret", (p) => stripeSignature(p, { secret: "whsec_someone_else" })],
    ["stale", (p) => stripeSignature(p, { timestamp: Math.floor(Date.now() / 1000) - 3600 })],
    ["future", (p) => stripeSignature(p, { timestamp: Math.floor(Date.now() / 1000) + 3600 })],
    ["v0-scheme", (p) => stripeSignature(p).replace("v1=", "v0=")],
    ["8kb-signature", () => `t=${Math.floor(Date.now() / 1000)},v1=${"a".repeat(8 * K)}`],
    ["1000-entries", (p) => `${Array.from({ length: 1000 }, (_, i) => `v1=${i}`).join(",")},${stripeSignature(p)}`],
    ["latin1", () => "t=\u00ff\u00fe,v1=\u00e9"],
    ["valid-among-garbage", (p) => `x=y,,=,${stripeSignature(p)},v1=zz`],
  ];
  const signatureMutators = SIGNATURES.map(([name, make]) =>
    mutator(
      `signature:${name}`,
      5,
      (d) => {
        d.signer = (payload) => make(payload) ?? OMIT_SIGNATURE;
      },
      name === "8kb-signature" || name === "1000-entries",
    ),
  );
  const unsignedBodies = BAD_BODIES.map(([name, body]) =>
    mutator(`unsigned-body:${name}`, 2, (d) => {
      d.body = body();
      d.signer = () => "t=1,v1=deadbeef";
    }),
  );
  const transport = transportMutators("POST").filter((m) => !m.name.startsWith("auth:") || ["auth:valid", "auth:not-a-jwt", "auth:bearer-8kb"].includes(m.name));
  const all = [...eventMutators, ...signatureMutators, ...unsignedBodies, ...transport];

  cases.push({ group: "webhook", lane: nextLane(), route, kind: "baseline", user, base });
  for (const m of all) cases.push({ group: "webhook", lane: nextLane(), route, kind: m.name, user, base, mutators: [m] });
  for (let i = 0; i < RANDOM_WEBHOOK; i++) {
    const picked = combination(rng, all, 1 + rng.int(3));
    cases.push({ group: "webhook", lane: nextLane(), route, kind: "random", note: picked.map((m) => m.name).join(" + "), user, base, mutators: picked });
  }
  cases.push(...transportCases("webhook", route, "POST", "/webhooks/stripe", user, false));
  return cases;
}

// ------------------------------------------------------------------------------------------------
// Sending
// ------------------------------------------------------------------------------------------------

async function finalize(d: Draft, ctx: Ctx): Promise<Wire> {
  let body: Buffer | undefined = d.body === undefined ? undefined : Buffer.isBuffer(d.body) ? d.body : toJson(d.body);
  const headers: Record<string, string> = { ...d.headers };
  const has = (name: string) => Object.keys(headers).some((key) => key.toLowerCase() === name.toLowerCase());
  if (d.contentType !== null && !has("content-type")) {
    if (d.contentType !== undefined) headers["Content-Type"] = d.contentType;
    else if (body !== undefined) headers["Content-Type"] = "application/json";
  }
  if (d.signer && !has("stripe-signature")) {
    const signature = d.signer(body ?? Buffer.alloc(0));
    if (signature !== OMIT_SIGNATURE) headers["Stripe-Signature"] = signature;
  }
  if (d.encoding) {
    body = d.encoding.transform(body ?? Buffer.alloc(0));
    headers["Content-Encoding"] = d.encoding.header;
  }
  const auth = await authorization(d.auth, ctx);
  if (auth !== undefined && !has("authorization")) headers.Authorization = auth;
  return { method: d.method, path: `${d.path}${d.query}`, headers, body };
}

const collectText = (res: NodeJS.ReadableStream, callback: (error: Error | null, body: unknown) => void) => {
  const chunks: Buffer[] = [];
  res.on("data", (chunk: Buffer) => chunks.push(Buffer.from(chunk)));
  res.on("end", () => callback(null, Buffer.concat(chunks).toString("utf8")));
  res.on("error", (error: Error) => callback(error, Buffer.concat(chunks).toString("utf8")));
};

async function sendHttp(wire: Wire): Promise<Outcome> {
  // A connection of its own, never reused (a pooled socket the server closes just as the next
  // request goes out would be a reset of the client's making), but asking for keep-alive, so the
  // server drains a body it answered without reading instead of resetting the connection under it.
  const connection = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const started = performance.now();
  const agent = request(api.server) as unknown as Record<string, ((path: string) => request.Test) | undefined>;
  const make = agent[wire.method.toLowerCase()];
  if (!make) throw new Error(`supertest cannot send ${wire.method}`);
  // Bytes go out as they are: superagent would otherwise serialize a Buffer by its content type.
  let test = make(wire.path)
    .agent(connection)
    .redirects(0)
    .timeout(HARD_TIMEOUT_MS)
    .buffer(true)
    .parse(collectText as never)
    .serialize((data: unknown) => data as string);
  for (const [name, value] of Object.entries(wire.headers)) test = test.set(name, value);
  if (wire.body !== undefined) test = test.send(wire.body);
  try {
    const res = await test;
    return { status: res.status, text: typeof res.body === "string" ? res.body : (res.text ?? ""), ms: performance.now() - started };
  } catch (error) {
    const res = (error as { response?: { status: number; text?: string; body?: unknown } }).response;
    if (res) return { status: res.status, text: typeof res.body === "string" ? res.body : (res.text ?? ""), ms: performance.now() - started };
    return { status: 0, text: "", ms: performance.now() - started, error: (error as Error).message };
  } finally {
    connection.destroy();
  }
}

function parseRawResponse(data: Buffer): { status: number; body: string } | undefined {
  const end = data.indexOf("\r\n\r\n");
  const head = (end === -1 ? data : data.subarray(0, end)).toString("latin1");
  const match = /^HTTP\/\d\.\d (\d{3})/.exec(head);
  if (!match) return undefined;
  let body = end === -1 ? Buffer.alloc(0) : data.subarray(end + 4);
  if (/\r\ntransfer-encoding:\s*chunked/i.test(head)) {
    const parts: Buffer[] = [];
    let rest = body;
    for (;;) {
      const line = rest.indexOf("\r\n");
      if (line === -1) break;
      const size = Number.parseInt(rest.subarray(0, line).toString("latin1"), 16);
      if (!Number.isFinite(size) || size <= 0) break;
      parts.push(rest.subarray(line + 2, line + 2 + size));
      rest = rest.subarray(line + 4 + size);
    }
    body = Buffer.concat(parts);
  }
  return { status: Number(match[1]), body: body.toString("utf8") };
}

function sendRaw(bytes: Buffer): Promise<Outcome> {
  const started = performance.now();
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let settled = false;
    const socket = net.connect(port, "127.0.0.1");
    const finish = (error?: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      const parsed = parseRawResponse(Buffer.concat(chunks));
      resolve(
        parsed
          ? { status: parsed.status, text: parsed.body, ms: performance.now() - started }
          : { status: 0, text: "", ms: performance.now() - started, error: error ?? "connection closed without a response" },
      );
    };
    const timer = setTimeout(() => finish(`no response within ${HARD_TIMEOUT_MS} ms`), HARD_TIMEOUT_MS);
    socket.on("connect", () => socket.write(bytes));
    socket.on("data", (chunk: Buffer) => chunks.push(chunk));
    socket.on("end", () => finish());
    socket.on("close", () => finish());
    socket.on("error", (error) => finish(error.message));
  });
}

// ------------------------------------------------------------------------------------------------
// The properties every answer must have
// ------------------------------------------------------------------------------------------------

const CODE = /^[a-z][a-z0-9_]*$/;
const LEAKS: Array<[string, RegExp]> = [
  ["a stack trace", /(?:\n|\\n)\s*at (?:async )?[^\n]*?\(?(?:file:\/\/|node:|\/)[^\s)]*:\d+:\d+/],
  ["a stack property", /"stack"\s*:/],
  ["a node_modules path", /node_modules/],
  ["the source directory", new RegExp(process.cwd().replace(/[.*+?^${}()|[\]\\]/g, "\\$&"))],
];

const isGraphqlPath = (path: string) => {
  const pathname = path.split("?")[0] ?? path;
  return pathname === "/graphql" || pathname.startsWith("/graphql/");
};

function restCode(body: unknown): string | undefined {
  const error = (body as { error?: { code?: unknown; message?: unknown } } | null)?.error;
  return error && typeof error.code === "string" && CODE.test(error.code) && typeof error.message === "string" ? error.code : undefined;
}

function graphqlCodes(body: unknown): Array<string | undefined> | undefined {
  const errors = (body as { errors?: unknown } | null)?.errors;
  if (!Array.isArray(errors)) return undefined;
  return errors.map((error: { message?: unknown; extensions?: { code?: unknown } } | null) =>
    typeof error?.message === "string" && typeof error.extensions?.code === "string" && CODE.test(error.extensions.code) ? error.extensions.code : undefined,
  );
}

/** What is wrong with an answer, as short problem texts (empty when it keeps the contract). */
function problemsOf(c: Case, wire: Wire | undefined, o: Outcome): { code: string | undefined; problems: string[] } {
  const problems: string[] = [];
  if (o.error) return { code: undefined, problems: [`no response (${o.error.slice(0, 80)})`] };
  let body: unknown;
  try {
    body = o.text ? JSON.parse(o.text) : undefined;
  } catch {
    body = undefined;
  }
  const graphqlShape = wire ? isGraphqlPath(wire.path) : false;
  const gqlCodes = graphqlCodes(body);
  const code = restCode(body) ?? gqlCodes?.find(Boolean);
  if (o.status >= 500) problems.push(`status ${o.status}`);
  if (o.status >= 400 && wire?.method !== "HEAD") {
    const restOk = restCode(body) !== undefined;
    const gqlOk = gqlCodes !== undefined && gqlCodes.length > 0 && gqlCodes.every(Boolean);
    // Refusals by Node's HTTP parser come before any route: either shape will do.
    const ok = c.raw ? restOk || gqlOk : graphqlShape ? gqlOk : restOk;
    if (!ok) {
      const shape = c.raw ? "error code" : graphqlShape ? "errors[].extensions.code" : "{ error: { code, message } }";
      problems.push(`no ${shape} (body: ${JSON.stringify(o.text.slice(0, 60))})`);
    }
  }
  if (gqlCodes) {
    if (gqlCodes.some((one) => one === undefined) && o.status < 400) problems.push("a GraphQL error without extensions.code");
    if (gqlCodes.includes("internal_error") && o.status < 500) problems.push(`internal_error (at status ${o.status})`);
  }
  for (const [what, pattern] of LEAKS) if (pattern.test(o.text)) problems.push(`leaks ${what}`);
  if (o.ms > SLOW_MS) problems.push(`took ${Math.round(o.ms)} ms (> ${SLOW_MS} ms)`);
  return { code, problems };
}

interface Result {
  violations: string[];
  requests: number;
  slowestMs: number;
  statuses: Record<string, number>;
}

/** Runs the cases lane by lane (CONCURRENCY lanes at once) and returns the de-duplicated violations. */
async function run(cases: Case[]): Promise<Result> {
  const lanes = new Map<string, Case[]>();
  for (const c of cases) lanes.set(c.lane, [...(lanes.get(c.lane) ?? []), c]);
  const queue = [...lanes.values()];
  // Per de-duplication key, the first case in plan order (not in arrival order, which varies).
  const found = new Map<string, { index: number; text: string }>();
  const indexOf = new Map(cases.map((c, i) => [c, i]));
  const statuses: Record<string, number> = {};
  let slowestMs = 0;
  let requests = 0;
  // FUZZ_LOG=<file> appends every case and its answer as a JSON line, to see what the cases reach.
  const log = process.env.FUZZ_LOG ? ([] as string[]) : undefined;
  const runOne = async (c: Case) => {
    const ctx: Ctx = { user: c.user, mint: () => mint(c.user) };
    let wire: Wire | undefined;
    let outcome: Outcome;
    if (c.raw) {
      outcome = await sendRaw(c.raw);
    } else {
      const d = await c.base!(ctx);
      for (const m of c.mutators ?? []) await m.apply(d, ctx);
      wire = await finalize(d, ctx);
      outcome = await sendHttp(wire);
    }
    requests += 1;
    slowestMs = Math.max(slowestMs, outcome.ms);
    statuses[String(outcome.status)] = (statuses[String(outcome.status)] ?? 0) + 1;
    const { code, problems } = problemsOf(c, wire, outcome);
    log?.push(JSON.stringify({ group: c.group, route: c.route, kind: c.kind, note: c.note, status: outcome.status, code, ms: Math.round(outcome.ms), problems, body: outcome.text.slice(0, 300) }));
    for (const problem of problems) {
      const kind = problem.replace(/\(.*$/, "").replace(/\d+ ms/, "N ms").trim();
      const key = `${c.route}|${c.kind}|${outcome.status}|${kind}`;
      const index = indexOf.get(c)!;
      if ((found.get(key)?.index ?? Infinity) > index) {
        found.set(key, { index, text: `${c.route} [${c.kind}] -> ${outcome.status} ${code ?? "(no code)"}: ${problem}${c.note ? ` {${c.note}}` : ""}` });
      }
    }
  };
  const worker = async () => {
    for (let lane = queue.shift(); lane; lane = queue.shift()) for (const c of lane) await runOne(c);
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  if (log && process.env.FUZZ_LOG) appendFileSync(process.env.FUZZ_LOG, `${log.join("\n")}\n`);
  return { violations: [...found.values()].map((v) => v.text).sort(), requests, slowestMs, statuses };
}

function report(group: Group, result: Result): void {
  // One line per group, so a run shows what was exercised even when it passes.
  console.info(`[fuzz ${group}] ${result.requests} requests, slowest ${Math.round(result.slowestMs)} ms, statuses ${JSON.stringify(result.statuses)}, ${result.violations.length} violations`);
}

// ------------------------------------------------------------------------------------------------
// Tests
// ------------------------------------------------------------------------------------------------

describe(`fuzz of the HTTP surface (seed ${SEED.toString(16)})`, () => {
  it("the seeded generator is deterministic", () => {
    const a = new Rng(SEED);
    const b = new Rng(SEED);
    const draw = (rng: Rng) => Array.from({ length: 8 }, () => rng.int(1_000_000));
    expect(draw(a)).toEqual(draw(b));
    const plan = () => [...restCases(), ...graphqlCases(), ...webhookCases()].map((c) => `${c.group} ${c.lane} ${c.route} ${c.kind} ${c.note ?? ""}`);
    const first = plan();
    expect(first.length).toBeGreaterThan(4000);
    expect(plan()).toEqual(first);
  });

  it("REST routes: no 5xx, every 4xx has { error: { code, message } }, nothing leaks, nothing stalls", async () => {
    heapBefore = liveHeap();
    rssBefore = process.memoryUsage().rss;
    const result = await run(restCases());
    report("REST", result);
    expect(result.requests).toBeGreaterThan(1000);
    expect(result.violations).toEqual([]);
  }, 180_000);

  it("GraphQL: no 5xx, every error has extensions.code (none internal_error), nothing leaks, nothing stalls", async () => {
    const result = await run(graphqlCases());
    report("GraphQL", result);
    expect(result.requests).toBeGreaterThan(500);
    expect(result.violations).toEqual([]);
  }, 180_000);

  it("Stripe webhook: no 5xx, every 4xx has { error: { code, message } }, nothing leaks, nothing stalls", async () => {
    const result = await run(webhookCases());
    report("webhook", result);
    expect(result.requests).toBeGreaterThan(300);
    expect(result.violations).toEqual([]);
  }, 180_000);

  it("afterwards the server is healthy, still answers GraphQL, and its memory stayed bounded", async () => {
    const health = await request(api.server).get("/healthz").timeout(SLOW_MS);
    expect(health.status).toBe(200);
    expect(health.body).toEqual({ status: "ok" });
    const session = await mint(t.member);
    const gql = await request(api.server).post("/graphql").set("Authorization", `Bearer ${session.accessToken}`).send({ query: "{ currentUserId }" }).timeout(SLOW_MS);
    expect(gql.status).toBe(200);
    expect(gql.body).toEqual({ data: { currentUserId: t.member.id } });
    expect(rssBefore).toBeGreaterThan(0);
    const mb = (bytes: number) => Math.round(bytes / (1024 * 1024));
    const rssGrowth = process.memoryUsage().rss - rssBefore;
    const heapGrowth = liveHeap() - heapBefore;
    console.info(`[fuzz] RSS grew by ${mb(rssGrowth)} MB (limit ${mb(RSS_GROWTH_LIMIT)} MB); live heap + external by ${mb(heapGrowth)} MB (limit ${mb(HEAP_GROWTH_LIMIT)} MB)`);
    expect(mb(rssGrowth)).toBeLessThan(mb(RSS_GROWTH_LIMIT));
    expect(mb(heapGrowth)).toBeLessThan(mb(HEAP_GROWTH_LIMIT));
  }, 30_000);
});
