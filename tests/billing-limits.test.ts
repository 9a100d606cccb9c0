import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildTestApp, type TestApp } from "./helpers/app.ts";
import { graphql, RELAXED_LIMITS, signUp, uniqueEmail, type SignedUp } from "./helpers/auth.ts";
import { createTestDatabase, type TestDatabase } from "./helpers/database.ts";
import { runJobs } from "./helpers/jobs.ts";
import { deliver, startFakeStripe, stripeEnv, stripeEvent, type FakeStripe } from "./helpers/stripe.ts";
import { gqlError, gqlOk } from "./helpers/tenants.ts";

let db: TestDatabase;
let api: TestApp;
let stripe: FakeStripe;

beforeAll(async () => {
  [db, stripe] = await Promise.all([createTestDatabase(), startFakeStripe()]);
  Object.assign(process.env, stripeEnv(stripe));
  api = await buildTestApp(db, { env: { ...RELAXED_LIMITS, ...stripeEnv(stripe) }, poolSize: 10 });
});

afterAll(async () => {
  for (const key of Object.keys(stripeEnv(stripe))) delete process.env[key];
  await api?.close();
  await stripe?.close();
  await db?.drop();
});

const CREATE_PROJECT = `mutation ($org: UUID!, $name: String!) { createProject(input: { project: { organizationId: $org, name: $name } }) { project { rowId } } }`;
const CREATE_TASK = `mutation ($p: UUID!, $title: String!) { createTask(input: { task: { projectId: $p, title: $title } }) { task { rowId } } }`;
const ACCEPT = `mutation ($token: String!) { acceptInvitation(input: { token: $token }) { membership { role } } }`;
const INVITE = `mutation ($org: UUID!, $email: String!) { inviteToOrganization(input: { organizationId: $org, email: $email }) { invitation { rowId } } }`;
const ENTITLEMENTS = `query ($org: UUID!) { organization(rowId: $org) { entitlements { planName subscriptionStatus graceEndsAt maxProjects projects canCreateProject
  maxMembers members pendingInvitations canInviteMember maxTasksPerProject } } }`;

interface Team {
  owner: SignedUp;
  member: SignedUp;
  outsider: SignedUp;
  organizationId: string;
}

/** A fresh organization on the free plan: an owner, a member, and an outsider with an organization of their own. */
async function team(): Promise<Team> {
  const [owner, member, outsider] = await Promise.all([signUp(api), signUp(api), signUp(api)]);
  const org = await gqlOk(api, owner.accessToken, `mutation ($slug: String!) { createOrganization(input: { slug: $slug, name: "Limited" }) { organization { rowId } } }`, {
    slug: `lim-${owner.id.slice(0, 12)}`,
  });
  const organizationId = org.createOrganization.organization.rowId as string;
  await db.root.query("insert into app_public.organization_memberships (organization_id, user_id) values ($1, $2)", [organizationId, member.id]);
  return { owner, member, outsider, organizationId };
}

/** Subscribes the organization to a new paid plan through Stripe's webhook, as Checkout would. */
async function subscribe(organizationId: string, metadata: Record<string, string>, status = "active") {
  const customer = `cus_${organizationId.replaceAll("-", "").slice(0, 14)}`;
  stripe.customers.set(customer, { id: customer, object: "customer" });
  const { price } = stripe.addPlan({ name: "Pro", amount: 2000, metadata });
  const subscription = stripe.addSubscription({ customer, price, organizationId, status });
  await deliver(api, stripeEvent("customer.subscription.created", subscription));
  await runJobs(db);
  return subscription;
}

/** Changes a subscription in Stripe and tells the backend, as Stripe would. */
async function update(subscription: Record<string, any>, changes: Record<string, unknown>) {
  Object.assign(subscription, changes);
  await deliver(api, stripeEvent("customer.subscription.updated", subscription));
  await runJobs(db);
}

