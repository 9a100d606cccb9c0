import { z } from "zod";
import { AppError } from "../http/errors.ts";

const email = z.preprocess(
  (value) => (typeof value === "string" ? value.trim() : value),
  z.email({ message: "must be an email address" }).max(254, "must be at most 254 characters"),
);
const password = z
  .string({ message: "is required" })
  .min(10, "must be at least 10 characters")
  .max(256, "must be at most 256 characters");
const name = z.string({ message: "is required" }).trim().min(1, "must not be empty").max(100, "must be at most 100 characters");
const token = z.string({ message: "is required" }).min(10, "is not a valid token").max(200, "is not a valid token");

/** Request bodies of the auth routes; unknown fields are rejected. */
export const Bodies = {
  register: z.strictObject({ email, password, name }),
  login: z.strictObject({
    email,
    password: z.string({ message: "is required" }).min(1, "is required").max(256),
    deviceToken: token.optional(),
  }),
  refresh: z.strictObject({ refreshToken: token }),
  logout: z.strictObject({ refreshToken: token.optional() }),
  forgotPassword: z.strictObject({ email }),
  resetPassword: z.strictObject({ token, password }),
  verifyEmail: z.strictObject({ token }),
  resendVerification: z.strictObject({}),
  changePassword: z.strictObject({ currentPassword: z.string({ message: "is required" }).min(1).max(256), newPassword: password }),
  changeEmail: z.strictObject({ currentPassword: z.string({ message: "is required" }).min(1).max(256), newEmail: email }),
  confirmEmailChange: z.strictObject({ token }),
  dataExport: z.strictObject({ token }),
  deleteAccount: z.strictObject({ password: z.string({ message: "is required" }).min(1, "is required").max(256) }),
};

/** Validates a JSON body; 400 validation_failed with one entry per field otherwise. */
export function parseBody<T extends z.ZodType>(schema: T, body: unknown): z.infer<T> {
  const result = schema.safeParse(body ?? {});
  if (result.success) return result.data;
  const details = result.error.issues.map((issue) => {
    if (issue.code === "unrecognized_keys") {
      return { field: issue.keys.join(", "), message: "is not a known field" };
    }
    return { field: issue.path.join(".") || "body", message: issue.message };
  });
  throw new AppError(
    400,
    "validation_failed",
    `The request is not valid: ${details.map((d) => `${d.field} ${d.message}`).join("; ")}.`,
    { details },
  );
}
