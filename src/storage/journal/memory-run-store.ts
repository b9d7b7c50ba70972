/**
 * The run journal in Maps, for runs that need not survive the process. Records, outputs, events and
 * input values are kept by reference, not copied: callers must not change them after a commit.
 * Unless told otherwise, it refuses the values a durable store could not keep, as they would fail.
 * @internal
 */
import type { WeirEvent } from '../../model/events.js';
import { findLossy, lossyError } from '../codec.js';
import type { FlowStatus } from '../../model/status.js';
import type {
  AcquireOptions,
  CommitBatch,
  InputEntry,
  LeaseEntry,
  ListRunsQuery,
  LoadedRun,
  NewRunRecord,
  PruneOptions,
  RenewResult,
  RunOwner,
  RunPage,
  RunRecord,
  RunStore,
  StepRecord,
  StoredOutput,
} from './run-store.js';
import {
  assignPatch,
  checkBatch,
  checkEvents,
  closedError,
  conflictError,
  FINISHED,
  leaseLostError,
  mayAcquire,
  raisesToken,
  notFoundError,
  pageRuns,
  releases,
  wrapError,
  newRunRecord,
} from './store-support.js';
import type { Mutable } from '../../util/types.js';


interface Entry {
  /** Replaced, not changed, when its lease is released: a deleted key would turn it into a slow dictionary. */
  run: Mutable<RunRecord>;
  readonly steps: Map<string, StepRecord>;
  readonly outputs: Map<string, unknown>;
  readonly events: WeirEvent[];
  /** How each input wait ended, by key, in the order stored; made with the first (most runs never wait). */
  inputs: Map<string, InputEntry> | undefined;
}

const DONE: Promise<void> = Promise.resolve();

/** Options of `MemoryRunStore`. */
export interface MemoryRunStoreOptions {
  /** How many finished runs to keep; the oldest go first. @default Infinity */
  readonly keepFinished?: number;
  /** Refuse, with `WEIR_SERIALIZATION`, values a durable store could not keep (functions, symbols...). @default true */
  readonly checkSerializable?: boolean;
}

/** Throws what a durable store's encoding would for a value it cannot keep; `what` is built only then. */
function checkValue(value: unknown, what: () => string): void {
  const lossy = findLossy(value);
  if (lossy !== undefined) throw lossyError(lossy, what());
}

/** A `RunStore` in plain Maps: a commit is a few Map writes, with no copy and no serialisation. @internal */
export class MemoryRunStore implements RunStore {
  readonly kind = 'memory';
  readonly durable = false;
  readonly #runs = new Map<string, Entry>();
  /** Finished runs, oldest first (a run resumed and finished again moves to the end). */
  readonly #finished = new Set<string>();
  readonly #keepFinished: number;
  readonly #checkValues: boolean;
  #closed = false;

  constructor(options: MemoryRunStoreOptions = {}) {
    this.#keepFinished = options.keepFinished ?? Infinity;
    this.#checkValues = options.checkSerializable ?? true;
  }

