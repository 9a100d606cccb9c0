import { Router } from "express";
import type pg from "pg";

/**
 * /healthz: the process is alive. /readyz: the database answers and holds the newest committed
 * migration, so a load balancer only routes to instances that can serve.
 */
export function healthRoutes(options: { ownerPool: pg.Pool; /** hash of the newest committed migration */ latestMigration: string | undefined }): Router {
  const router = Router();
  router.get("/healthz", (_req, res) => {
    res.json({ status: "ok" });
  });
  router.get("/readyz", async (_req, res) => {
    try {
      const { rows } = await options.ownerPool.query<{ filename: string; hash: string }>(
        "select filename, hash from graphile_migrate.migrations order by filename desc limit 1",
      );
      const applied = rows[0];
      if (!applied || applied.hash !== options.latestMigration) {
        res.status(503).json({
          error: {
            code: "migrations_pending",
            message: `The database is at migration ${applied?.filename ?? "(none)"}, older than this build's; run npm run db:migrate.`,
          },
        });
        return;
      }
      res.json({ status: "ready", migration: applied.filename });
    } catch {
      res.status(503).json({ error: { code: "database_unavailable", message: "The database is not reachable." } });
    }
  });
  return router;
}