describe("the free plan's limits, from every role's view", () => {
  it("projects: the fourth is refused with the plan and the limit named, for owners and members alike", async () => {
    const { owner, member, outsider, organizationId } = await team();
    for (const name of ["One", "Two", "Three"]) await gqlOk(api, owner.accessToken, CREATE_PROJECT, { org: organizationId, name });
    for (const who of [owner, member]) {
      expect(await gqlError(api, who.accessToken, CREATE_PROJECT, { org: organizationId, name: "Four" })).toEqual({
        code: "plan_limit_reached",
        message: "Your Free plan allows 3 projects; upgrade to add more.",
      });
    }
    // Outsiders and anonymous callers learn nothing about the plan: they are simply refused.
    expect((await gqlError(api, outsider.accessToken, CREATE_PROJECT, { org: organizationId, name: "Four" })).code).toBe("forbidden");
    expect((await gqlError(api, undefined, CREATE_PROJECT, { org: organizationId, name: "Four" })).code).toBe("forbidden");
    const res = await graphql(api, ENTITLEMENTS, { token: member.accessToken, variables: { org: organizationId } });
    expect(res.body.data.organization.entitlements).toEqual({
      planName: "Free",
      subscriptionStatus: null,
      graceEndsAt: null,
      maxProjects: 3,
      projects: 3,
      canCreateProject: false,
      maxMembers: 5,
      members: 2,
      pendingInvitations: 0,
      canInviteMember: true,
      maxTasksPerProject: 250,
    });
    expect((await graphql(api, ENTITLEMENTS, { token: outsider.accessToken, variables: { org: organizationId } })).body.data.organization).toBeNull();
  });

  it("members: pending invitations count, and accepting cannot exceed the plan", async () => {
    const { owner, organizationId } = await team();
    const emails = [uniqueEmail("seat"), uniqueEmail("seat"), uniqueEmail("seat")];
    const invitations: string[] = [];
    for (const email of emails) invitations.push((await gqlOk(api, owner.accessToken, INVITE, { org: organizationId, email })).inviteToOrganization.invitation.rowId);
    expect(await gqlError(api, owner.accessToken, INVITE, { org: organizationId, email: uniqueEmail("seat") })).toEqual({
      code: "plan_limit_reached",
      message: "Your Free plan allows 5 members (pending invitations included); upgrade to add more.",
    });

    // Meanwhile seats fill up another way (an operator adds people): the invitation can no longer be accepted.
    const join = async () =>
      db.root.query("insert into app_public.organization_memberships (organization_id, user_id) values ($1, $2)", [organizationId, (await signUp(api)).id]);
    for (let i = 0; i < 3; i++) await join();
    const invitee = await signUp(api, { email: emails[0] });
    const { rows } = await db.root.query<{ token: string }>("select token from app_private.mint_invitation_token($1)", [invitations[0]]);
    expect(await gqlError(api, invitee.accessToken, ACCEPT, { token: rows[0]!.token })).toEqual({
      code: "plan_limit_reached",
      message: "Your Free plan allows 5 members; upgrade to add more.",
    });
    await expect(join()).rejects.toMatchObject({ code: "OSPLN" });
  });

  it("members: an invitation accepted by someone already a member adds nobody, so a full plan does not refuse it", async () => {
    const { member, organizationId } = await team();
    for (let i = 0; i < 3; i++) {
      await db.root.query("insert into app_public.organization_memberships (organization_id, user_id) values ($1, $2)", [organizationId, (await signUp(api)).id]);
    }
    // Invited before they joined another way.
    const { rows: invitation } = await db.root.query("insert into app_public.organization_invitations (organization_id, email) values ($1, $2) returning id", [
      organizationId,
      member.email,
    ]);
    const { rows } = await db.root.query<{ token: string }>("select token from app_private.mint_invitation_token($1)", [invitation[0].id]);
    const accepted = await gqlOk(api, member.accessToken, ACCEPT, { token: rows[0]!.token });
    expect(accepted.acceptInvitation.membership).toEqual({ role: "member" });
    const { rows: members } = await db.root.query("select count(*)::int as n from app_public.organization_memberships where organization_id = $1", [organizationId]);
    expect(members).toEqual([{ n: 5 }]);
  });

  it("tasks per project", async () => {
    const { owner, organizationId } = await team();
    await db.root.query("update app_public.plans set max_tasks_per_project = 2 where is_default");
    try {
      const project = (await gqlOk(api, owner.accessToken, CREATE_PROJECT, { org: organizationId, name: "Small" })).createProject.project.rowId;
      await gqlOk(api, owner.accessToken, CREATE_TASK, { p: project, title: "A" });
      await gqlOk(api, owner.accessToken, CREATE_TASK, { p: project, title: "B" });
      expect(await gqlError(api, owner.accessToken, CREATE_TASK, { p: project, title: "C" })).toEqual({
        code: "plan_limit_reached",
        message: "Your Free plan allows 2 tasks per project; upgrade to add more.",
      });
      const remaining = await gqlOk(api, owner.accessToken, `query ($p: UUID!) { project(rowId: $p) { tasksRemaining } }`, { p: project });
      expect(remaining.project.tasksRemaining).toBe(0);
    } finally {
      await db.root.query("update app_public.plans set max_tasks_per_project = 250 where is_default");
    }
  });
});

