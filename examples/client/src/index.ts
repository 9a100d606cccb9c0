// What a frontend writes: REST for accounts (typed from openapi.json), GraphQL for everything
// else (typed from schema.graphql). `npm run check` generates the types and type-checks this file:
// a field renamed in the API breaks this build, not a user's screen.
import type { TypedDocumentNode } from "@graphql-typed-document-node/core";
import { print } from "graphql";
import createClient from "openapi-fetch";
import { graphql } from "./generated/graphql";
import type { paths } from "./generated/rest";

const API = "http://localhost:3000";

/** REST: every path, body and response typed from openapi.json. */
export const rest = createClient<paths>({ baseUrl: API });

export async function signIn(email: string, password: string): Promise<string> {
  const { data, error } = await rest.POST("/auth/login", { body: { email, password } });
  if (error) throw new Error(`${error.error.code}: ${error.error.message}`);
  return data.accessToken;
}

/** GraphQL over HTTP with a typed document: variables in, data out, both checked. */
export async function request<Result, Variables>(token: string, document: TypedDocumentNode<Result, Variables>, variables: Variables): Promise<Result> {
  const response = await fetch(`${API}/graphql`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    body: JSON.stringify({ query: print(document), variables }),
  });
  const body = (await response.json()) as { data?: Result; errors?: Array<{ message: string; extensions?: { code?: string } }> };
  if (body.errors?.length) throw new Error(body.errors.map((e) => `${e.extensions?.code}: ${e.message}`).join("; "));
  return body.data!;
}

const ProjectTasks = graphql(`
  query ProjectTasks($project: UUID!, $first: Int!) {
    project(rowId: $project) {
      name
      tasks(first: $first, orderBy: POSITION_ASC) {
        totalCount
        nodes { rowId title status dueAt assignee { name } attachments { nodes { filename downloadUrl } } }
      }
    }
  }
`);

const StartUpload = graphql(`
  mutation StartUpload($task: UUID!, $filename: String!, $contentType: String!, $size: BigInt!) {
    createUpload(input: { purpose: task_attachment, targetId: $task, filename: $filename, contentType: $contentType, size: $size }) {
      file { rowId }
      uploadUrl
      uploadMethod
      uploadHeaders { name value }
    }
  }
`);

const CompleteUpload = graphql(`
  mutation CompleteUpload($file: UUID!) {
    completeUpload(input: { fileId: $file }) { file { status downloadUrl } }
  }
`);

/** Titles of a project's first tasks, with who they are assigned to. */
export async function taskTitles(token: string, projectId: string): Promise<string[]> {
  const data = await request(token, ProjectTasks, { project: projectId, first: 20 });
  return (data.project?.tasks.nodes ?? []).flatMap((task) => (task ? [`${task.title} (${task.status}) ${task.assignee?.name ?? "unassigned"}`] : []));
}

/** The two-step upload: the bytes go straight to storage, never through the API. */
export async function attach(token: string, taskId: string, file: Blob & { name: string }): Promise<string | null | undefined> {
  const started = await request(token, StartUpload, { task: taskId, filename: file.name, contentType: file.type, size: String(file.size) });
  const upload = started.createUpload;
  if (!upload?.file) throw new Error("createUpload answered nothing");
  const headers = Object.fromEntries(upload.uploadHeaders.map((h) => [h.name, h.value]));
  const put = await fetch(upload.uploadUrl, { method: upload.uploadMethod, headers, body: file });
  if (!put.ok) throw new Error(`storage refused the upload (${put.status})`);
  const done = await request(token, CompleteUpload, { file: upload.file.rowId });
  return done.completeUpload?.file?.downloadUrl;
}
