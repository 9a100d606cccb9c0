import { z } from "zod";
import { createDocument, type ZodOpenApiOperationObject, type ZodOpenApiPathsObject } from "zod-openapi";
import { Bodies } from "../auth/bodies.ts";

// The OpenAPI 3.1 document of every REST route, built from the same zod schemas that validate
// the request bodies (src/auth/bodies.ts). Served at GET /openapi.json and committed as
// openapi.json (npm run openapi:export); a test fails when the two drift or the routes change
// without it. GraphQL has its own contract: schema.graphql.

const ErrorBody = z
  .object({
    error: z.object({
      code: z.string().meta({ description: "Stable, snake_case; see docs/error-codes.md.", examples: ["validation_failed"] }),
      message: z.string().meta({ description: "For people; may change." }),
      details: z.array(z.object({ field: z.string(), message: z.string() })).optional().meta({ description: "On validation_failed: one entry per problem." }),
    }),
  })
  .meta({ id: "Error", description: "Every error outside GraphQL has this shape." });

const User = z
  .object({
    id: z.uuid(),
    email: z.email(),
    name: z.string(),
    avatarUrl: z.string().nullable(),
    isAdmin: z.boolean(),
    emailVerifiedAt: z.iso.datetime({ offset: true }).nullable(),
    createdAt: z.iso.datetime({ offset: true }),
    updatedAt: z.iso.datetime({ offset: true }),
  })
  .meta({ id: "User", description: "The signed-in user." });

const Session = z
  .object({
    user: User,
    accessToken: z.string().meta({ description: "A JWT (HS256) for Authorization: Bearer; short-lived (expiresIn seconds)." }),
    refreshToken: z.string().meta({ description: "Opaque; rotates on every use of /auth/refresh." }),
    expiresIn: z.int().meta({ description: "Seconds until the access token expires." }),
    deviceToken: z.string().optional().meta({ description: "Send it with the next sign-in from this device: strangers' failures on the address then do not hold it back." }),
  })
  .meta({ id: "Session" });

const Message = z.object({ message: z.string() }).meta({ id: "Message" });

const json = (schema: z.ZodType, description: string) => ({ description, content: { "application/json": { schema } } });
const errors = (codes: Record<number, string>) =>
  Object.fromEntries(Object.entries(codes).map(([status, description]) => [status, json(ErrorBody, description)]));
const body = (schema: z.ZodType) => ({ required: true, content: { "application/json": { schema } } });
const bearer = [{ bearer: [] }];
/** What a Bearer route answers 401 with. */
const UNAUTHENTICATED = "unauthenticated (no token), invalid_token, token_expired or session_ended";
const RATE_LIMITED = { 429: "rate_limited: too many attempts; Retry-After says when to try again." };