describe("paid plans, downgrades and late payments", () => {
  it("a paid plan lifts the limits; a cancellation keeps what exists but blocks new creation", async () => {
    const { owner, organizationId } = await team();
    const subscription = await subscribe(organizationId, { max_projects: "10", max_members: "unlimited" });
    for (let i = 1; i <= 5; i++) await gqlOk(api, owner.accessToken, CREATE_PROJECT, { org: organizationId, name: `Paid ${i}` });
    const paid = (await graphql(api, ENTITLEMENTS, { token: owner.accessToken, variables: { org: organizationId } })).body.data.organization.entitlements;
    expect(paid).toMatchObject({ planName: "Pro", subscriptionStatus: "active", maxProjects: 10, projects: 5, canCreateProject: true, maxMembers: null, canInviteMember: true });

    await update(subscription, { status: "canceled", canceled_at: Math.floor(Date.now() / 1000), ended_at: Math.floor(Date.now() / 1000) });
    const { rows } = await db.root.query("select count(*)::int as n from app_public.projects where organization_id = $1", [organizationId]);
    expect(rows[0].n).toBe(5);
    expect((await gqlError(api, owner.accessToken, CREATE_PROJECT, { org: organizationId, name: "Sixth" })).code).toBe("plan_limit_reached");
    const free = (await graphql(api, ENTITLEMENTS, { token: owner.accessToken, variables: { org: organizationId } })).body.data.organization.entitlements;
    expect(free).toMatchObject({ planName: "Free", subscriptionStatus: null, projects: 5, canCreateProject: false });
  });

  it("past_due keeps the paid limits for the grace period, then falls back to free; unpaid falls back at once", async () => {
    const { owner, organizationId } = await team();
    const subscription = await subscribe(organizationId, { max_projects: "10" });
    await update(subscription, { status: "past_due" });
    const grace = (await graphql(api, ENTITLEMENTS, { token: owner.accessToken, variables: { org: organizationId } })).body.data.organization.entitlements;
    expect(grace).toMatchObject({ planName: "Pro", subscriptionStatus: "past_due", maxProjects: 10 });
    expect(new Date(grace.graceEndsAt).getTime() - Date.now()).toBeGreaterThan(6.9 * 86400_000);
    for (let i = 1; i <= 4; i++) await gqlOk(api, owner.accessToken, CREATE_PROJECT, { org: organizationId, name: `Grace ${i}` });

    // Eight days later, still past_due: the free plan's limits apply.
    await db.root.query("update app_public.subscriptions set past_due_since = now() - interval '8 days' where stripe_subscription_id = $1", [subscription.id]);
    expect((await gqlError(api, owner.accessToken, CREATE_PROJECT, { org: organizationId, name: "Late" })).code).toBe("plan_limit_reached");
    // Stripe telling us again that it is past_due does not restart the grace period.
    await update(subscription, { status: "past_due" });
    expect((await gqlError(api, owner.accessToken, CREATE_PROJECT, { org: organizationId, name: "Late" })).code).toBe("plan_limit_reached");

    await update(subscription, { status: "active" });
    await gqlOk(api, owner.accessToken, CREATE_PROJECT, { org: organizationId, name: "Paid again" });
    await update(subscription, { status: "unpaid" });
    expect((await gqlError(api, owner.accessToken, CREATE_PROJECT, { org: organizationId, name: "Unpaid" })).code).toBe("plan_limit_reached");
  });

  it("the grace period follows BILLING_PAST_DUE_GRACE", async () => {
    const { owner, organizationId } = await team();
    const subscription = await subscribe(organizationId, { max_projects: "10" });
    await update(subscription, { status: "past_due" });
    const strict = await buildTestApp(db, { env: { ...RELAXED_LIMITS, ...stripeEnv(stripe), BILLING_PAST_DUE_GRACE: "1d" } });
    try {
      await db.root.query("update app_public.subscriptions set past_due_since = now() - interval '2 days' where stripe_subscription_id = $1", [subscription.id]);
      expect((await graphql(strict, ENTITLEMENTS, { token: owner.accessToken, variables: { org: organizationId } })).body.data.organization.entitlements.planName).toBe("Free");
      expect((await graphql(api, ENTITLEMENTS, { token: owner.accessToken, variables: { org: organizationId } })).body.data.organization.entitlements.planName).toBe("Pro");
    } finally {
      await strict.close();
    }
  });
});

