import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pg from "pg";
import { buildTestApp, type TestApp } from "./helpers/app.ts";
import { RELAXED_LIMITS, type SignedUp } from "./helpers/auth.ts";
import { asRole, createTestDatabase, type TestDatabase } from "./helpers/database.ts";
import { arrangeTenants, gqlOk, type Tenants } from "./helpers/tenants.ts";

let db: TestDatabase;
let api: TestApp;
let t: Tenants;

beforeAll(async () => {
  db = await createTestDatabase();
  api = await buildTestApp(db, { env: RELAXED_LIMITS });
  t = await arrangeTenants(api, db, "rls");
  await db.root.query(
    "insert into app_public.organization_invitations (organization_id, email, invited_by) values ($1, 'pending@example.com', $2)",
    [t.acme.id, t.owner.id],
  );
  await db.root.query(
    `insert into app_public.subscription_payment_details (subscription_id, organization_id, card_brand, card_last4, last_synced_at)
     select id, organization_id, 'visa', '4242', now() from app_public.subscriptions where organization_id = $1`,
    [t.acme.id],
  );
  await db.root.query(
    "insert into app_public.plans (stripe_product_id, stripe_price_id, name, price_active, price_synced_at) values ('prod_retired', 'price_retired', 'Retired', false, now())",
  );
  await db.root.query("select app_private.compute_usage_report($1, current_date - 1)", [t.acme.id]);
  // Files: a ready attachment and a pending one of the member's on Acme's task, and the member's avatar.
  await db.root.query(
    `insert into app_public.files (organization_id, uploaded_by, purpose, task_id, user_id, object_key, filename, content_type, declared_size, size, status, completed_at)
     values ($1::uuid, $2::uuid, 'task_attachment', $3::uuid, null, $1::text || '/ready', 'ready.txt', 'text/plain', 5, 5, 'ready', now()),
            ($1::uuid, $2::uuid, 'task_attachment', $3::uuid, null, $1::text || '/pending', 'pending.txt', 'text/plain', 5, null, 'pending', null),
            (null, $2::uuid, 'avatar', null, $2::uuid, 'avatars/' || $2::text || '/a', 'me.png', 'image/png', 5, 5, 'ready', now())`,
    [t.acme.id, t.member.id, t.acme.taskId],
  );
  // A plan no longer offered that Acme was once subscribed to.
  await db.root.query(
    `with legacy as (
       insert into app_public.plans (stripe_product_id, stripe_price_id, name, product_active, product_synced_at)
       values ('prod_legacy', 'price_legacy', 'Legacy', false, now()) returning id)
     insert into app_public.subscriptions (organization_id, stripe_subscription_id, plan_id, status, ended_at, last_synced_at)
     select $1, 'sub_rls_legacy', id, 'canceled', now(), now() from legacy`,
    [t.acme.id],
  );
});

afterAll(async () => {
  await api?.close();
  await db?.drop();
});

type Viewer = "anonymous" | "outsider" | "member" | "admin" | "owner" | "siteAdmin";
const VIEWERS: Viewer[] = ["anonymous", "outsider", "member", "admin", "owner", "siteAdmin"];

async function claimsOf(account: SignedUp) {
  const { rows } = await db.root.query("select id from app_private.sessions where user_id = $1 order by created_at limit 1", [account.id]);
  return { user_id: account.id, session_id: rows[0].id as string };
}

/** Runs SQL as the viewer, exactly as a request of theirs would; always rolled back. */
async function as<T>(viewer: Viewer, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  if (viewer === "anonymous") return asRole(db, "anonymous", {}, fn);
  return asRole(db, "user", await claimsOf(t[viewer]), fn);
}

async function count(viewer: Viewer, sql: string, params: unknown[] = []): Promise<number> {
  return as(viewer, async (c) => (await c.query(sql, params)).rowCount ?? 0);
}

/** Outcome of a write: how many rows it touched, or the SQLSTATE it was refused with. */
async function attempt(viewer: Viewer, sql: string, params: unknown[] = []): Promise<number | string> {
  try {
    return await count(viewer, sql, params);
  } catch (error) {
    return (error as { code?: string }).code ?? "error";
  }
}

