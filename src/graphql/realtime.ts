import type { PgClient, PgCodec, WithPgClient } from "postgraphile/@dataplan/pg";
import { pgSelectSingleFromRecord } from "postgraphile/@dataplan/pg";
import { access, context, inhibitOnNull, lambda, listen, SafeError, type GrafastSubscriber, type Step } from "postgraphile/grafast";
import { sql } from "postgraphile/pg-sql2";
import { extendSchema } from "postgraphile/utils";

/** What a trigger announces: `{ event, id }` (see the _900_notify triggers). */
interface RealtimeEvent {
  event: string;
  id: string;
}

/** An event the subscriber may see, with its row as they see it now (null once deleted). */
interface AuthorizedEvent extends RealtimeEvent {
  record: unknown;
}

/** Reads an event's row under the subscriber's role; undefined when they may not see the event. */
type Authorize = (client: PgClient, event: RealtimeEvent) => Promise<AuthorizedEvent | undefined>;

/** Maps a stream, dropping what `fn` drops; ending it ends the source at once (unlike an async generator). */
function mapEvents<T, U>(source: AsyncIterableIterator<T>, fn: (item: T) => Promise<U | undefined>): AsyncIterableIterator<U> {
  const iterator: AsyncIterableIterator<U> = {
    [Symbol.asyncIterator]: () => iterator,
    async next() {
      for (;;) {
        const result = await source.next();
        if (result.done) return { done: true, value: undefined };
        const mapped = await fn(result.value);
        if (mapped !== undefined) return { done: false, value: mapped };
      }
    },
    return: async (value) => {
      await source.return?.();
      return { done: true, value };
    },
    throw: async (error) => {
      await source.throw?.(error);
      throw error;
    },
  };
  return iterator;
}

/**
 * The LISTEN subscriber, narrowed to what the subscriber may see *now*: when an event arrives its
 * row is read under the subscriber's role and claims, and the event goes out with that very
 * record, or not at all. A member removed from the organization, or a session that signed out,
 * receives nothing more (not even that something happened), and no event arrives without its row.
 */
function authorizedSubscriber(
  source: GrafastSubscriber,
  withPgClient: WithPgClient,
  pgSettings: Record<string, string | undefined> | null,
  authorize: Authorize,
): GrafastSubscriber {
  return {
    async subscribe(topic) {
      const open = async () => (await source.subscribe(topic)) as AsyncIterableIterator<string>;
      const events = reconnecting(open, await open());
      return mapEvents(events, (raw) => withPgClient(pgSettings, (client) => authorize(client, JSON.parse(raw) as RealtimeEvent)));
    },
  };
}

/** What @dataplan/pg's subscriber throws into every stream when its LISTEN connection is lost. */
const INTERRUPTED = /^Underlying pubsub channel interrupted/;

/**
 * A stream that survives the database restarting: when the LISTEN connection is lost, the stream
 * subscribes again (the subscriber reconnects, retrying with backoff until the database is back)
 * and goes on delivering. Events announced while no connection listened are not replayed.
 */
function reconnecting<T>(open: () => Promise<AsyncIterableIterator<T>>, first: AsyncIterableIterator<T>): AsyncIterableIterator<T> {
  let current = first;
  let ended = false;
  const iterator: AsyncIterableIterator<T> = {
    [Symbol.asyncIterator]: () => iterator,
    async next() {
      for (;;) {
        try {
          return await current.next();
        } catch (error) {
          if (ended || !(error instanceof Error) || !INTERRUPTED.test(error.message)) throw error;
          current = await open();
          // Ended while reopening: release the new subscription too.
          if (ended) {
            await current.return?.();
            return { done: true, value: undefined };
          }
        }
      }
    },
    return: async (value) => {
      ended = true;
      await current.return?.();
      return { done: true, value };
    },
    throw: async (error) => {
      ended = true;
      await current.throw?.(error);
      throw error;
    },
  };
  return iterator;
}

/**
 * The SQL expression turning row `alias` into the text the resource's codec reads back with
 * `fromPg` (the same form PostGraphile selects records in).
 */
function recordExpression(codec: PgCodec, alias: string): string {
  const row = sql.identifier(alias);
  return sql.compile(codec.castFromPg ? codec.castFromPg(row) : sql`${row}::text`).text;
}