  async createRun(record: NewRunRecord, events: readonly WeirEvent[] = []): Promise<RunRecord> {
    this.#check('create a run');
    if (this.#runs.has(record.runId)) throw conflictError(this.kind, record.runId);
    const lastSeq = checkEvents(this.kind, record.runId, 0, events);
    if (this.#checkValues) {
      checkValue(record.input, () => `input of run ${record.runId}`);
      if ('output' in record) checkValue(record.output, () => `output of run ${record.runId}`);
      this.#checkEventValues(events);
    }
    const run: Entry['run'] = newRunRecord(record, lastSeq);
    this.#runs.set(record.runId, { run, steps: new Map(), outputs: new Map(), events: [...events], inputs: undefined });
    return { ...run };
  }

  commit(batch: CommitBatch): Promise<void> {
    try {
      this.#commitNow(batch);
    } catch (thrown) {
      // `#commitNow` throws only a `FlowError`.
      const error = thrown as Error;
      return Promise.reject(error);
    }
    return DONE;
  }

  commitNow(batch: CommitBatch): void {
    this.#commitNow(batch);
  }

  #commitNow(batch: CommitBatch): void {
    if (this.#closed) throw closedError(this.kind, `commit to run ${JSON.stringify(batch.runId)}`);
    try {
      this.#apply(batch);
    } catch (error) {
      throw wrapError(this.kind, 'commit failed', error);
    }
  }

  #apply(batch: CommitBatch): void {
    const entry = this.#runs.get(batch.runId);
    if (entry === undefined) throw notFoundError(this.kind, batch.runId);
    const run = entry.run;
    if (run.leaseToken !== batch.leaseToken) throw leaseLostError(this.kind, batch.runId, run.leaseToken, batch.leaseToken);
    const { steps, outputs, events, run: patch } = batch;
    if (outputs !== undefined) checkBatch(this.kind, batch);
    const lastSeq = events === undefined ? run.lastSeq : checkEvents(this.kind, batch.runId, run.lastSeq, events);
    if (this.#checkValues) {
      if (outputs !== undefined) for (const output of outputs) checkValue(output.value, () => `output of ${batch.runId}/${output.step}`);
      if (patch?.output !== undefined) checkValue(patch.output, () => 'run output');
      if (events !== undefined) this.#checkEventValues(events);
    }
    // Everything is checked: from here on nothing throws, so the batch is all or nothing.
    if (steps !== undefined) {
      for (const step of steps) {
        entry.steps.set(step.step, step);
        if (!step.hasOutput && entry.outputs.size > 0) entry.outputs.delete(step.step);
      }
    }
    if (outputs !== undefined) for (const output of outputs) entry.outputs.set(output.step, output.value);
    if (events !== undefined) for (const event of events) entry.events.push(event);
    run.lastSeq = lastSeq;
    if (patch !== undefined) {
      assignPatch(run, patch);
      if (releases(patch.status)) {
        const { owner: _released, ...kept } = run;
        kept.leaseExpiresAt = 0;
        entry.run = kept;
      }
      if (patch.status !== undefined) this.#noteStatus(batch.runId, patch.status);
    }
  }

