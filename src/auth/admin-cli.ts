// `npm run admin:grant -- <email>` / `npm run admin:revoke -- <email>`: make a user a site
// administrator, or take it back. The API can never do this; only an operator with the owner
// connection can. Without DATABASE_URL it joins (or starts) the embedded database.
import { runOwnerCommand } from "../db/owner-command.ts";

const [action, email] = process.argv.slice(2);

runOwnerCommand(
  async (client) => {
    const { rows } = await client.query<{ name: string; email: string }>(
      "update app_public.users set is_admin = $2 where email = $1 returning name, email",
      [email!.trim(), action === "grant"],
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
  },
  () => ((action === "grant" || action === "revoke") && email ? undefined : "Usage: npm run admin:grant -- <email>   |   npm run admin:revoke -- <email>"),
);