function authorizedListen($topic: Step<string>, $authorize: Step<Authorize>) {
  const $subscriber = lambda(
    [context().get("pgSubscriber"), context().get("withPgClient"), context().get("pgSettings"), $authorize],
    ([subscriber, withPgClient, pgSettings, authorize]) => authorizedSubscriber(subscriber!, withPgClient, pgSettings ?? null, authorize),
  );
  return listen($subscriber, $topic);
}

/**
 * Realtime over WebSocket: triggers NOTIFY `project:<id>:tasks` and `task:<id>:comments` with
 * only an event and an id. Subscribing first reads the project or task as the subscriber (so a
 * non-member is refused), and every event is delivered only with its row as read under the
 * subscriber's own role at that moment, so row-level security guards realtime exactly as it
 * guards queries. Sessions that end are closed by
 * src/auth/socket-sessions.ts.
 */
export const RealtimePlugin = extendSchema((build) => {
  const { tasks, task_comments: taskComments, projects } = build.pgResources;
  if (!tasks || !taskComments || !projects) throw new Error("RealtimePlugin needs the tasks, task_comments and projects tables");
  const taskRecord = recordExpression(tasks.codec, "t");
  const commentRecord = recordExpression(taskComments.codec, "c");
  return {
    typeDefs: /* GraphQL */ `
      """What happened to a task."""
      enum TaskChangeEvent {
        CREATED
        UPDATED
        MOVED
        DELETED
      }

      """A change to a task of the project you subscribed to."""
      type TaskChange {
        event: TaskChangeEvent!
        """The task's id (still set after DELETED)."""
        taskRowId: UUID!
        """The task as you may see it now; null once it is deleted."""
        task: Task
      }

      """A new comment on the task you subscribed to."""
      type TaskCommentAdded {
        commentRowId: UUID!
        comment: TaskComment
      }

      extend type Subscription {
        """Tasks of a project being created, edited, moved or deleted. Members of the project's organization only."""
        taskChanged(projectId: UUID!): TaskChange
        """New comments on a task. Members of the task's organization only."""
        taskCommentAdded(taskId: UUID!): TaskCommentAdded
      }
    `,
    objects: {
      Subscription: {
        plans: {
          taskChanged: {
            subscribePlan(_$root, fieldArgs) {
              const $project = projects.get({ id: fieldArgs.getRaw("projectId") });
              const $topic = lambda($project.get("id"), (id) => {
                if (!id) throw new SafeError("Project not found.", { code: "not_found" });
                return `project:${id}:tasks`;
              });
              const $authorize = lambda($project.get("id"), (projectId): Authorize => async (client, event) => {
                const { rows } = await client.query<{ project_visible: boolean; record: string | null }>({
                  text: `select exists (select 1 from app_public.projects where id = $1) as project_visible,
                                (select ${taskRecord} from app_public.tasks t where t.id = $2) as record`,
                  values: [projectId, event.id],
                });
                const row = rows[0];
                if (!row?.project_visible) return undefined;
                if (event.event === "deleted") return { ...event, record: null };
                return row.record === null ? undefined : { ...event, record: tasks.codec.fromPg(row.record) };
              });
              return authorizedListen($topic, $authorize);
            },
            plan($event) {
              return $event;
            },
          },
          taskCommentAdded: {
            subscribePlan(_$root, fieldArgs) {
              const $task = tasks.get({ id: fieldArgs.getRaw("taskId") });
              const $topic = lambda($task.get("id"), (id) => {
                if (!id) throw new SafeError("Task not found.", { code: "not_found" });
                return `task:${id}:comments`;
              });
              const $authorize = lambda($task.get("id"), (): Authorize => async (client, event) => {
                const { rows } = await client.query<{ record: string | null }>({
                  text: `select (select ${commentRecord} from app_public.task_comments c where c.id = $1) as record`,
                  values: [event.id],
                });
                const record = rows[0]?.record;
                return record ? { ...event, record: taskComments.codec.fromPg(record) } : undefined;
              });
              return authorizedListen($topic, $authorize);
            },
            plan($event) {
              return $event;
            },
          },
        },
      },
      TaskChange: {
        plans: {
          event: ($event) => lambda(access($event, "event"), (event) => String(event).toUpperCase()),
          taskRowId: ($event) => access($event, "id"),
          task: ($event) => pgSelectSingleFromRecord(tasks, inhibitOnNull(access($event, "record"))),
        },
      },
      TaskCommentAdded: {
        plans: {
          commentRowId: ($event) => access($event, "id"),
          comment: ($event) => pgSelectSingleFromRecord(taskComments, access($event, "record")),
        },
      },
    },
  };
});
