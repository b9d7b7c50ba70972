/** The run store's methods that write, and the key of the context option a test wraps its store with. */
export const WRITES: ReadonlySet<string> = new Set(['createRun', 'commit', 'acquireLease', 'renewLeases', 'releaseLease', 'putInput', 'clearInputs']);
/** `TEST_HOOKS` of src/context/test-hooks.ts, by its registered symbol: `{ [TEST_HOOKS]: { wrapStore } }`. */
export const TEST_HOOKS: unique symbol = Symbol.for('weir.test-hooks.v1') as never;
