import type { Task } from "graphile-worker";
import { z } from "zod";

const Payload = z.object({ userId: z.uuid() });

/**
 * accounts__delete_user { userId }: deletes an account whose deletion was asked for (queued by
 * app_private.request_account_deletion, which already closed it): the organizations where the
 * user is the only member go with it; their content elsewhere stays, its author unset. If someone
 * joined one of their organizations meanwhile, the check fails and the job is retried (the
 * account stays closed), so no organization is left with members but no owner.
 */
const deleteUser: Task = async (rawPayload, helpers) => {
  const { userId } = Payload.parse(rawPayload);
  const { rows } = await helpers.query<{ organizations: number }>("select app_private.delete_user($1) as organizations", [userId]);
  helpers.logger.info(`deleted user ${userId} and ${rows[0]!.organizations} organization(s) they were alone in`);
};

export default deleteUser;
