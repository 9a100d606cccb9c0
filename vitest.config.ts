import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["tests/**/*.test.ts"],
    globalSetup: ["tests/global-setup.ts"],
    pool: "forks",
    maxWorkers: 3,
    testTimeout: 30_000,
    hookTimeout: 120_000,
    env: {
      NODE_ENV: "test",
      GRAPHILE_ENV: "development",
      LOG_LEVEL: "silent",
      JWT_SECRET: "test-secret-that-is-long-enough-for-hs256-0123456789",
    },
  },
});
