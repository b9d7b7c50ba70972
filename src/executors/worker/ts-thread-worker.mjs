// Loads the TypeScript thread-worker entry when weir runs from its sources: through the module hooks
// the worker inherited from its host when they compile TypeScript (the benchmarks' do, as the build
// does), else through tsx (under vitest), since a worker thread on Node 20 ignores `--import tsx`.
// The built package never loads this file.
const FALL_BACK = new Set(['ERR_UNKNOWN_FILE_EXTENSION', 'ERR_MODULE_NOT_FOUND', 'ERR_UNSUPPORTED_TYPESCRIPT_SYNTAX']);
let entry;
try {
  entry = await import('./thread-worker.ts');
} catch (error) {
  // No hooks that compile it (ERR_UNKNOWN_FILE_EXTENSION), or ones that cannot (Node's own type
  // stripping does not map the sources' `.js` imports): tsx then. Any other error is the sources'.
  if (!FALL_BACK.has(error?.code)) throw error;
  const { tsImport } = await import('tsx/esm/api');
  entry = await tsImport('./thread-worker.ts', import.meta.url);
}
export default entry.default;
