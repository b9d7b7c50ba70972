/** The run store's methods that write, by kind, and the key of the context option a test wraps its store with. */

/** The writes a store takes: a new run, a commit, a lease taken, renewed or given back, an input entry stored or cleared. */
export type WriteKind = 'create' | 'commit' | 'lease' | 'input';

/** Each writing method of a `RunStore`, and its kind. */
export const WRITE_KINDS: Readonly<Record<string, WriteKind>> = {
  createRun: 'create',
  commit: 'commit',
  acquireLease: 'lease',
  renewLeases: 'lease',
  releaseLease: 'lease',
  putInput: 'input',
  clearInputs: 'input',
};

/** The writing methods of a `RunStore`. */
export const WRITES: ReadonlySet<string> = new Set(Object.keys(WRITE_KINDS));

/** `TEST_HOOKS` of src/context/test-hooks.ts, by its registered symbol: `{ [TEST_HOOKS]: { wrapStore } }`. */
export const TEST_HOOKS: unique symbol = Symbol.for('weir.test-hooks.v1') as never;
