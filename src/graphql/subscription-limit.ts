import { getOperationAST, GraphQLError, OperationTypeNode } from "postgraphile/graphql";

const overWebSocket = (args: { requestContext?: unknown }) => Boolean((args.requestContext as { ws?: unknown } | undefined)?.ws);
const websocketRequired = () =>
  new GraphQLError("Subscriptions need a WebSocket: connect to /graphql with the graphql-transport-ws protocol.", {
    extensions: { code: "websocket_required" },
  });

const isStream = <T>(value: object): value is AsyncGenerator<T, void, void> => Symbol.asyncIterator in value;

/**
 * Every live subscription costs a database check per event it receives, so one user may hold at
 * most `max` of them at a time (per API instance); the next one is refused with
 * `too_many_subscriptions` until another ends. Subscriptions sent over plain HTTP are refused
 * (`websocket_required`).
 */
export function makeSubscriptionLimitPlugin(max: number): GraphileConfig.Plugin {
  const live = new Map<string, number>();
  const release = (userId: string) => {
    const count = (live.get(userId) ?? 1) - 1;
    if (count > 0) live.set(userId, count);
    else live.delete(userId);
  };

  /** Counts the subscription until it ends, however it ends (completed, unsubscribed, failed). */
  const counted = <T>(userId: string, stream: AsyncGenerator<T, void, void>): AsyncGenerator<T, void, void> => {
    let ended = false;
    const end = () => {
      if (!ended) {
        ended = true;
        release(userId);
      }
    };
    const iterator: AsyncGenerator<T, void, void> = {
      [Symbol.asyncIterator]: () => iterator,
      async next() {
        try {
          const result = await stream.next();
          if (result.done) end();
          return result;
        } catch (error) {
          end();
          throw error;
        }
      },
      async return() {
        end();
        return stream.return();
      },
      async throw(error) {
        end();
        return stream.throw(error);
      },
      async [Symbol.asyncDispose]() {
        end();
        await stream.return();
      },
    };
    return iterator;
  };

  return {
    name: "SubscriptionLimitPlugin",
    version: "1.0.0",
    grafast: {
      middleware: {
        execute(next, event) {
          // Over plain HTTP a subscription would hold the request open until its first event.
          const operation = getOperationAST(event.args.document, event.args.operationName);
          if (operation?.operation === OperationTypeNode.SUBSCRIPTION && !overWebSocket(event.args)) return { errors: [websocketRequired()] };
          return next();
        },
        async subscribe(next, event) {
          if (!overWebSocket(event.args)) return { errors: [websocketRequired()] };
          const pgSettings = (event.args.contextValue as { pgSettings?: Record<string, string> } | undefined)?.pgSettings;
          const userId = pgSettings?.["jwt.claims.user_id"];
          if (!userId) return next();
          if ((live.get(userId) ?? 0) >= max) {
            return {
              errors: [
                new GraphQLError(`You already have ${max} live subscriptions; end one before starting another.`, {
                  extensions: { code: "too_many_subscriptions" },
                }),
              ],
            };
          }
          live.set(userId, (live.get(userId) ?? 0) + 1);
          try {
            const result = await next();
            if (result && typeof result === "object" && isStream(result)) return counted(userId, result);
            release(userId);
            return result;
          } catch (error) {
            release(userId);
            throw error;
          }
        },
      },
    },
  };
}
