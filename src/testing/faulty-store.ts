/**
 * A run store that refuses writes when a test says so (`t.failStore`), and stops its context right
 * after a chosen step's end is committed (`t.crashAfter`), as a kill -9 would.
 */
import { ErrorCode, RetryableError } from '../errors/errors.js';
import { FlowStatus } from '../model/status.js';
import type { CommitBatch, RunStore } from '../storage/journal/run-store.js';

/** Which writes `t.failStore` refuses. */
export type StoreWrite = 'create' | 'commit' | 'input' | 'lease' | 'write';

/** Options of `t.failStore`. */
export interface FailStoreOptions {
  /**
   * Which writes fail: `create` (a new run's record), `commit` (a run's steps, outputs, events and
   * end), `input` (an answer, a wait that ended), `lease` (taking, renewing or releasing a lease),
   * or `write` (any of them).
   */
  readonly on: StoreWrite;
  /** How many of them fail, one after the other. @default 1 */
  readonly times?: number;
  /** Only the commit of this step's end (its output, record and event; or its record when it fails for good); only with `on: 'commit'`. */
  readonly step?: string;
  /** What the store throws. @default a retryable `FlowError` with code `WEIR_STORE`, as a backend that fails gives */
  readonly error?: unknown;
}

/** One armed fault. */
interface Fault {
  readonly on: StoreWrite;
  readonly step: string | undefined;
  readonly error: unknown;
  left: number;
}

/** The statuses a step ends with: `crashAfter` waits for one of them to be committed. */
const ENDED = new Set<string>([FlowStatus.COMPLETED, FlowStatus.FAILED, FlowStatus.SKIPPED]);

/** The faults armed on a test context's store, shared by the contexts a restart makes. */
export class StoreFaults {
  readonly #faults: Fault[] = [];
  readonly #crashAfter = new Set<string>();

  /** Arms `times` failures of the writes `on` (of `step`'s end only, when given), throwing `error` (or a store error). */
  fail(on: StoreWrite, step: string | undefined, error: unknown, times: number): void {
    this.#faults.push({ on, step, error, left: times });
  }

  /** Arms a crash right after the commit that ends `step`. */
  crashAfter(step: string): void {
    this.#crashAfter.add(step);
  }

  /** Wraps `store`, so its writes pass the faults first; `crash` stops the context using it. */
  wrap(store: RunStore, crash: (step: string) => void): RunStore {
    const check = (write: StoreWrite, batch?: CommitBatch): void => this.#check(store.kind, write, batch);
    return {
      kind: store.kind,
      durable: store.durable,
      open: () => store.open(),
      async createRun(record, events) {
        check('create');
        return store.createRun(record, events);
      },
      commit: async (batch) => {
        check('commit', batch);
        await store.commit(batch);
        // The step's end is durable: the process dies before anything else is written.
        const ended = this.#ended(batch);
        if (ended !== undefined) crash(ended);
      },
      loadRun: (runId) => store.loadRun(runId),
      getOutput: (runId, step) => store.getOutput(runId, step),
      readEvents: (runId, after, limit) => store.readEvents(runId, after, limit),
      listRuns: (query) => store.listRuns(query),
      async acquireLease(runId, owner, leaseMs, now, options) {
        check('lease');
        return store.acquireLease(runId, owner, leaseMs, now, options);
      },
      async renewLeases(owner, entries, expiresAt) {
        check('lease');
        return store.renewLeases(owner, entries, expiresAt);
      },
      async releaseLease(runId, owner, leaseToken) {
        check('lease');
        return store.releaseLease(runId, owner, leaseToken);
      },
      async putInput(runId, entry) {
        check('input');
        return store.putInput(runId, entry);
      },
      async clearInputs(runId, keys) {
        check('input');
        return store.clearInputs(runId, keys);
      },
      readInputs: (runId) => store.readInputs(runId),
      prune: (options) => store.prune(options),
      checkStorable: (value, what) => store.checkStorable(value, what),
      close: () => store.close(),
    };
  }

  /** Throws the first armed fault that matches the write. */
  #check(kind: string, write: StoreWrite, batch: CommitBatch | undefined): void {
    const at = this.#faults.findIndex((f) => (f.on === write || f.on === 'write') && (f.step === undefined || (batch !== undefined && endsStep(batch, f.step))));
    if (at === -1) return;
    const fault = this.#faults[at]!;
    if (--fault.left === 0) this.#faults.splice(at, 1);
    if (fault.error !== undefined) throw fault.error as Error;
    throw new RetryableError(`run store (${kind}): ${write}: refused by t.failStore()`, { code: ErrorCode.STORE, cause: new Error('a fault injected by t.failStore()') });
  }

  /** The step an armed `crashAfter` waits for whose end this batch committed, if any. */
  #ended(batch: CommitBatch): string | undefined {
    for (const step of this.#crashAfter) {
      if (endsStep(batch, step)) {
        this.#crashAfter.delete(step);
        return step;
      }
    }
    return undefined;
  }
}

/** Whether the batch commits the end of `step`: its record with an ended status. */
function endsStep(batch: CommitBatch, step: string): boolean {
  return batch.steps?.some((record) => record.step === step && ENDED.has(record.status)) === true;
}