describe("reads: who sees Acme's rows", () => {
  const tables = {
    organizations: "select 1 from app_public.organizations where id = $1",
    organization_memberships: "select 1 from app_public.organization_memberships where organization_id = $1",
    organization_invitations: "select 1 from app_public.organization_invitations where organization_id = $1",
    projects: "select 1 from app_public.projects where organization_id = $1",
    tasks: "select 1 from app_public.tasks where organization_id = $1",
    task_comments: "select 1 from app_public.task_comments where organization_id = $1",
    activity: "select 1 from app_public.activity where organization_id = $1",
    subscriptions: "select 1 from app_public.subscriptions where organization_id = $1",
    subscription_payment_details: "select 1 from app_public.subscription_payment_details where organization_id = $1",
    usage_reports: "select 1 from app_public.usage_reports where organization_id = $1",
    membership_preferences:
      "select 1 from app_public.membership_preferences p join app_public.organization_memberships m on m.id = p.membership_id where m.organization_id = $1 and m.role = 'owner'",
    files: "select 1 from app_public.files where organization_id = $1 and status = 'ready'",
    pending_files: "select 1 from app_public.files where organization_id = $1 and status = 'pending'",
    avatar_files: "select 1 from app_public.files f join app_public.organization_memberships m on m.user_id = f.user_id where m.organization_id = $1 and f.purpose = 'avatar'",
    // The owner's security activity (their sign-in, at least).
    security_events:
      "select 1 from app_public.security_events e where e.user_id = (select m.user_id from app_public.organization_memberships m where m.organization_id = $1 and m.role = 'owner')",
  };
  const expected: Record<keyof typeof tables, Record<Viewer, boolean>> = {
    organizations: { anonymous: false, outsider: false, member: true, admin: true, owner: true, siteAdmin: true },
    organization_memberships: { anonymous: false, outsider: false, member: true, admin: true, owner: true, siteAdmin: true },
    organization_invitations: { anonymous: false, outsider: false, member: false, admin: true, owner: true, siteAdmin: true },
    projects: { anonymous: false, outsider: false, member: true, admin: true, owner: true, siteAdmin: true },
    tasks: { anonymous: false, outsider: false, member: true, admin: true, owner: true, siteAdmin: true },
    task_comments: { anonymous: false, outsider: false, member: true, admin: true, owner: true, siteAdmin: true },
    activity: { anonymous: false, outsider: false, member: true, admin: true, owner: true, siteAdmin: true },
    subscriptions: { anonymous: false, outsider: false, member: true, admin: true, owner: true, siteAdmin: true },
    // Payment details are for the people who manage billing.
    subscription_payment_details: { anonymous: false, outsider: false, member: false, admin: true, owner: true, siteAdmin: true },
    usage_reports: { anonymous: false, outsider: false, member: true, admin: true, owner: true, siteAdmin: true },
    // The owner's own preferences: nobody else's business, site admins' neither.
    membership_preferences: { anonymous: false, outsider: false, member: false, admin: false, owner: true, siteAdmin: false },
    files: { anonymous: false, outsider: false, member: true, admin: true, owner: true, siteAdmin: true },
    // An upload in progress is its uploader's alone.
    pending_files: { anonymous: false, outsider: false, member: true, admin: false, owner: false, siteAdmin: false },
    // Avatars: the person and their coworkers (the membership join is root's view; the file is the viewer's).
    avatar_files: { anonymous: false, outsider: false, member: true, admin: true, owner: true, siteAdmin: false },
    // Nobody's business but the user's, and site administrators'.
    security_events: { anonymous: false, outsider: false, member: false, admin: false, owner: true, siteAdmin: true },
  };
  for (const [table, sql] of Object.entries(tables) as Array<[keyof typeof tables, string]>) {
    it(`${table}`, async () => {
      const seen = Object.fromEntries(await Promise.all(VIEWERS.map(async (v) => [v, (await count(v, sql, [t.acme.id])) > 0])));
      expect(seen).toEqual(expected[table]);
    });
  }
});

