// The "baseline" side: the backend as it was at a git ref, checked out in a temporary worktree that
// shares this checkout's node_modules, so one run shows a change's before and after on the same
// machine and data. The worktree's own scripts/lib/stack.ts makes its database (with the ref's
// migrations) and starts its backend (the ref's src/).
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";

const run = promisify(execFile);

export type Stack = typeof import("../../scripts/lib/stack.ts");

export interface BaselineCheckout {
  ref: string;
  /** The commit the ref named when the worktree was made. */
  commit: string;
  dir: string;
  stack: Stack;
  /** Removes the worktree (git worktree remove --force) and its temporary folder. */
  remove: () => Promise<void>;
}

export async function checkoutBaseline(projectRoot: string, ref: string): Promise<BaselineCheckout> {
  const commit = (await run("git", ["-C", projectRoot, "rev-parse", "--verify", `${ref}^{commit}`])).stdout.trim();
  const parent = mkdtempSync(path.join(tmpdir(), "oddscenes-bench-baseline-"));
  const dir = path.join(parent, "tree");
  let added = false;
  const remove = async () => {
    try {
      if (added) await run("git", ["-C", projectRoot, "worktree", "remove", "--force", dir]);
    } finally {
      rmSync(parent, { recursive: true, force: true });
    }
  };
  try {
    await run("git", ["-C", projectRoot, "worktree", "add", "--detach", dir, commit]);
    added = true;
    symlinkSync(path.join(projectRoot, "node_modules"), path.join(dir, "node_modules"), "dir");
    const stack = (await import(pathToFileURL(path.join(dir, "scripts/lib/stack.ts")).href)) as Stack;
    return { ref, commit, dir, stack, remove };
  } catch (error) {
    await remove().catch(() => undefined);
    throw error;
  }
}
