import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import nodemailer from "nodemailer";
import type { Config } from "../config.ts";
import type { RenderedEmail } from "./templates.ts";

export interface Mailer {
  /** Sends one message; returns where it went (the SMTP message id, or the .eml file in development). */
  send(to: string, email: RenderedEmail): Promise<{ delivered: string; file?: string }>;
}

/**
 * SMTP when SMTP_URL is set; otherwise each message becomes an .eml file in DATA_DIR/mail, so
 * development needs no mail server.
 */
export function createMailer(settings: Config["email"]): Mailer {
  if (settings.smtpUrl) {
    const transport = nodemailer.createTransport(settings.smtpUrl);
    return {
      async send(to, email) {
        const info = await transport.sendMail({ from: settings.from, to, ...email });
        return { delivered: info.messageId };
      },
    };
  }
  const transport = nodemailer.createTransport({ streamTransport: true, buffer: true, newline: "unix" });
  return {
    async send(to, email) {
      const info = await transport.sendMail({ from: settings.from, to, ...email });
      await mkdir(settings.mailDir, { recursive: true });
      const safeTo = to.replace(/[^A-Za-z0-9@._-]/g, "_");
      const file = path.join(settings.mailDir, `${new Date().toISOString().replace(/[:.]/g, "-")}-${safeTo}.eml`);
      await writeFile(file, info.message as Buffer);
      return { delivered: file, file };
    },
  };
}
