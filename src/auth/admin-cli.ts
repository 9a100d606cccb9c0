// `npm run admin:grant -- <email>` / `npm run admin:revoke -- <email>`: make a user a site
// administrator, or take it back. The API can never do this; only an operator with the owner
// connection can.
import pg from "pg";
import { ConfigError, loadConfig } from "../config.ts";
import { resolveRunningUrls } from "../db/urls.ts";

async function main([action, email]: string[]): Promise<number> {
  if ((action !== "grant" && action !== "revoke") || !email) {
    console.error("Usage: npm run admin:grant -- <email>   |   npm run admin:revoke -- <email>");
    return 64;
  }
  const urls = resolveRunningUrls(loadConfig());
  const client = new pg.Client({ connectionString: urls.owner });
  await client.connect();
  try {
    const { rows } = await client.query<{ name: string; email: string }>(
      "update app_public.users set is_admin = $2 where email = $1 returning name, email",
      [email.trim(), action === "grant"],
    );
    const user = rows[0];
    if (!user) {
      console.error(`No user has the email address ${email}. Nothing changed.`);
      return 1;
    }
    console.log(
      action === "grant"
        ? `${user.name} <${user.email}> is now a site administrator.`
        : `${user.name} <${user.email}> is no longer a site administrator.`,
    );
    return 0;
  } finally {
    await client.end();
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error instanceof ConfigError || error instanceof Error ? error.message : error);
    process.exit(1);
  },
);
