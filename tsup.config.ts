import { defineConfig } from 'tsup';

// No ESM-only dependency is imported statically: one would have to be bundled into the CommonJS build (`noExternal`)
// so `require('weir')` needs no require(esm). superjson is loaded on first use with `createRequire` (require(esm),
// Node 20.19+), so it stays out.

// The worker entries are built next to index, in the same format, so each build finds its own;
// `testing`, `http`, `mcp` and `otel` are the `weir/...` subpaths.
const entry = {
  index: 'src/index.ts',
  testing: 'src/testing/index.ts',
  http: 'src/http/index.ts',
  mcp: 'src/mcp/index.ts',
  otel: 'src/otel/index.ts',
  'thread-worker': 'src/executors/worker/thread-worker.ts',
  'process-worker': 'src/executors/worker/process-worker.ts',
  'checkpointer-thread': 'src/storage/journal/sqlite/checkpointer-thread.mjs',
};

export default defineConfig([
  {
    // The `weir` command is ESM only (its entry awaits at its top level), sharing the package's chunks.
    entry: { ...entry, cli: 'src/cli/bin.ts' },
    format: ['esm'],
    dts: { entry: { index: 'src/index.ts', testing: 'src/testing/index.ts', http: 'src/http/index.ts', mcp: 'src/mcp/index.ts', otel: 'src/otel/index.ts' } },
    sourcemap: true,
    clean: true,
    target: 'node20',
    platform: 'node',
  },
  {
    entry,
    format: ['cjs'],
    dts: { entry: { index: 'src/index.ts', testing: 'src/testing/index.ts', http: 'src/http/index.ts', mcp: 'src/mcp/index.ts', otel: 'src/otel/index.ts' } },
    sourcemap: true,
    target: 'node20',
    platform: 'node',
    // `weir/testing` and the entries share chunks, so there is one copy of each class (FlowContext, FlowError).
    splitting: true,
    // Rollup splits the CommonJS chunks (tsup's own CommonJS splitting would turn `import()` of a processor module into `require`).
    treeshake: true,
    // `import.meta.url` locates the worker entries; in CommonJS it comes from `__filename`.
    shims: true,
  },
]);
