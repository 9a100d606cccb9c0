import type { Task } from "graphile-worker";
import { z } from "zod";
import { alreadyDelivered, deliverEmail, publicUrl } from "../src/email/deliver.ts";

const Payload = z.object({ id: z.uuid() });

const PAGES = { verify_email: "/verify-email", reset_password: "/reset-password", change_email: "/confirm-email-change" } as const;

interface Minted {
  token: string;
  purpose: keyof typeof PAGES;
  email: string;
  name: string;
}

/**
 * auth__send_email_token { id }: emails the link of a verification, reset or email-change token
 * (the last to the new address). The token is
 * made here, at send time (only its hash is stored), so it never sits in a job payload or a log.
 * A token that was superseded, used or already emailed is skipped.
 */
const sendEmailToken: Task = async (rawPayload, helpers) => {
  const { id } = Payload.parse(rawPayload);
  if (await alreadyDelivered(helpers)) {
    // Sent before a crash: making a new token now would break the link that went out.
    await helpers.query(`select app_private.email_token_sent($1)`, [id]);
    return;
  }
  const { rows } = await helpers.query<Minted>("select * from app_private.mint_email_token($1)", [id]);
  const minted = rows[0];
  if (!minted) {
    helpers.logger.info(`email token ${id} needs no email (superseded, used, expired or already sent)`);
    return;
  }
  const link = `${publicUrl()}${PAGES[minted.purpose]}?token=${minted.token}`;
  // A retry makes a new token (the old link is dead), so its email is a new one, not a duplicate.
  await deliverEmail(helpers, minted.email, minted.purpose, { name: minted.name, link }, { perAttempt: true });
  await helpers.query("select app_private.email_token_sent($1)", [id]);
};

export default sendEmailToken;