/** Every REST route: method and path (as Express mounts them) to its operation. */
export const REST_OPERATIONS: Record<string, { method: "get" | "post"; path: string; operation: ZodOpenApiOperationObject }> = {
  register: {
    method: "post",
    path: "/auth/register",
    operation: {
      summary: "Create an account and sign in",
      requestBody: body(Bodies.register),
      responses: { 201: json(Session, "Signed in; a verification email is queued."), ...errors({ 400: "validation_failed", 409: "email_taken", ...RATE_LIMITED }) },
    },
  },
  login: {
    method: "post",
    path: "/auth/login",
    operation: {
      summary: "Sign in",
      requestBody: body(Bodies.login),
      responses: { 200: json(Session, "Signed in."), ...errors({ 400: "validation_failed", 401: "invalid_credentials (the same answer for an unknown address and a wrong password)", ...RATE_LIMITED }) },
    },
  },
  refresh: {
    method: "post",
    path: "/auth/refresh",
    operation: {
      summary: "Trade a refresh token for a new pair",
      requestBody: body(Bodies.refresh),
      responses: { 200: json(Session, "A new access token and the next refresh token."), ...errors({ 400: "validation_failed", 401: "invalid_refresh_token, refresh_token_reused or session_ended", ...RATE_LIMITED }) },
    },
  },
  logout: {
    method: "post",
    path: "/auth/logout",
    operation: {
      summary: "End this session (by refresh token or Bearer)",
      security: [{}, { bearer: [] }],
      requestBody: { content: { "application/json": { schema: Bodies.logout } } },
      responses: { 204: { description: "Signed out." }, ...errors({ 400: "validation_failed", 401: "unauthenticated or invalid_token" }) },
    },
  },
  logoutAll: {
    method: "post",
    path: "/auth/logout-all",
    operation: { summary: "End every session of the user", security: bearer, responses: { 204: { description: "Signed out everywhere." }, ...errors({ 401: UNAUTHENTICATED }) } },
  },
  forgotPassword: {
    method: "post",
    path: "/auth/forgot-password",
    operation: {
      summary: "Email a password reset link",
      requestBody: body(Bodies.forgotPassword),
      responses: { 202: json(Message, "Always the same answer; a link is queued if the address has an account."), ...errors({ 400: "validation_failed", ...RATE_LIMITED }) },
    },
  },
  resetPassword: {
    method: "post",
    path: "/auth/reset-password",
    operation: {
      summary: "Set a new password with an emailed token",
      requestBody: body(Bodies.resetPassword),
      responses: {
        200: json(z.object({ message: z.string(), deviceToken: z.string() }).meta({ id: "PasswordReset" }), "Changed; every session ended."),
        ...errors({ 400: "validation_failed or invalid_token" }),
      },
    },
  },
  resendVerification: {
    method: "post",
    path: "/auth/resend-verification",
    operation: {
      summary: "Email a fresh verification link",
      security: bearer,
      requestBody: body(Bodies.resendVerification),
      responses: { 202: json(Message, "Queued; older links stop working."), ...errors({ 401: UNAUTHENTICATED, 409: "already_verified", ...RATE_LIMITED }) },
    },
  },
  verifyEmail: {
    method: "post",
    path: "/auth/verify-email",
    operation: {
      summary: "Confirm the address with an emailed token",
      requestBody: body(Bodies.verifyEmail),
      responses: { 200: json(z.object({ user: User }), "Confirmed."), ...errors({ 400: "validation_failed or invalid_token" }) },
    },
  },
  changeEmail: {
    method: "post",
    path: "/auth/change-email",
    operation: {
      summary: "Ask to change the email address (confirmed by a link sent to the new one)",
      security: bearer,
      requestBody: body(Bodies.changeEmail),
      responses: {
        202: json(Message, "Always the same answer, whether or not another account uses the address."),
        ...errors({ 400: "validation_failed", 401: UNAUTHENTICATED, 403: "invalid_credentials (the current password)", ...RATE_LIMITED }),
      },
    },
  },
  confirmEmailChange: {
    method: "post",
    path: "/auth/confirm-email-change",
    operation: {
      summary: "Confirm the new address with the emailed token",
      requestBody: body(Bodies.confirmEmailChange),
      responses: { 200: json(z.object({ user: User }), "The new address is the account's."), ...errors({ 400: "validation_failed or invalid_token", 409: "email_taken" }) },
    },
  },
  dataExport: {
    method: "post",
    path: "/auth/data-export",
    operation: {
      summary: "Download a data export with the emailed token (24 hours)",
      requestBody: body(Bodies.dataExport),
      responses: {
        200: json(z.record(z.string(), z.unknown()).meta({ id: "DataExport", description: "Everything the user owns or wrote (format oddscenes-user-export/1)." }), "The document, as an attachment."),
        ...errors({ 400: "validation_failed or invalid_token" }),
      },
    },
  },
  deleteAccount: {
    method: "post",
    path: "/auth/delete-account",
    operation: {
      summary: "Close and delete the account",
      security: bearer,
      requestBody: body(Bodies.deleteAccount),
      responses: {
        202: json(Message, "Closed at once; a job deletes it and a confirmation is emailed."),
        ...errors({ 400: "validation_failed", 401: UNAUTHENTICATED, 403: "invalid_credentials", 409: "last_owner or subscription_active", ...RATE_LIMITED }),
      },
    },
  },
  changePassword: {
    method: "post",
    path: "/auth/change-password",
    operation: {
      summary: "Change the password (other sessions end)",
      security: bearer,
      requestBody: body(Bodies.changePassword),
      responses: { 200: json(Message, "Changed."), ...errors({ 400: "validation_failed", 401: UNAUTHENTICATED, 403: "invalid_credentials", ...RATE_LIMITED }) },
    },
  },
  me: {
    method: "get",
    path: "/auth/me",
    operation: { summary: "The signed-in user", security: bearer, responses: { 200: json(z.object({ user: User }), "The user."), ...errors({ 401: UNAUTHENTICATED }) } },
  },
  healthz: {
    method: "get",
    path: "/healthz",
    operation: { summary: "Liveness", responses: { 200: json(z.object({ status: z.literal("ok") }), "The process runs.") } },
  },
  readyz: {
    method: "get",
    path: "/readyz",
    operation: {
      summary: "Readiness",
      responses: {
        200: json(z.object({ status: z.literal("ready"), migration: z.string().optional() }), "The database answers and holds this build's migrations."),
        ...errors({ 503: "shutting_down, worker_stopped, migrations_pending or database_unavailable" }),
      },
    },
  },
  stripeWebhook: {
    method: "post",
    path: "/webhooks/stripe",
    operation: {
      summary: "Stripe's events (signed with STRIPE_WEBHOOK_SECRET)",
      requestParams: { header: z.object({ "stripe-signature": z.string() }) },
      requestBody: { required: true, content: { "application/json": { schema: z.record(z.string(), z.unknown()).meta({ description: "A Stripe event, verified on its raw bytes." }) } } },
      responses: { 200: json(z.object({ received: z.literal(true), duplicate: z.boolean() }), "Recorded (duplicate: already known)."), ...errors({ 400: "invalid_signature or invalid_payload", 503: "billing_unavailable" }) },
    },
  },
  openapi: {
    method: "get",
    path: "/openapi.json",
    operation: { summary: "This document", responses: { 200: { description: "OpenAPI 3.1", content: { "application/json": { schema: z.record(z.string(), z.unknown()) } } } } },
  },
};

/** The OpenAPI 3.1 document of the REST routes. */
export function openApiDocument() {
  const paths: ZodOpenApiPathsObject = {};
  for (const [operationId, { method, path, operation }] of Object.entries(REST_OPERATIONS)) {
    paths[path] = { ...paths[path], [method]: { operationId, ...operation } };
  }
  return createDocument({
    openapi: "3.1.0",
    info: {
      title: "Oddscenes REST API",
      version: "1.0.0",
      description: "Accounts and sessions (/auth), health, and Stripe's webhook. Everything else is GraphQL at /graphql (schema.graphql).",
    },
    components: { securitySchemes: { bearer: { type: "http", scheme: "bearer", bearerFormat: "JWT" } } },
    paths,
  });
}
