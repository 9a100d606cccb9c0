// Entry point of `npm start`. Grafast reads GRAPHILE_ENV when it is first imported, so it is set
// before anything loads PostGraphile.
process.env.GRAPHILE_ENV ??= process.env.NODE_ENV === "production" ? "production" : "development";

const { main } = await import("./main.ts");
await main();