  /** Only a heartbeat's details come from user code; weir builds the rest of every event. */
  #checkEventValues(events: readonly WeirEvent[]): void {
    for (const event of events) {
      if (event.type === 'step_heartbeat' && event.details !== undefined) checkValue(event, () => `event ${event.seq}`);
    }
  }

  /** Keeps at most `keepFinished` finished runs, forgetting the oldest. */
  #noteStatus(runId: string, status: FlowStatus): void {
    this.#finished.delete(runId);
    if (!FINISHED.has(status)) return;
    this.#finished.add(runId);
    if (this.#finished.size <= this.#keepFinished) return;
    for (const oldest of this.#finished) {
      this.#finished.delete(oldest);
      this.#runs.delete(oldest);
      if (this.#finished.size <= this.#keepFinished) return;
    }
  }

  async loadRun(runId: string): Promise<LoadedRun | undefined> {
    this.#check(`load run ${JSON.stringify(runId)}`);
    const entry = this.#runs.get(runId);
    if (entry === undefined) return undefined;
    return { run: { ...entry.run }, steps: [...entry.steps.values()] };
  }

  async getOutput(runId: string, step: string): Promise<StoredOutput | undefined> {
    this.#check(`read the output of ${JSON.stringify(`${runId}/${step}`)}`);
    const outputs = this.#runs.get(runId)?.outputs;
    return outputs?.has(step) === true ? { value: outputs.get(step) } : undefined;
  }

  async readEvents(runId: string, after = 0, limit = Infinity): Promise<WeirEvent[]> {
    this.#check(`read the events of run ${JSON.stringify(runId)}`);
    const events = this.#runs.get(runId)?.events ?? [];
    const start = Math.max(0, after);
    return events.slice(start, start + Math.max(0, limit));
  }

  async listRuns(query: ListRunsQuery): Promise<RunPage> {
    this.#check('list runs');
    return pageRuns(this.kind, [...this.#runs.values()].map((e) => ({ ...e.run })), query);
  }

  async acquireLease(runId: string, owner: RunOwner, leaseMs: number, now: number, options?: AcquireOptions): Promise<number | undefined> {
    this.#check(`acquire the lease of run ${JSON.stringify(runId)}`);
    const run = this.#runs.get(runId)?.run;
    if (run === undefined || !mayAcquire(run, owner.processId, now, options)) return undefined;
    const takeover = options?.takeover === true;
    if (raisesToken(run, owner.processId, options)) run.leaseToken += 1;
    if (takeover) run.recoveries += 1;
    run.owner = owner;
    run.leaseExpiresAt = now + leaseMs;
    return run.leaseToken;
  }

  async renewLeases(owner: RunOwner, entries: readonly LeaseEntry[], expiresAt: number): Promise<RenewResult> {
    this.#check('renew leases');
    const renewed: string[] = [];
    const lost: string[] = [];
    for (const { runId, leaseToken } of entries) {
      const run = this.#runs.get(runId)?.run;
      if (run !== undefined && run.leaseToken === leaseToken && run.owner?.processId === owner.processId) {
        run.leaseExpiresAt = expiresAt;
        renewed.push(runId);
      } else {
        lost.push(runId);
      }
    }
    return { renewed, lost };
  }

  async releaseLease(runId: string, owner: RunOwner, leaseToken: number): Promise<boolean> {
    this.#check(`release the lease of run ${JSON.stringify(runId)}`);
    const run = this.#runs.get(runId)?.run;
    if (run === undefined || run.leaseToken !== leaseToken || run.owner?.processId !== owner.processId) return false;
    delete run.owner;
    run.leaseExpiresAt = 0;
    return true;
  }

  async putInput(runId: string, entry: InputEntry): Promise<boolean> {
    this.#check(`store input ${JSON.stringify(entry.key)} of run ${JSON.stringify(runId)}`);
    const held = this.#runs.get(runId);
    if (held === undefined) throw notFoundError(this.kind, runId);
    const inputs = (held.inputs ??= new Map());
    if (this.#checkValues && 'value' in entry) checkValue(entry.value, () => `input ${runId}/${entry.key}`);
    // Synchronous from the check to the write: the first caller wins.
    if (inputs.has(entry.key)) return false;
    inputs.set(entry.key, { ...entry });
    return true;
  }

  async clearInputs(runId: string, keys: readonly string[]): Promise<void> {
    this.#check(`clear inputs of run ${JSON.stringify(runId)}`);
    const held = this.#runs.get(runId);
    if (held === undefined) throw notFoundError(this.kind, runId);
    for (const key of keys) held.inputs?.delete(key);
  }

  async readInputs(runId: string): Promise<InputEntry[]> {
    this.#check(`read the inputs of run ${JSON.stringify(runId)}`);
    const inputs = this.#runs.get(runId)?.inputs;
    return inputs === undefined ? [] : [...inputs.values()].map((entry) => ({ ...entry }));
  }

  async prune(options: PruneOptions): Promise<number> {
    this.#check('prune');
    let deleted = 0;
    for (const [runId, { run }] of this.#runs) {
      if (FINISHED.has(run.status) && (run.endedAt ?? run.updatedAt) < options.olderThan && this.#runs.delete(runId)) {
        this.#finished.delete(runId);
        deleted += 1;
      }
    }
    return deleted;
  }

  async open(): Promise<void> {
    this.#check('open');
  }

  checkStorable(value: unknown, what: string): void {
    if (this.#checkValues) checkValue(value, () => what);
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#runs.clear();
    this.#finished.clear();
  }

  #check(what: string): void {
    if (this.#closed) throw closedError(this.kind, what);
  }
}
