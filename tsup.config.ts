import { defineConfig } from 'tsup';

// ESM-only dependencies are bundled into the CommonJS build so `require('weir')` needs no require(esm).
const esmOnly = ['p-queue', 'p-timeout', 'superjson', 'copy-anything', 'is-what'];

export default defineConfig([
  {
    entry: { index: 'src/index.ts' },
    format: ['esm'],
    dts: true,
    sourcemap: true,
    clean: true,
    target: 'node20',
    platform: 'node',
  },
  {
    entry: { index: 'src/index.ts' },
    format: ['cjs'],
    dts: true,
    sourcemap: true,
    target: 'node20',
    platform: 'node',
    noExternal: esmOnly,
  },
]);
