import type { Task } from "graphile-worker";
import { z } from "zod";
import { alreadyDelivered, deliverEmail, publicUrl } from "../src/email/deliver.ts";

const Payload = z.object({ id: z.uuid() });

interface Minted {
  token: string;
  email: string;
  role: string;
  organization_name: string;
  inviter_name: string | null;
}

/**
 * organizations__send_invitation { id }: emails an invitation's link. The token is made here, at
 * send time (only its hash is stored), so it never sits in a job payload or a log. An invitation
 * that was replaced, accepted, expired or already emailed is skipped.
 */
const sendInvitation: Task = async (rawPayload, helpers) => {
  const { id } = Payload.parse(rawPayload);
  if (await alreadyDelivered(helpers)) {
    // Sent before a crash: making a new token now would break the link that went out.
    await helpers.query(`select app_private.invitation_sent($1)`, [id]);
    return;
  }
  const { rows } = await helpers.query<Minted>("select * from app_private.mint_invitation_token($1)", [id]);
  const minted = rows[0];
  if (!minted) {
    helpers.logger.info(`invitation ${id} needs no email (replaced, accepted, expired or already sent)`);
    return;
  }
  await deliverEmail(helpers, minted.email, "organization_invitation", {
    inviterName: minted.inviter_name ?? "A member",
    organizationName: minted.organization_name,
    role: minted.role,
    link: `${publicUrl()}/accept-invitation?token=${minted.token}`,
  }, { perAttempt: true });
  await helpers.query("select app_private.invitation_sent($1)", [id]);
};

export default sendInvitation;
