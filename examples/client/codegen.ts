import type { CodegenConfig } from "@graphql-codegen/cli";

// Typed document nodes for every operation written with graphql(`…`) in src/, from the API's
// committed schema.
const config: CodegenConfig = {
  schema: "../../schema.graphql",
  documents: ["src/**/*.ts", "!src/generated/**"],
  ignoreNoDocuments: false,
  generates: {
    "src/generated/graphql/": {
      preset: "client",
      config: { useTypeImports: true, enumsAsTypes: true, scalars: { UUID: "string", Datetime: "string", BigInt: "string", BigFloat: "string", Cursor: "string" } },
    },
  },
};

export default config;
