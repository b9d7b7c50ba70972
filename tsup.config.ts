import { defineConfig } from 'tsup';

// ESM-only dependencies are bundled into the CommonJS build so `require('weir')` needs no require(esm).
const esmOnly = ['p-queue', 'p-timeout', 'superjson', 'copy-anything', 'is-what'];

// The worker entries are built next to index, in the same format, so each build finds its own.
const entry = {
  index: 'src/index.ts',
  'thread-worker': 'src/executors/worker/thread-worker.ts',
  'process-worker': 'src/executors/worker/process-worker.ts',
  'checkpointer-thread': 'src/storage/journal/sqlite/checkpointer-thread.mjs',
};

export default defineConfig([
  {
    entry,
    format: ['esm'],
    dts: { entry: { index: 'src/index.ts' } },
    sourcemap: true,
    clean: true,
    target: 'node20',
    platform: 'node',
  },
  {
    entry,
    format: ['cjs'],
    dts: { entry: { index: 'src/index.ts' } },
    sourcemap: true,
    target: 'node20',
    platform: 'node',
    noExternal: esmOnly,
    // `import.meta.url` locates the worker entries; in CommonJS it comes from `__filename`.
    shims: true,
  },
]);