describe("limits hold under concurrency", () => {
  it("of many requests racing for the last free project slots, exactly the allowed number succeed", async () => {
    for (let round = 0; round < 3; round++) {
      const { owner, organizationId } = await team();
      await gqlOk(api, owner.accessToken, CREATE_PROJECT, { org: organizationId, name: "Existing" });
      const results = await Promise.all(
        Array.from({ length: 8 }, (_, i) => graphql(api, CREATE_PROJECT, { token: owner.accessToken, variables: { org: organizationId, name: `Racer ${i}` } })),
      );
      const codes = results.map((res) => res.body.errors?.[0]?.extensions?.code ?? "ok");
      expect(codes.filter((code) => code === "ok")).toHaveLength(2);
      expect(codes.filter((code) => code === "plan_limit_reached")).toHaveLength(6);
      const { rows } = await db.root.query("select count(*)::int as n from app_public.projects where organization_id = $1", [organizationId]);
      expect(rows[0].n).toBe(3);
    }
  });

  it("racing invitations and tasks stay within the plan too", async () => {
    const { owner, organizationId } = await team();
    const invites = await Promise.all(
      Array.from({ length: 8 }, () => graphql(api, INVITE, { token: owner.accessToken, variables: { org: organizationId, email: uniqueEmail("race") } })),
    );
    expect(invites.filter((res) => !res.body.errors)).toHaveLength(3);
    await db.root.query("update app_public.plans set max_tasks_per_project = 4 where is_default");
    try {
      const project = (await gqlOk(api, owner.accessToken, CREATE_PROJECT, { org: organizationId, name: "Crowded" })).createProject.project.rowId;
      const tasks = await Promise.all(
        Array.from({ length: 10 }, (_, i) => graphql(api, CREATE_TASK, { token: owner.accessToken, variables: { p: project, title: `Task ${i}` } })),
      );
      expect(tasks.filter((res) => !res.body.errors)).toHaveLength(4);
    } finally {
      await db.root.query("update app_public.plans set max_tasks_per_project = 250 where is_default");
    }
  });
});

describe("plans", () => {
  it("anyone, anonymous included, lists the active plans without Stripe's ids", async () => {
    const res = await graphql(api, `{ plans(filter: { active: { equalTo: true } }, orderBy: [SORT_ORDER_ASC, AMOUNT_ASC]) { nodes { name amount currency interval maxProjects isDefault } } }`);
    expect(res.status).toBe(200);
    expect(res.body.data.plans.nodes[0]).toEqual({ name: "Free", amount: "0", currency: "usd", interval: null, maxProjects: 3, isDefault: true });
    const introspection = await graphql(api, `{ __type(name: "Plan") { fields { name } } }`);
    expect(introspection.body.data.__type.fields.map((f: { name: string }) => f.name)).not.toContain("stripePriceId");
  });
});
