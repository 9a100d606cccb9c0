// Everything the benchmark starts (servers, pgbench, databases, a git worktree) is registered in a
// scope and undone in reverse order when the scope closes: at the end of a data size, at the end
// of the run, on an error (try/finally), and on Ctrl-C (onInterrupt).
import type { ChildProcess } from "node:child_process";

const open = new Set<CleanupScope>();

export class CleanupScope {
  private readonly steps: Array<{ name: string; run: () => Promise<void> }> = [];

  constructor() {
    open.add(this);
  }

  /** Registers an undo step; the returned function runs it now (once) instead of at close. */
  defer(name: string, run: () => Promise<void> | void): () => Promise<void> {
    let done = false;
    const step = {
      name,
      run: async () => {
        if (done) return;
        done = true;
        await run();
      },
    };
    this.steps.push(step);
    return async () => {
      const index = this.steps.indexOf(step);
      if (index >= 0) this.steps.splice(index, 1);
      await step.run();
    };
  }

  /** Runs every step, newest first; a failing step is reported and the rest still run. */
  async close(): Promise<void> {
    open.delete(this);
    while (this.steps.length > 0) {
      const step = this.steps.pop()!;
      try {
        await step.run();
      } catch (error) {
        console.error(`cleanup: ${step.name} failed:`, error instanceof Error ? error.message : error);
      }
    }
  }
}

/** Ctrl-C (or SIGTERM): close every open scope, newest first, then exit; a second one exits at once. */
export function onInterrupt(): void {
  let interrupted = false;
  const handler = (signal: NodeJS.Signals) => {
    if (interrupted) process.exit(130);
    interrupted = true;
    console.error(`\n${signal}: stopping the servers and databases…`);
    void (async () => {
      for (const scope of [...open].reverse()) await scope.close();
      process.exit(130);
    })();
  };
  process.on("SIGINT", handler);
  process.on("SIGTERM", handler);
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves once the child has exited. */
export async function stopChild(child: ChildProcess, graceMs = 5000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
  await exited;
  clearTimeout(timer);
}
