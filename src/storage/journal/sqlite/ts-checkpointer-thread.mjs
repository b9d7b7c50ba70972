// Loads the TypeScript checkpointer-thread entry through tsx: used only when weir runs from its sources
// (under vitest or tsx), since a worker thread on Node 20 ignores `--import tsx`. The built package never loads it.
import { tsImport } from 'tsx/esm/api';

await tsImport('./checkpointer-thread.ts', import.meta.url);
