import { randomBytes } from "node:crypto";
import argon2 from "argon2";

/** OWASP's argon2id parameters: 19 MiB, 2 passes, 1 lane (about 20 ms here). */
export const ARGON2_OPTIONS = { type: argon2.argon2id, memoryCost: 19 * 1024, timeCost: 2, parallelism: 1 } as const;

export interface Passwords {
  hash(password: string): Promise<string>;
  /** False for a wrong password or a malformed hash; never throws. */
  verify(hash: string, password: string): Promise<boolean>;
  /** Spends the time of a real check, so an unknown email answers as slowly as a wrong password. */
  verifyAgainstNothing(password: string): Promise<void>;
  needsRehash(hash: string): boolean;
}

/** argon2 hashes in libuv's thread pool, off the event loop. */
export function createPasswords(): Passwords {
  let dummy: Promise<string> | undefined;
  const verify = (hash: string, password: string) => argon2.verify(hash, password).catch(() => false);
  return {
    hash: (password) => argon2.hash(password, ARGON2_OPTIONS),
    verify,
    async verifyAgainstNothing(password) {
      dummy ??= argon2.hash(randomBytes(32).toString("hex"), ARGON2_OPTIONS);
      await verify(await dummy, password);
    },
    needsRehash: (hash) => argon2.needsRehash(hash, ARGON2_OPTIONS),
  };
}
