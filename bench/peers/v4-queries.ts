// The benchmark's GraphQL workloads as PostGraphile V4 (bench/peers/v4.ts) spells them: the same
// data as our V5 queries in bench/run.ts, under V4's names (simplify inflector, connection filter).
//
// Shape: V4_QUERIES[name](ids) returns the request body, { query, variables }, for one request;
// `ids` carries the fixture ids (bench/data.ts FIXTURE) and, for the mutation, the new task's title.
//
// Differences from V5, all naming: `id` instead of `rowId` (lookup argument and field), enum
// values in upper case (TODO, IN_PROGRESS). Everything else (Query.tasks, Project.tasks,
// Task.comments, Organization.organizationMemberships, searchTasks, createTask) is named the
// same. Default orders are the same as V5's: primary key order for Query.tasks, Task.comments and
// Organization.organizationMemberships, the function's own order for searchTasks.

export interface V4QueryIds {
  /** A project the signed-in member can see (FIXTURE.project). */
  project: string;
  /** A task of that project (FIXTURE.task). */
  task: string;
  /** Title of the task M1 creates (make it unique per request). */
  title: string;
}

export type V4QueryName = "q1" | "q2" | "q3" | "q4a" | "q4b" | "m1";

export const V4_QUERIES: Record<V4QueryName, (ids: V4QueryIds) => { query: string; variables: Record<string, unknown> }> = {
  q1: ({ project }) => ({
    query: `query ($p: UUID!) { project(id: $p) { tasks(first: 20, orderBy: POSITION_ASC) { totalCount nodes { id title status position } } } }`,
    variables: { p: project },
  }),
  q2: () => ({
    query: `{ organizations { nodes { name projects { nodes { name tasks(first: 10, orderBy: POSITION_ASC) { nodes { title assignee { name } } } } } } } }`,
    variables: {},
  }),
  q3: ({ task }) => ({
    query: `query ($t: UUID!) { task(id: $t) { title comments(first: 50) { nodes { body author { name } } } project { name organization { organizationMemberships { nodes { role user { name } } } } } } }`,
    variables: { t: task },
  }),
  q4a: () => ({
    query: `{ tasks(first: 20, filter: { status: { in: [TODO, IN_PROGRESS] }, title: { includesInsensitive: "landing" } }) { totalCount nodes { title } } }`,
    variables: {},
  }),
  q4b: () => ({
    query: `{ searchTasks(query: "landing page", first: 20) { totalCount nodes { title } } }`,
    variables: {},
  }),
  m1: ({ project, title }) => ({
    query: `mutation ($p: UUID!, $t: String!) { createTask(input: { task: { projectId: $p, title: $t } }) { task { id } } }`,
    variables: { p: project, t: title },
  }),
};
