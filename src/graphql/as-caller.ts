import type { WithPgClient } from "postgraphile/@dataplan/pg";

/** A request's settings (role, claims) as PostGraphile hands them to plan-time code. */
export type PgSettings = Record<string, string | undefined> | null;

/** Runs one SQL statement as the caller (their role and claims), as PostGraphile would; its first row. */
export async function asCaller<T>(withPgClient: WithPgClient, pgSettings: PgSettings, text: string, values: unknown[]): Promise<T> {
  const { rows } = await withPgClient(pgSettings, (client) => client.query<T>({ text, values }));
  return rows[0]!;
}
