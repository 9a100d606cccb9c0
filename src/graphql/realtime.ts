import { jsonParse } from "postgraphile/@dataplan/json";
import { context, lambda, listen, SafeError } from "postgraphile/grafast";
import { extendSchema } from "postgraphile/utils";

/**
 * Realtime over WebSocket: triggers NOTIFY `project:<id>:tasks` and `task:<id>:comments` with
 * only an event and an id. Subscribing first reads the project or task as the subscriber (so a
 * non-member is refused), and each event re-reads its row under the subscriber's own role, so
 * row-level security guards realtime exactly as it guards queries.
 */
export const RealtimePlugin = extendSchema((build) => {
  const { tasks, task_comments: taskComments, projects } = build.pgResources;
  if (!tasks || !taskComments || !projects) throw new Error("RealtimePlugin needs the tasks, task_comments and projects tables");
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
              return listen(context().get("pgSubscriber"), $topic, jsonParse);
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
              return listen(context().get("pgSubscriber"), $topic, jsonParse);
            },
            plan($event) {
              return $event;
            },
          },
        },
      },
      TaskChange: {
        plans: {
          event: ($event) => lambda($event.get("event"), (event) => String(event).toUpperCase()),
          taskRowId: ($event) => $event.get("id"),
          task: ($event) => tasks.get({ id: $event.get("id") }),
        },
      },
      TaskCommentAdded: {
        plans: {
          commentRowId: ($event) => $event.get("id"),
          comment: ($event) => taskComments.get({ id: $event.get("id") }),
        },
      },
    },
  };
});
