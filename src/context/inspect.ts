/** What a test kit (`weir/testing`) may see of a context, under a key that stays off its public names. @internal */

/** What a test kit may see of a context's runs (`weir/testing`), through `FlowContext[INSPECT]`. @internal */
export interface ContextInspection {
  /** Whether something is under way that ends by itself: store work, a run starting, a commit, a step queued. */
  readonly working: boolean;
  /** How many step attempts run now (they may wait on anything, a timeout included). */
  readonly running: number;
}

/** The key of `FlowContext[INSPECT]()`: a symbol, so it stays off the context's public names. @internal */
export const INSPECT: unique symbol = Symbol.for('weir.inspect.v1');
