# One image for the API, the worker and the one-shot setup; docker-compose.yml picks the command.
# Node runs the TypeScript sources directly (type stripping): there is no build step.
ARG NODE_IMAGE=node:24-slim

# Production dependencies only. --omit=optional also drops what no production process loads:
# embedded-postgres's PostgreSQL binaries (development without DATABASE_URL), TypeScript (kept by
# --omit=dev alone, as an optional peer of cosmiconfig) and pg-cloudflare. Revisit it if a runtime
# dependency ever ships its native code as optional packages (sharp, @node-rs/*, esbuild…).
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --omit=optional --no-audit --no-fund

# Exactly the files production reads, made readable by everyone: graphile-migrate commits
# migrations as 0440, and root (not the app's user) owns them in the image.
FROM ${NODE_IMAGE} AS files
WORKDIR /app
COPY package.json package-lock.json .gmrc crontab graphile.config.ts ./
COPY src ./src
COPY tasks ./tasks
COPY migrations ./migrations
COPY db ./db
RUN chmod -R u=rwX,go=rX /app

FROM ${NODE_IMAGE}
ENV NODE_ENV=production \
    NPM_CONFIG_UPDATE_NOTIFIER=false
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=files /app ./
# Code stays root-owned, so the app cannot rewrite itself. It writes only to DATA_DIR (.data, e.g.
# .eml files when SMTP_URL is unset outside production) and /tmp (the worker's health file).
RUN install -d -o node -g node /app/.data
USER node
# Fails the build, as the app's user, if a module the app or a task imports is missing or unreadable.
RUN GRAPHILE_ENV=production node --input-type=module -e 'import { readdirSync } from "node:fs"; await import("./src/main.ts"); for (const f of readdirSync("tasks").filter((f) => f.endsWith(".ts"))) await import("./tasks/" + f);'
EXPOSE 3000
# No HEALTHCHECK here: the same image runs the worker and setup. docker-compose.yml defines one per service.
CMD ["node", "src/index.ts"]
