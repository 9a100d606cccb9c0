import { extendSchema } from "postgraphile/utils";

/**
 * Adds User.email, User.isAdmin, User.emailVerifiedAt, User.disabledAt and User.sessions. Request roles may only select a user's
 * public columns (co-members see name and avatar), so these come from id-taking SQL functions
 * that answer for the user themself and site administrators, and null for anyone else.
 */
export const PrivateUserFieldsPlugin = extendSchema((build) => {
  const { user_email: email, user_is_admin: isAdmin, user_email_verified_at: verifiedAt, user_sessions: sessions, user_disabled_at: disabledAt } = build.pgResources;
  if (!email || !isAdmin || !verifiedAt || !sessions || !disabledAt) throw new Error("PrivateUserFieldsPlugin needs app_public.user_email and friends");
  return {
    typeDefs: /* GraphQL */ `
      extend type User {
        """The address the user signs in with; visible to the user and site administrators only (null for anyone else)."""
        email: String
        """Whether the user is a site administrator; visible to the user and site administrators only."""
        isAdmin: Boolean
        """When the user confirmed their address; visible to the user and site administrators only."""
        emailVerifiedAt: Datetime
        """When a site administrator disabled the account; visible to the user and site administrators only (null while it may sign in, and for anyone else)."""
        disabledAt: Datetime
        """The user's live sessions (devices and browsers), most recently used first; the user's own only (empty for anyone else). End one with revokeSession."""
        sessions: [UserSession!]!
      }
    `,
    objects: {
      User: {
        plans: {
          email: ($user) => email.execute([{ step: $user.get("id") }]),
          isAdmin: ($user) => isAdmin.execute([{ step: $user.get("id") }]),
          emailVerifiedAt: ($user) => verifiedAt.execute([{ step: $user.get("id") }]),
          sessions: ($user) => sessions.execute([{ step: $user.get("id") }]),
          disabledAt: ($user) => disabledAt.execute([{ step: $user.get("id") }]),
        },
      },
    },
  };
});
