/** Finds the worker entry files next to this code: built JavaScript in `dist/`, or TypeScript sources. */
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';

/** A worker entry, and whether it is TypeScript (weir running from its sources, as under vitest). */
export interface EntryFile {
  readonly file: string;
  readonly typescript: boolean;
}

const here = import.meta.url;

/** The entry for `thread-worker` or `process-worker`, in the same format as the code now running. */
export function entryFile(name: 'thread-worker' | 'process-worker'): EntryFile {
  if (here.endsWith('.ts')) {
    // A worker thread ignores `--import tsx`, so threads start from a JavaScript shim that loads tsx itself.
    const file = name === 'thread-worker' ? './worker/ts-thread-worker.mjs' : `./worker/${name}.ts`;
    return { file: fileURLToPath(new URL(file, here)), typescript: true };
  }
  return { file: fileURLToPath(new URL(`./${name}${here.endsWith('.cjs') ? '.cjs' : '.js'}`, here)), typescript: false };
}

/** `--import <tsx>` for a child that runs TypeScript sources, resolved from here rather than the cwd. */
export function tsxImportArgs(): string[] {
  return ['--import', pathToFileURL(createRequire(here).resolve('tsx')).href];
}
