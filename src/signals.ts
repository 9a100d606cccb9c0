import type { Logger } from "./logger.ts";

/**
 * Stops the process cleanly on SIGINT/SIGTERM: `stop` runs once, bounded by `timeoutMs`, then the
 * process exits. A second signal forces the exit, but only a second later: under `node --watch`
 * (npm run dev) one Ctrl-C reaches the process twice, as SIGINT from the terminal and SIGTERM
 * from the watcher, and that must still be a clean stop (the embedded database shut down).
 */
export function stopOnSignals(logger: Logger, stop: () => Promise<void>, timeoutMs: number): void {
  let firstAt: number | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    if (firstAt !== undefined) {
      if (Date.now() - firstAt < 1000) return;
      logger.warn({ signal }, "second signal: exiting now");
      process.exit(1);
    }
    firstAt = Date.now();
    logger.info({ signal }, "stopping (send the signal again to force)");
    const force = setTimeout(() => {
      logger.error("shutdown took too long: exiting");
      process.exit(1);
    }, timeoutMs);
    force.unref();
    stop().then(
      () => {
        logger.info("stopped");
        process.exit(0);
      },
      (error: unknown) => {
        logger.error({ err: error }, "shutdown failed");
        process.exit(1);
      },
    );
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
}
