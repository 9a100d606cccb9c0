import { randomBytes } from "node:crypto";
import type { ParsedMail } from "mailparser";
import request from "supertest";
import { expect } from "vitest";
import type { TestApp } from "./app.ts";

/** Settings that keep the auth rate limits out of the way of tests that are not about them. */
export const RELAXED_LIMITS = {
  RATE_LIMIT_LOGIN_EMAIL: "1000/1m",
  RATE_LIMIT_LOGIN_IP: "1000/1m",
  RATE_LIMIT_REGISTER_IP: "1000/1m",
  RATE_LIMIT_FORGOT_PASSWORD_EMAIL: "1000/1m",
  RATE_LIMIT_REFRESH_SESSION: "1000/1m",
};

export interface SignedUp {
  id: string;
  email: string;
  password: string;
  name: string;
  accessToken: string;
  refreshToken: string;
}

/** A unique address per call, so tests never collide. */
export function uniqueEmail(label = "user"): string {
  return `${label}-${randomBytes(5).toString("hex")}@example.com`;
}

/** Registers through the public API and returns the account with its first token pair. */
export async function signUp(api: TestApp, overrides: Partial<{ email: string; password: string; name: string }> = {}): Promise<SignedUp> {
  const account = { email: uniqueEmail(), password: "correct horse battery staple", name: "Test User", ...overrides };
  const res = await request(api.app).post("/auth/register").send(account);
  expect(res.status, JSON.stringify(res.body)).toBe(201);
  return { ...account, id: res.body.user.id, accessToken: res.body.accessToken, refreshToken: res.body.refreshToken };
}

/** The token in an emailed link (`…?token=…`). */
export function tokenFrom(message: ParsedMail): string {
  const match = /[?&]token=([A-Za-z0-9_-]+)/.exec(message.text ?? "");
  if (!match) throw new Error(`no token link in email "${message.subject}"`);
  return match[1]!;
}

export function recipient(message: ParsedMail): string {
  return message.to && !Array.isArray(message.to) ? message.to.text : "";
}

export async function graphql(api: TestApp, query: string, options: { token?: string; variables?: Record<string, unknown> } = {}) {
  const req = request(api.app).post("/graphql").send({ query, variables: options.variables });
  if (options.token) req.set("Authorization", `Bearer ${options.token}`);
  return req;
}
