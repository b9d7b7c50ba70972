/**
 * Per-run write locks for the key-value journal: a key-value store has no compare-and-set, so two
 * stores of one process over the same directory or Keyv take a run's lease, and write to it, in turn.
 * @internal
 */

/** Per backend scope, per run, the tail of its operations. Empty maps stay: one per scope. */
const SCOPES = new Map<unknown, Map<string, Promise<unknown>>>();

/** The locks of one backend scope, shared by every store over it in this process. */
export class RunLocks {
  readonly #tails: Map<string, Promise<unknown>>;

  constructor(scope: unknown) {
    let tails = SCOPES.get(scope);
    if (tails === undefined) SCOPES.set(scope, (tails = new Map()));
    this.#tails = tails;
  }

  /** Runs `fn` after every earlier operation on the same run has settled, so they never interleave. */
  run<T>(runId: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.#tails.get(runId) ?? Promise.resolve();
    const result = previous.then(fn, fn);
    const settled = result.then(
      () => undefined,
      () => undefined,
    );
    this.#tails.set(runId, settled);
    void settled.then(() => {
      if (this.#tails.get(runId) === settled) this.#tails.delete(runId);
    });
    return result;
  }

  /** Resolves once no operation on any run of the scope is under way. */
  async idle(): Promise<void> {
    while (this.#tails.size > 0) await Promise.allSettled([...this.#tails.values()]);
  }
}