describe("writes", () => {
  it("projects: members create in their organization only; anonymous cannot", async () => {
    const insert = "insert into app_public.projects (organization_id, name) values ($1, 'New')";
    expect(await attempt("member", insert, [t.acme.id])).toBe(1);
    expect(await attempt("outsider", insert, [t.acme.id])).toBe("42501");
    expect(await attempt("siteAdmin", insert, [t.acme.id])).toBe("42501");
    expect(await attempt("anonymous", insert, [t.acme.id])).toBe("42501");
  });

  it("projects: members rename, managers delete, others touch nothing", async () => {
    const rename = "update app_public.projects set name = 'Renamed' where id = $1";
    const remove = "delete from app_public.projects where id = $1";
    expect(await attempt("member", rename, [t.acme.projectId])).toBe(1);
    expect(await attempt("outsider", rename, [t.acme.projectId])).toBe(0);
    expect(await attempt("siteAdmin", rename, [t.acme.projectId])).toBe(0);
    expect(await attempt("member", remove, [t.acme.projectId])).toBe(0);
    expect(await attempt("admin", remove, [t.acme.projectId])).toBe(1);
    expect(await attempt("owner", remove, [t.acme.projectId])).toBe(1);
    expect(await attempt("outsider", remove, [t.acme.projectId])).toBe(0);
    expect(await attempt("anonymous", remove, [t.acme.projectId])).toBe("42501");
    expect(await attempt("member", "update app_public.projects set archived_at = now() where id = $1", [t.acme.projectId])).toBe("42501");
  });

  it("tasks: members create and edit; creator or managers delete; outsiders touch nothing", async () => {
    const insert = "insert into app_public.tasks (project_id, title) values ($1, 'Written by SQL')";
    expect(await attempt("member", insert, [t.acme.projectId])).toBe(1);
    // An outsider cannot see the project, so it is "not found", exactly like a made-up id.
    expect(await attempt("outsider", insert, [t.acme.projectId])).toBe("OS404");
    expect(await attempt("outsider", insert, ["00000000-0000-4000-8000-000000000000"])).toBe("OS404");
    expect(await attempt("anonymous", insert, [t.acme.projectId])).toBe("42501");

    const edit = "update app_public.tasks set title = 'Edited' where id = $1";
    for (const viewer of ["member", "admin", "owner"] as const) expect(await attempt(viewer, edit, [t.acme.taskId])).toBe(1);
    expect(await attempt("outsider", edit, [t.acme.taskId])).toBe(0);
    expect(await attempt("siteAdmin", edit, [t.acme.taskId])).toBe(0);

    const remove = "delete from app_public.tasks where id = $1";
    expect(await attempt("member", remove, [t.acme.taskId])).toBe(1);
    expect(await attempt("admin", remove, [t.acme.taskId])).toBe(1);
    expect(await attempt("outsider", remove, [t.acme.taskId])).toBe(0);

    const someoneElses = await db.root.query("insert into app_public.tasks (project_id, title) values ($1, 'By root') returning id", [t.acme.projectId]);
    expect(await attempt("member", remove, [someoneElses.rows[0].id])).toBe(0);

    expect(await attempt("member", "update app_public.tasks set created_by = $2 where id = $1", [t.acme.taskId, t.owner.id])).toBe("42501");
    expect(await attempt("member", "update app_public.tasks set organization_id = $2 where id = $1", [t.acme.taskId, t.globex.id])).toBe("42501");
  });

  it("task_comments: members comment as themselves; authors edit; authors and managers delete", async () => {
    const insert = "insert into app_public.task_comments (task_id, body) values ($1, 'Hello')";
    expect(await attempt("admin", insert, [t.acme.taskId])).toBe(1);
    expect(await attempt("outsider", insert, [t.acme.taskId])).toBe("OS404");
    expect(await attempt("outsider", insert, ["00000000-0000-4000-8000-000000000000"])).toBe("OS404");
    expect(await attempt("anonymous", insert, [t.acme.taskId])).toBe("42501");
    const edit = "update app_public.task_comments set body = 'Edited' where id = $1";
    expect(await attempt("member", edit, [t.acme.commentId])).toBe(1);
    expect(await attempt("admin", edit, [t.acme.commentId])).toBe(0);
    expect(await attempt("outsider", edit, [t.acme.commentId])).toBe(0);
    const remove = "delete from app_public.task_comments where id = $1";
    expect(await attempt("owner", remove, [t.acme.commentId])).toBe(1);
    expect(await attempt("member", remove, [t.acme.commentId])).toBe(1);
    expect(await attempt("outsider", remove, [t.acme.commentId])).toBe(0);
    expect(await attempt("member", "update app_public.task_comments set author_id = $2 where id = $1", [t.acme.commentId, t.owner.id])).toBe("42501");
  });

  it("organizations: managers rename; nobody inserts or deletes directly", async () => {
    const rename = "update app_public.organizations set name = 'Acme Inc' where id = $1";
    expect(await attempt("owner", rename, [t.acme.id])).toBe(1);
    expect(await attempt("admin", rename, [t.acme.id])).toBe(1);
    expect(await attempt("member", rename, [t.acme.id])).toBe(0);
    expect(await attempt("outsider", rename, [t.acme.id])).toBe(0);
    expect(await attempt("owner", "delete from app_public.organizations where id = $1", [t.acme.id])).toBe("42501");
    expect(await attempt("owner", "insert into app_public.organizations (slug, name) values ('direct', 'Direct')")).toBe("42501");
  });

  it("memberships and activity: no request role writes them directly", async () => {
    for (const viewer of ["owner", "siteAdmin"] as const) {
      expect(await attempt(viewer, "update app_public.organization_memberships set role = 'owner' where organization_id = $1", [t.acme.id])).toBe("42501");
      expect(await attempt(viewer, "insert into app_public.organization_memberships (organization_id, user_id) values ($1, $2)", [t.acme.id, t.outsider.id])).toBe("42501");
      expect(await attempt(viewer, "delete from app_public.organization_memberships where organization_id = $1", [t.acme.id])).toBe("42501");
      expect(await attempt(viewer, "insert into app_public.activity (organization_id, action, entity_type, entity_id) values ($1, 'x', 'y', $1)", [t.acme.id])).toBe("42501");
      expect(await attempt(viewer, "delete from app_public.activity where organization_id = $1", [t.acme.id])).toBe("42501");
    }
  });

  it("usage reports and preferences: computed and kept by the database; each member reads and changes only their own preferences", async () => {
    for (const viewer of VIEWERS) {
      expect(await attempt(viewer, "update app_public.usage_reports set tasks_created = 0")).toBe("42501");
      expect(await attempt(viewer, "insert into app_public.usage_reports (organization_id, day, tasks_created, tasks_completed, tasks_overdue, comments, active_members, actions, projects, members, tasks) values ($1, current_date, 0, 0, 0, 0, 0, 0, 0, 0, 0)", [t.acme.id])).toBe("42501");
      expect(await attempt(viewer, "delete from app_public.usage_reports")).toBe("42501");
      expect(await attempt(viewer, "update app_public.membership_preferences set email_daily_report = false")).toBe("42501");
      expect(await attempt(viewer, "delete from app_public.membership_preferences")).toBe("42501");
      expect(await attempt(viewer, "select * from app_private.usage_report_emails")).toBe("42501");
    }
    const own = "select 1 from app_public.membership_preferences p join app_public.organization_memberships m on m.id = p.membership_id where m.organization_id = $1";
    const seen = Object.fromEntries(await Promise.all(VIEWERS.map(async (v) => [v, await count(v, own, [t.acme.id])])));
    // Everyone in Acme sees exactly one row: their own (the site admin is not a member).
    expect(seen).toEqual({ anonymous: 0, outsider: 0, member: 1, admin: 1, owner: 1, siteAdmin: 0 });
    for (const viewer of ["member", "admin", "owner"] as const) {
      expect(await attempt(viewer, "select app_public.update_membership_preferences($1, false)", [t.acme.id])).toBe(1);
    }
    expect(await attempt("outsider", "select app_public.update_membership_preferences($1, false)", [t.acme.id])).toBe("OS404");
    expect(await attempt("anonymous", "select app_public.update_membership_preferences($1, false)", [t.acme.id])).toBe("42501");
  });

  it("invitations: managers revoke; members and outsiders cannot", async () => {
    const remove = "delete from app_public.organization_invitations where organization_id = $1";
    expect(await attempt("member", remove, [t.acme.id])).toBe(0);
    expect(await attempt("outsider", remove, [t.acme.id])).toBe(0);
    expect(await attempt("admin", remove, [t.acme.id])).toBeGreaterThan(0);
    expect(await attempt("admin", "update app_public.organization_invitations set role = 'owner' where organization_id = $1", [t.acme.id])).toBe("42501");
  });

  it("the helpers signed-in users may call never reach beyond what the caller may do", async () => {
    const before = await db.root.query("select id, position from app_public.tasks where project_id = $1 order by id", [t.globex.projectId]);
    await db.root.query("update app_public.tasks set position = 7 where project_id = $1", [t.globex.projectId]);
    await db.root.query("update app_public.projects set archived_at = now() where id = $1", [t.globex.projectId]);
    try {
      // Another organization's archived project: as unknown as a made-up one, and left untouched.
      expect(await attempt("member", "select app_hidden.assert_project_writable($1)", [t.globex.projectId])).toBe(1);
      expect(await attempt("member", "select app_hidden.renumber_task_column($1, 'todo')", [t.globex.projectId])).toBe(1);
      expect(await attempt("member", "select app_hidden.lock_task_positions($1)", [t.globex.projectId])).toBe(1);
      const { rows } = await db.root.query("select position from app_public.tasks where project_id = $1", [t.globex.projectId]);
      expect(rows.every((row) => Number(row.position) === 7)).toBe(true);
      expect(await attempt("outsider", "select app_hidden.assert_project_writable($1)", [t.globex.projectId])).toBe("OS409");
    } finally {
      await db.root.query("update app_public.projects set archived_at = null where id = $1", [t.globex.projectId]);
      for (const row of before.rows) await db.root.query("update app_public.tasks set position = $2 where id = $1", [row.id, row.position]);
    }
    for (const helper of ["lock_task_positions(uuid)", "assert_project_writable(uuid)", "renumber_task_column(uuid, app_public.task_status)", "next_task_position(uuid, app_public.task_status)"]) {
      const { rows } = await db.root.query("select prosecdef from pg_proc where oid = $1::regprocedure", [`app_hidden.${helper}`]);
      expect(rows, helper).toEqual([{ prosecdef: false }]);
    }
  });

  it("plans: everyone sees the active ones, members the retired ones their organization had, site admins all; nobody writes them", async () => {
    for (const viewer of VIEWERS) {
      expect(await count(viewer, "select 1 from app_public.plans where is_default")).toBe(1);
      expect(await count(viewer, "select 1 from app_public.plans where name = 'Retired'")).toBe(viewer === "siteAdmin" ? 1 : 0);
      expect(await count(viewer, "select 1 from app_public.plans where name = 'Legacy'"), viewer).toBe(["member", "admin", "owner", "siteAdmin"].includes(viewer) ? 1 : 0);
      expect(await attempt(viewer, "select stripe_price_id from app_public.plans")).toBe("42501");
      expect(await attempt(viewer, "update app_public.plans set max_projects = null")).toBe("42501");
      expect(await attempt(viewer, "insert into app_public.plans (name) values ('Mine')")).toBe("42501");
      expect(await attempt(viewer, "delete from app_public.plans")).toBe("42501");
    }
  });

  it("subscriptions and payment details: nobody writes them through the API, nor reads Stripe's ids", async () => {
    for (const viewer of VIEWERS) {
      expect(await attempt(viewer, "update app_public.subscriptions set status = 'active'")).toBe("42501");
      expect(await attempt(viewer, "insert into app_public.subscriptions (organization_id, stripe_subscription_id, status, last_synced_at) values ($1, 'sub_x', 'active', now())", [t.acme.id])).toBe("42501");
      expect(await attempt(viewer, "delete from app_public.subscriptions")).toBe("42501");
      expect(await attempt(viewer, "select stripe_subscription_id from app_public.subscriptions")).toBe("42501");
      expect(await attempt(viewer, "update app_public.subscription_payment_details set card_last4 = '0000'")).toBe("42501");
      expect(await attempt(viewer, "delete from app_public.subscription_payment_details")).toBe("42501");
      for (const table of ["stripe_customers", "stripe_events", "billing_notices", "stripe_held_subscriptions"]) {
        expect(await attempt(viewer, `select * from app_private.${table}`), table).toBe("42501");
      }
    }
  });

  it("an organization's current subscription through GraphQL: members see it, only owners and admins its card", async () => {
    const query = `query ($id: UUID!) { organization(rowId: $id) { currentSubscription { status plan { name } paymentDetails { cardLast4 } } } }`;
    const seen: Record<string, unknown> = {};
    for (const viewer of VIEWERS) {
      const token = viewer === "anonymous" ? undefined : t[viewer].accessToken;
      seen[viewer] = (await gqlOk(api, token, query, { id: t.acme.id })).organization;
    }
    const withCard = { currentSubscription: { status: "active", plan: { name: "Unlimited (tests)" }, paymentDetails: { cardLast4: "4242" } } };
    expect(seen).toEqual({
      anonymous: null,
      outsider: null,
      member: { currentSubscription: { status: "active", plan: { name: "Unlimited (tests)" }, paymentDetails: null } },
      admin: withCard,
      owner: withCard,
      siteAdmin: withCard,
    });

    // Called directly with a made-up organization row, the function still asks who is calling.
    const direct: Record<string, unknown> = {};
    for (const viewer of VIEWERS) {
      direct[viewer] = await as(viewer, async (c) => {
        const { rows } = await c.query(
          "select (app_public.organizations_current_subscription(jsonb_populate_record(null::app_public.organizations, jsonb_build_object('id', $1::uuid)))).status",
          [t.acme.id],
        );
        return rows[0].status;
      });
    }
    expect(direct).toEqual({ anonymous: null, outsider: null, member: "active", admin: "active", owner: "active", siteAdmin: "active" });
  });

  it("files: written only by the upload functions; the uploader or a manager deletes; nobody else", async () => {
    for (const viewer of VIEWERS) {
      expect(await attempt(viewer, "insert into app_public.files (organization_id, purpose, task_id, object_key, filename, content_type, declared_size) values ($1, 'task_attachment', $2, 'x/y', 'y', 'text/plain', 1)", [t.acme.id, t.acme.taskId])).toBe("42501");
      expect(await attempt(viewer, "update app_public.files set status = 'ready', size = 1, completed_at = now()")).toBe("42501");
      expect(await attempt(viewer, "update app_public.files set object_key = 'elsewhere'")).toBe("42501");
    }
    const remove = "delete from app_public.files where object_key = $1";
    const ready = `${t.acme.id}/ready`;
    expect(await attempt("anonymous", remove, [ready])).toBe("42501");
    expect(await attempt("outsider", remove, [ready])).toBe(0);
    expect(await attempt("siteAdmin", remove, [ready])).toBe(0);
    expect(await attempt("member", remove, [ready])).toBe(1);
    expect(await attempt("admin", remove, [ready])).toBe(1);
    expect(await attempt("owner", remove, [ready])).toBe(1);
    const avatar = `avatars/${t.member.id}/a`;
    expect(await attempt("member", remove, [avatar])).toBe(1);
    expect(await attempt("owner", remove, [avatar])).toBe(0);
    // The upload functions act for the caller only: another organization's task is "not found".
    expect(await attempt("outsider", "select app_hidden.create_upload('task_attachment', $1, 'a.txt', 'text/plain', 1)", [t.acme.taskId])).toBe("OS404");
    expect(await attempt("anonymous", "select app_hidden.create_upload('task_attachment', $1, 'a.txt', 'text/plain', 1)", [t.acme.taskId])).toBe("42501");
    // Avatars and logos are images of at most 5 MB, whatever the server's own limits.
    const newAvatar = (type: string, size: number) => as("member", async (c) => c.query("select app_hidden.create_upload('avatar', null, 'me', $1, $2)", [type, size]));
    await expect(newAvatar("application/pdf", 100)).rejects.toMatchObject({ code: "OS400", detail: "file_type_not_allowed" });
    await expect(newAvatar("image/png", 6 * 1024 * 1024)).rejects.toMatchObject({ code: "OS400", detail: "file_too_large" });
    expect((await newAvatar("image/png", 100)).rowCount).toBe(1);
    const pendingId = (await db.root.query("select id from app_public.files where object_key = $1", [`${t.acme.id}/pending`])).rows[0].id;
    for (const viewer of ["owner", "admin", "outsider", "siteAdmin"] as const) {
      expect(await attempt(viewer, "select app_hidden.complete_upload($1, 5, null)", [pendingId]), viewer).toBe("OS404");
      expect(await attempt(viewer, "select app_hidden.discard_upload($1)", [pendingId]), viewer).toBe("OS404");
    }
    expect(await attempt("member", "select app_hidden.complete_upload($1, 5, null)", [pendingId])).toBe(1);
  });

  it("search_tasks reads past row-level security (to use its index) and returns exactly the tasks each caller may read", async () => {
    // Acme's task ("Write the press release") and Globex's ("Globex-only task"), and both.
    const searches = ["press release", "globex", "task OR press", "-nothing"];
    const ids = (rows: Array<{ id: string }>) => rows.map((row) => row.id).sort();
    for (const viewer of VIEWERS) {
      for (const search of searches) {
        const [found, readable] = await as(viewer, async (c) => [
          ids((await c.query("select id from app_public.search_tasks($1)", [search])).rows),
          ids((await c.query("select id from app_public.tasks where search @@ websearch_to_tsquery('english', $1)", [search])).rows),
        ]);
        expect({ viewer, search, found }).toEqual({ viewer, search, found: readable });
      }
    }
    // The two organizations' tasks: the member sees Acme's, the outsider Globex's, a site admin both.
    const seen = async (viewer: Viewer) => (await as(viewer, (c) => c.query("select title from app_public.search_tasks('task OR press OR globex')"))).rows.map((r) => r.title).sort();
    expect(await seen("anonymous")).toEqual([]);
    expect(await seen("member")).toEqual(["Write the press release"]);
    expect(await seen("outsider")).toEqual(["Globex-only task"]);
    expect(await seen("siteAdmin")).toEqual(["Globex-only task", "Write the press release"]);
    // An ended session sees nothing, through the function as through the table.
    const { session_id } = await claimsOf(t.member);
    const ended = await asRole(db, "user", { user_id: t.member.id, session_id: "00000000-0000-4000-8000-000000000000" }, async (c) =>
      (await c.query("select id from app_public.search_tasks('press')")).rowCount,
    );
    expect(session_id).not.toBe("00000000-0000-4000-8000-000000000000");
    expect(ended).toBe(0);
  });

  it("the board's column positions are read past row-level security (to use their index) and match what each caller may read", async () => {
    const { rows: columns } = await db.root.query<{ project_id: string; status: string }>(
      "select distinct t.project_id, s.status::text from app_public.tasks t, unnest(enum_range(null::app_public.task_status)) s(status)",
    );
    expect(columns.length).toBeGreaterThanOrEqual(8);
    const nobody = "00000000-0000-4000-8000-000000000000";
    for (const viewer of VIEWERS.filter((v) => v !== "anonymous")) {
      for (const { project_id, status } of columns) {
        const [found, readable] = await as(viewer, async (c) => [
          (
            await c.query(
              `select app_hidden.task_column_last_position($1, $2)::text as last, app_hidden.task_column_next_position($1, $2, null, $3)::text as first,
                      app_hidden.task_column_next_position($1, $2, 0, $3)::text as after_zero`,
              [project_id, status, nobody],
            )
          ).rows[0],
          (
            await c.query(
              `select max(position)::text as last, min(position)::text as first, min(position) filter (where position > 0)::text as after_zero
               from app_public.tasks where project_id = $1 and status = $2::app_public.task_status`,
              [project_id, status],
            )
          ).rows[0],
        ]);
        expect({ viewer, project_id, status, found }).toEqual({ viewer, project_id, status, found: readable });
      }
    }
    // Roles that row-level security does not apply to (a superuser, the owner: seeds and jobs) see every row.
    const ownerPool = new pg.Pool({ connectionString: db.urls.owner, max: 1 });
    // Like the other pools here: a connection ended by the server (the database dropped) is no test failure.
    ownerPool.on("error", () => {});
    ownerPool.on("connect", (client) => client.on("error", () => {}));
    try {
      for (const reader of [db.root, ownerPool]) {
        for (const { project_id, status } of columns) {
          const both = await reader.query(
            `select app_hidden.task_column_last_position($1, $2::app_public.task_status)::text as found,
                    (select max(position) from app_public.tasks where project_id = $1 and status = $2::app_public.task_status)::text as readable`,
            [project_id, status],
          );
          expect(both.rows[0].found).toBe(both.rows[0].readable);
        }
      }
    } finally {
      await ownerPool.end();
    }
    // Only signed-in callers (whose task writes use them) may call them at all.
    expect(await attempt("anonymous", "select app_hidden.task_column_last_position($1, 'todo')", [columns[0]!.project_id])).toBe("42501");
  });

  it("invitation tokens stay private", async () => {
    for (const viewer of VIEWERS) {
      expect(await attempt(viewer, "select * from app_private.organization_invitation_secrets")).toBe("42501");
    }
  });
});

describe("every app_public table", () => {
  it("has row-level security enabled", async () => {
    const { rows } = await db.root.query(
      "select relname from pg_class where relnamespace = 'app_public'::regnamespace and relkind = 'r' and not relrowsecurity",
    );
    expect(rows).toEqual([]);
  });
});
