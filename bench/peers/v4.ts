// Peer for the benchmark: PostGraphile V4 (library mode) over the same database, so the suite can
// compare V5 (ours) with V4 in the same run. Configured as V4 users typically run it (simplify
// inflector, connection filter, dynamic JSON); V4's own JWT support is not used: like our server,
// the Bearer token is verified here and turned into the same pgSettings (role, statement timeout,
// app.* policy, jwt.claims.*), without the extra session round trip (row-level security checks
// the session in SQL anyway). Started by bench/run.ts; its queries are in ./v4-queries.ts.
//   PORT, AUTH_DATABASE_URL, JWT_SECRET, PUBLIC_URL, DATABASE_USER, DATABASE_ANONYMOUS
// (postgraphile, pg and jsonwebtoken resolve to bench/node_modules: V4, not the backend's V5.)
import http from "node:http";
import PgSimplifyInflector from "@graphile-contrib/pg-simplify-inflector";
import jwt from "jsonwebtoken";
import pg from "pg";
import { postgraphile } from "postgraphile";
import ConnectionFilterPlugin from "postgraphile-plugin-connection-filter";

// A CommonJS module whose typings say `export default`: from ESM, the default import is
// module.exports, and the plugin is (also) its `default` property, which is what the types describe.
const PgSimplifyInflectorPlugin = PgSimplifyInflector.default;

const secret = process.env.JWT_SECRET!;
const issuer = process.env.PUBLIC_URL!;
const userRole = process.env.DATABASE_USER!;
const anonymousRole = process.env.DATABASE_ANONYMOUS!;

const pool = new pg.Pool({ connectionString: process.env.AUTH_DATABASE_URL, max: 10 });
pool.on("error", (error) => console.error("v4 peer: idle client error", error));

/** Claims of the verified token of each request that had one (read by pgSettings). */
const claimsOf = new WeakMap<http.IncomingMessage, jwt.JwtPayload>();
const POLICY = { "app.require_verified_email": "off", "app.past_due_grace_seconds": "604800" };

const middleware = postgraphile(pool, ["app_public"], {
  appendPlugins: [PgSimplifyInflectorPlugin, ConnectionFilterPlugin],
  dynamicJson: true,
  setofFunctionsContainNulls: false,
  ignoreRBAC: false,
  disableDefaultMutations: false,
  graphiql: false,
  disableQueryLog: true,
  watchPg: false,
  subscriptions: false,
  retryOnInitFail: false,
  extendedErrors: ["errcode"],
  // Needed to build our schema: a unique foreign key (membership_preferences.membership_id,
  // `@foreignFieldName preferences`) otherwise gets both a single and a (deprecated) connection
  // backward relation under the same name. "omit" keeps only the single one, as V5 has it, and is
  // what V4's own docs recommend for new projects.
  legacyRelations: "omit",
  pgSettings: (req: http.IncomingMessage) => {
    const claims = claimsOf.get(req);
    return claims
      ? { role: userRole, statement_timeout: "8s", ...POLICY, "jwt.claims.user_id": claims.sub, "jwt.claims.session_id": String(claims.sid) }
      : { role: anonymousRole, statement_timeout: "3s", ...POLICY };
  },
});

let ready = false;
middleware.getGraphQLSchema().then(
  () => (ready = true),
  (error: unknown) => {
    console.error("v4 peer: the schema did not build", error);
    process.exit(1);
  },
);

const json = (res: http.ServerResponse, status: number, body: unknown) => {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
};

http
  .createServer((req, res) => {
    const path = (req.url ?? "").split("?")[0];
    if (req.method === "GET" && path === "/healthz") return ready ? json(res, 200, { status: "ok" }) : json(res, 503, { status: "starting" });
    if (path !== "/graphql") return json(res, 404, { error: "not found" });
    const header = req.headers.authorization;
    if (header !== undefined && header !== "") {
      const token = /^Bearer\s+(\S+)$/i.exec(header)?.[1];
      let claims: jwt.JwtPayload | string | undefined;
      try {
        claims = token === undefined ? undefined : jwt.verify(token, secret, { algorithms: ["HS256"], issuer, audience: "oddscenes" });
      } catch {
        claims = undefined;
      }
      if (claims === undefined || typeof claims === "string") return json(res, 401, { errors: [{ message: "The access token is not valid." }] });
      claimsOf.set(req, claims);
    }
    middleware(req, res);
  })
  .listen(Number(process.env.PORT), "127.0.0.1");
