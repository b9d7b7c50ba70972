// Loads the TypeScript thread-worker entry through tsx: used only when weir runs from its sources
// (under vitest), since a worker thread on Node 20 ignores `--import tsx`. The built package never loads it.
import { tsImport } from 'tsx/esm/api';

const entry = await tsImport('./thread-worker.ts', import.meta.url);
export default entry.default;
