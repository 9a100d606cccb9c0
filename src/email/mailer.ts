import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import nodemailer from "nodemailer";
import type { Config } from "../config.ts";
import type { RenderedEmail } from "./templates.ts";

export interface Mailer {
  /** Sends one message with its Message-ID; returns where it went (the SMTP message id, or the .eml file in development). */
  send(to: string, email: RenderedEmail, messageId: string): Promise<{ delivered: string; file?: string }>;
}

/**
 * SMTP when SMTP_URL is set; nothing with SMTP_URL=disabled; otherwise (development only) each
 * message becomes an .eml file in DATA_DIR/mail, so development needs no mail server.
 */
export function createMailer(settings: Config["email"]): Mailer {
  if (settings.smtpUrl === "disabled") {
    // Explicitly off (SMTP_URL=disabled): nothing is sent, and the log says so for every message.
    return { send: async () => ({ delivered: "not sent: SMTP_URL=disabled" }) };
  }
  if (settings.smtpUrl) {
    const transport = nodemailer.createTransport(settings.smtpUrl);
    return {
      async send(to, email, messageId) {
        const info = await transport.sendMail({ from: settings.from, to, messageId, ...email });
        return { delivered: info.messageId };
      },
    };
  }
  const transport = nodemailer.createTransport({ streamTransport: true, buffer: true, newline: "unix" });
  return {
    async send(to, email, messageId) {
      const info = await transport.sendMail({ from: settings.from, to, messageId, ...email });
      await mkdir(settings.mailDir, { recursive: true });
      const safeTo = to.replace(/[^A-Za-z0-9@._-]/g, "_");
      const file = path.join(settings.mailDir, `${new Date().toISOString().replace(/[:.]/g, "-")}-${safeTo}.eml`);
      await writeFile(file, info.message as Buffer);
      return { delivered: file, file };
    },
  };
}
