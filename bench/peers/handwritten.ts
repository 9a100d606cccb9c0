// Peer for the benchmark: a hand-written Express + pg server doing the same work per request as
// the GraphQL API: verify the JWT, one transaction as the request's role with the same claims,
// then hand-written SQL (json_agg) under the same row-level security. Started by bench/run.ts.
//   PORT, AUTH_DATABASE_URL, JWT_SECRET, PUBLIC_URL, DATABASE_USER
import express from "express";
import jwt from "jsonwebtoken";
import pg from "pg";
import { QUERIES } from "../lib/sql.ts";

const pool = new pg.Pool({ connectionString: process.env.AUTH_DATABASE_URL, max: 10 });
const secret = process.env.JWT_SECRET!;
const issuer = process.env.PUBLIC_URL!;
const role = process.env.DATABASE_USER!;

const app = express();
app.use(express.json());
app.post("/:query", async (req, res) => {
  const sql = QUERIES[req.params.query];
  if (!sql) return void res.status(404).end();
  let claims: jwt.JwtPayload;
  try {
    claims = jwt.verify((req.get("authorization") ?? "").replace(/^Bearer /, ""), secret, { algorithms: ["HS256"], issuer, audience: "oddscenes" }) as jwt.JwtPayload;
  } catch {
    return void res.status(401).json({ error: "invalid token" });
  }
  const client = await pool.connect();
  try {
    await client.query("begin");
    await client.query(
      "select set_config('role', $1, true), set_config('jwt.claims.user_id', $2, true), set_config('jwt.claims.session_id', $3, true), set_config('statement_timeout', '8s', true)",
      [role, claims.sub, claims.sid],
    );
    const { rows } = await client.query(sql, (req.body.params as unknown[] | undefined) ?? []);
    await client.query("commit");
    res.json({ data: rows[0] ? Object.values(rows[0])[0] : null });
  } catch (error) {
    await client.query("rollback").catch(() => undefined);
    res.status(500).json({ error: (error as Error).message });
  } finally {
    client.release();
  }
});
app.get("/healthz", (_req, res) => void res.json({ status: "ok" }));
app.listen(Number(process.env.PORT), "127.0.0.1");
