import type { Task } from "graphile-worker";
import { z } from "zod";
import { alreadyDelivered, deliverEmail, publicUrl } from "../src/email/deliver.ts";

const Payload = z.object({ id: z.uuid() });

/**
 * accounts__export_data { id }: builds a data export asked for with requestDataExport (in SQL,
 * app_private.user_data) and emails its link, valid 24 hours. The link's token is made here, at
 * send time, and only its hash is stored; a retry after the email went out sends nothing.
 */
const exportData: Task = async (rawPayload, helpers) => {
  const { id } = Payload.parse(rawPayload);
  if (await alreadyDelivered(helpers)) return;
  await helpers.query("select app_private.build_data_export($1)", [id]);
  const { rows } = await helpers.query<{ token: string; email: string; name: string }>("select * from app_private.mint_data_export_token($1)", [id]);
  const minted = rows[0];
  if (!minted) {
    helpers.logger.info(`data export ${id} needs no email (its account is gone or disabled, or was secured since it was asked for)`);
    return;
  }
  await deliverEmail(helpers, minted.email, "data_export", { name: minted.name, link: `${publicUrl()}/data-export?token=${minted.token}` }, { perAttempt: true });
};

export default exportData;
