// `npm run db:seed`: demo data for exploring the API in GraphiQL — three users in one
// organization with two projects of tasks. Safe to run again: it changes nothing the second time.
import pg from "pg";
import { createPasswords } from "../auth/passwords.ts";
import { ConfigError, loadConfig } from "../config.ts";
import { createLogger } from "../logger.ts";
import { openDatabase } from "./database.ts";
import { migrateDatabase } from "./setup.ts";

const PASSWORD = "oddscenes-demo";
const PEOPLE = [
  { email: "olivia@demo.oddscenes.dev", name: "Olivia Owner", role: "owner" },
  { email: "adam@demo.oddscenes.dev", name: "Adam Admin", role: "admin" },
  { email: "mia@demo.oddscenes.dev", name: "Mia Member", role: "member" },
] as const;
const PROJECTS: Array<{ name: string; description: string; tasks: Array<[title: string, status: string, priority: string, assignee: number | null, dueInDays: number | null]> }> = [
  {
    name: "Website relaunch",
    description: "New marketing site before the spring campaign.",
    tasks: [
      ["Design the landing page", "in_progress", "high", 1, 5],
      ["Write homepage copy", "todo", "medium", 2, 7],
      ["Set up analytics", "todo", "low", null, null],
      ["Choose a font pairing", "done", "low", 1, -3],
      ["Fix the broken signup link", "todo", "urgent", 2, 1],
      ["Compress hero images", "in_progress", "medium", 2, 3],
      ["Cookie banner", "canceled", "low", null, null],
    ],
  },
  {
    name: "Mobile app",
    description: "First version of the iOS and Android apps.",
    tasks: [
      ["Sketch the onboarding flow", "done", "high", 0, -10],
      ["Push notification permissions", "todo", "medium", 2, 14],
      ["Offline mode for tasks", "todo", "high", 1, 21],
      ["App store screenshots", "todo", "low", null, 30],
      ["Crash reporting", "in_progress", "high", 1, 2],
    ],
  },
];

async function main() {
  const config = loadConfig(process.env, process.cwd(), "cli");
  const logger = createLogger({ level: "warn" });
  const database = await openDatabase(config, logger);
  const client = new pg.Client({ connectionString: database.urls.owner });
  try {
    await migrateDatabase(database.urls, logger);
    await client.connect();
    const existing = await client.query("select 1 from app_public.organizations where slug = 'acme'");
    if (existing.rowCount) {
      console.log("Demo data is already there.");
    } else {
      const hash = await createPasswords().hash(PASSWORD);
      await client.query("begin");
      const ids: string[] = [];
      for (const person of PEOPLE) {
        const { rows } = await client.query(
          "insert into app_public.users (email, name, email_verified_at) values ($1, $2, now()) returning id",
          [person.email, person.name],
        );
        ids.push(rows[0].id);
        await client.query("insert into app_private.user_secrets (user_id, password_hash) values ($1, $2)", [rows[0].id, hash]);
      }
      const org = await client.query("insert into app_public.organizations (slug, name) values ('acme', 'Acme') returning id");
      const orgId = org.rows[0].id;
      for (const [i, person] of PEOPLE.entries()) {
        await client.query("insert into app_public.organization_memberships (organization_id, user_id, role) values ($1, $2, $3)", [
          orgId,
          ids[i],
          person.role,
        ]);
      }
      for (const project of PROJECTS) {
        const p = await client.query(
          "insert into app_public.projects (organization_id, name, description) values ($1, $2, $3) returning id",
          [orgId, project.name, project.description],
        );
        for (const [title, status, priority, assignee, dueInDays] of project.tasks) {
          await client.query(
            `insert into app_public.tasks (project_id, title, status, priority, assignee_id, due_at)
             values ($1, $2, $3, $4, $5, case when $6::int is null then null else now() + make_interval(days => $6::int) end)`,
            [p.rows[0].id, title, status, priority, assignee === null ? null : ids[assignee], dueInDays],
          );
        }
      }
      await client.query("commit");
      console.log("Demo data created.");
    }
    const url = config.publicUrl;
    console.log(`
Organization "Acme" (slug acme) with projects "Website relaunch" and "Mobile app".
Sign in with any of these; the password is "${PASSWORD}":
${PEOPLE.map((p) => `  ${p.role.padEnd(7)} ${p.email}`).join("\n")}

Try it:
  curl -s ${url}/auth/login -H 'content-type: application/json' \\
    -d '{"email":"${PEOPLE[2].email}","password":"${PASSWORD}"}'
Then open ${url}/graphiql, add the header  Authorization: Bearer <accessToken>  and run
  { organizations { nodes { name projects { nodes { name tasks(first: 5) { totalCount nodes { title status assignee { name } } } } } } } }`);
  } catch (error) {
    await client.query("rollback").catch(() => {});
    throw error;
  } finally {
    await client.end().catch(() => {});
    await database.stop();
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error instanceof ConfigError || error instanceof Error ? error.message : error);
    process.exit(1);
  },
);
