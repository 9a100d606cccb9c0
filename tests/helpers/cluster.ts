import type { DatabaseUrls } from "../../src/db/urls.ts";

/** What the global setup hands every test file (through vitest's provide/inject). */
export interface TestCluster {
  /** Superuser connection to the `postgres` database of the test server. */
  rootUrl: string;
  /** Migrated database each test file clones. */
  template: string;
  roles: DatabaseUrls["roles"];
  passwords: { owner: string; authenticator: string };
}

declare module "vitest" {
  export interface ProvidedContext {
    testCluster: TestCluster;
  }
}

export const TEST_ROLES = {
  owner: "oddscenes_test_owner",
  authenticator: "oddscenes_test_authenticator",
  anonymous: "oddscenes_test_anonymous",
  user: "oddscenes_test_user",
} as const;

export const TEST_PASSWORDS = { owner: "owner-test-password", authenticator: "authenticator-test-password" } as const;

/** URLs for `database` on the test server, connecting as each role. */
export function urlsFor(cluster: Pick<TestCluster, "rootUrl" | "roles" | "passwords">, database: string): DatabaseUrls {
  const as = (user: string, password: string | undefined, db = database) => {
    const url = new URL(cluster.rootUrl);
    url.username = user;
    url.password = password ?? "";
    url.pathname = `/${db}`;
    return url.toString();
  };
  const root = new URL(cluster.rootUrl);
  return {
    owner: as(cluster.roles.owner, cluster.passwords.owner),
    authenticator: as(cluster.roles.authenticator, cluster.passwords.authenticator),
    root: as(decodeURIComponent(root.username), decodeURIComponent(root.password) || undefined, database),
    shadow: undefined,
    roles: cluster.roles,
  };
}
