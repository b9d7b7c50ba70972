/**
 * The seams a test kit (`weir/testing`) uses, and nothing else does: a context's clock, step
 * doubles and store wrapper given at construction, what it may see of the runs, and a stop as a
 * killed process would. All are keyed by symbols, so they stay off the public names and no option
 * schema sees them.
 * @internal
 */
import type { StepDoubles } from '../run/environment.js';
import type { RunStore } from '../storage/journal/run-store.js';
import type { Clock } from '../util/clock.js';
import type { AnyFlow } from '../model/flow.js';

/** What a test kit gives a new context: `new FlowContext({ ...options, [TEST_HOOKS]: hooks })`. @internal */
export interface TestHooks {
  /** The time the context runs on, instead of the host's. */
  readonly clock?: Clock;
  /** What runs instead of some steps' processors. */
  readonly doubles?: StepDoubles;
  /** Wraps the run store the context writes to (to refuse writes, or to stop after one). */
  readonly wrapStore?: (store: RunStore) => RunStore;
}

/** What a test kit may see of a context (`FlowContext[INSPECT]()`). @internal */
export interface ContextInspection {
  /** Whether something is under way that ends by itself: store work, a run starting, a commit, a leaf about to get a free slot, a worker starting. */
  readonly working: boolean;
  /** How many step attempts run now (they may wait on anything, a timeout included). */
  readonly running: number;
  /** The flows the context knows: registered, or started here. */
  readonly flows: readonly AnyFlow[];
  /** Its lease timeout, in ms. */
  readonly leaseTimeout: number;
}

/** The key of the test kit's option of `new FlowContext()`. @internal */
export const TEST_HOOKS: unique symbol = Symbol.for('weir.test-hooks.v1');
/** The key of `FlowContext[INSPECT]()`. @internal */
export const INSPECT: unique symbol = Symbol.for('weir.inspect.v1');
/** The key of `FlowContext[FLUSH]()`: commits what every live run recorded now, not on the lazy flush's timer. @internal */
export const FLUSH: unique symbol = Symbol.for('weir.flush.v1');
/**
 * The key of `FlowContext[HALT](reason)`: stops the context as a kill -9 of its process would.
 * Nothing more is committed or published, no timer of it fires, its steps are aborted and its
 * pools closed; its leases are neither renewed nor released, and its results are left open (the
 * test kit's next context goes on with them). Its live runs' handles settle with status `running`
 * and `reason` (parked ones, `waiting`). Afterwards `close()` does nothing. @internal
 */
export const HALT: unique symbol = Symbol.for('weir.halt.v1');
