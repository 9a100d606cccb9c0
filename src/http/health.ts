import { Router } from "express";
import type pg from "pg";

/**
 * /healthz: the process is alive. /readyz: the instance can serve: it is not shutting down, the
 * database answers and holds at least the migrations this build needs (a newer database is fine:
 * during a rolling deploy the old instances keep serving while the new ones migrate).
 */
export function healthRoutes(options: {
  ownerPool: pg.Pool;
  /** Hash of the newest committed migration this build has. */
  latestMigration: string | undefined;
  draining: () => boolean;
  workerAlive?: () => boolean;
}): Router {
  const router = Router();
  router.get("/healthz", (_req, res) => {
    res.json({ status: "ok" });
  });
  router.get("/readyz", async (_req, res) => {
    if (options.draining()) {
      res.status(503).json({ error: { code: "shutting_down", message: "This instance is shutting down; send requests to another." } });
      return;
    }
    if (options.workerAlive?.() === false) {
      res.status(503).json({ error: { code: "worker_stopped", message: "This instance's job worker stopped; restart it (see its log)." } });
      return;
    }
    try {
      const { rows } = await options.ownerPool.query<{ filename: string; has_ours: boolean }>(
        `select (select filename from graphile_migrate.migrations order by filename desc limit 1) as filename,
                exists (select 1 from graphile_migrate.migrations where hash = $1) as has_ours`,
        [options.latestMigration ?? ""],
      );
      const applied = rows[0];
      if (options.latestMigration && !applied?.has_ours) {
        res.status(503).json({
          error: {
            code: "migrations_pending",
            message: `The database is at migration ${applied?.filename ?? "(none)"}, older than this build's; run npm run db:migrate.`,
          },
        });
        return;
      }
      res.json({ status: "ready", migration: applied?.filename ?? null });
    } catch {
      res.status(503).json({ error: { code: "database_unavailable", message: "The database is not reachable." } });
    }
  });
  return router;
}
