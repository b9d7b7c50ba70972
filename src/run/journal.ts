/**
 * A run's side of the journal: numbers its events, gathers what changed (step records, outputs,
 * events, the run's own fields) and commits it to the `RunStore` in batches, one commit in flight
 * per run. Knows nothing of graphs or processors.
 *
 * Events are delivered to listeners at once, except a *held* event (a `step_complete` that goes
 * with its output, or the run's last event): it, and every event after it, waits until the commit
 * holding it is durable. If that commit fails, the held event is withdrawn and the events after it
 * (none of them delivered yet) take its number, so every listener sees a dense sequence that the
 * store agrees with.
 *
 * Over 450 lines for one reason: the numbering, holding, batching and failure handling of events
 * and checkpoints are one state machine, and are kept whole so its invariants can be read in one place.
 */
import { ErrorCode, FlowError } from '../errors/errors.js';
import type { WeirEvent } from '../model/events.js';
import type { CommitStats } from './environment.js';
import type { CommitBatch, NewRunRecord, OutputWrite, RunOwner, RunPatch, RunStore, StepRecord } from '../storage/journal/run-store.js';
import { wrapError } from '../storage/journal/store-support.js';
import { findLossy } from '../storage/codec.js';
import type { InputEntry } from '../model/waits.js';
import { setRealTimer, type TimerHandle } from '../util/clock.js';
import type { Mutable } from '../util/types.js';

/** How long a change that no one waits for (a step's start, progress) may stay in memory, in ms. */
const LAZY_FLUSH_MS = 20;

type SeqEvent = WeirEvent & { seq: number };

/** A change someone waits on: a step's output, or the run's end. */
interface Checkpoint {
  readonly record: StepRecord | undefined;
  readonly output: OutputWrite | undefined;
  /** The held event that goes with it. */
  readonly event: SeqEvent;
  patch: RunPatch | undefined;
  readonly resolve: () => void;
  readonly reject: (error: FlowError) => void;
  /** The run's end, when it rides on this step's completion (`complete` with `holdForEnd`): one commit, all or nothing. */
  end?: { readonly event: SeqEvent; readonly resolve: () => void; readonly reject: (error: FlowError) => void };
}

/** How many held events the checkpoints have: theirs, and their runs' ends. */
function heldEvents(checkpoints: readonly Checkpoint[]): number {
  let n = checkpoints.length;
  for (const c of checkpoints) if (c.end !== undefined) n++;
  return n;
}

/** What one commit writes, with what goes back if it fails. */
interface Taken {
  readonly batch: CommitBatch;
  readonly checkpoints: Checkpoint[];
  readonly events: SeqEvent[];
  readonly records: StepRecord[] | undefined;
  /** The patch recorded apart from the checkpoints. */
  readonly base: RunPatch | undefined;
}

const DONE: Promise<void> = Promise.resolve();
const noop = (): void => undefined;

/** Journals with changes no one waits for, flushed together by one timer. */
const lazy = new Set<RunJournal>();
let lazyTimer: TimerHandle | undefined;

function flushLazy(): void {
  lazyTimer = undefined;
  const due = [...lazy];
  lazy.clear();
  for (const journal of due) journal.lazyFlush();
}

/** What the journal tells its run. */
export interface JournalSink {
  /** Hands an event, in `seq` order, to the run's log and the context's listeners. */
  deliver(event: WeirEvent): void;
  /** The records of the steps that changed since the last call, in their state now. */
  changedSteps(): StepRecord[];
  /** The store refused a commit because another context holds the run's lease now. */
  leaseLost(error: FlowError): void;
}

/** The sink of a stored run's journal: nothing live hears it. */
const STORED_SINK: JournalSink = { deliver: () => undefined, changedSteps: () => [], leaseLost: () => undefined };

/** One run's batching writer to the run store. */
export class RunJournal {
  readonly runId: string;
  readonly #store: RunStore;
  readonly #stats: CommitStats | undefined;
  readonly #sink: JournalSink;
  /** The fencing token every commit carries. */
  #token: number;
  #nextSeq: number;

  /** Events numbered and not yet committed, in order. */
  #events: SeqEvent[] = [];
  /** Step records of a failed commit put back, not yet committed, by step name; made with the first. */
  #steps: Map<string, StepRecord> | undefined;
  /** Whether the sink has changed steps whose records the next commit must ask for. */
  #stepsChanged = false;
  #patch: Mutable<RunPatch> | undefined;
  /** Checkpoints not yet committed, in order. */
  #checkpoints: Checkpoint[] = [];
  /** Events numbered but not yet delivered, because a held event before them is not durable yet. */
  readonly #undelivered: SeqEvent[] = [];
  /** How many held events are not durable yet. */
  #holding = 0;

  #inFlight = false;
  /** Set when more must be committed once the commit in flight settles. */
  #again = false;
  /** Commit checkpoints one at a time (after a batch of several failed), so one bad output fails alone. */
  #isolate = 0;
  #lost: FlowError | undefined;
  /** The run has no record in the store: events go to listeners only, nothing is committed. */
  #detached = false;
  /** The run's end was handed to `finish`: once idle, nothing more comes, and the lazy flush lets it go. */
  #ended = false;
  /** A step's completion held back for the run's end to join it (see `complete`). */
  #held: Checkpoint | undefined;
  /** Why the checkpoint committed at once (`commitNow`) was refused. */
  #refusal: FlowError | undefined;
  readonly #refused = (error: FlowError): void => {
    this.#refusal = error;
  };
  /** Settles when nothing is in flight or pending. */
  #idle: Promise<void> | undefined;
  #idleResolve: (() => void) | undefined;

  constructor(runId: string, store: RunStore, sink: JournalSink, leaseToken: number, lastSeq: number, stats?: CommitStats) {
    this.runId = runId;
    this.#store = store;
    this.#stats = stats;
    this.#sink = sink;
    this.#token = leaseToken;
    this.#nextSeq = lastSeq + 1;
  }

  /**
   * The journal of a run not live here, to write under a lease just taken (a skip of an ended run,
   * a retry's link, a run that cannot be recovered): its events go to no listener.
   */
  static ofStored(store: RunStore, runId: string, leaseToken: number, lastSeq: number, stats?: CommitStats): RunJournal {
    return new RunJournal(runId, store, STORED_SINK, leaseToken, lastSeq, stats);
  }

  /** The lease token commits carry. */
  get leaseToken(): number {
    return this.#token;
  }

  /** The `seq` the next event gets. */
  nextSeq(): number {
    return this.#nextSeq++;
  }

  /**
   * Stores the run's record with its first event (numbered with `nextSeq()`), which is delivered
   * once the record is durable. Nothing else may be recorded before this settles.
   * @throws what `RunStore.createRun` throws; the event is then not delivered.
   */
  async create(record: NewRunRecord, e: WeirEvent): Promise<void> {
    this.#holding++;
    this.#undelivered.push(e);
    this.#inFlight = true;
    try {
      const stored = await this.#store.createRun(record, [e]);
      this.#token = stored.leaseToken;
    } catch (thrown) {
      // Only the create event is withdrawn: whatever the run recorded meanwhile (a cancel, say) stays for `detach`.
      const at = this.#undelivered.indexOf(e);
      if (at !== -1) this.#undelivered.splice(at, 1);
      throw this.#storeFailure(thrown);
    } finally {
      this.#inFlight = false;
      this.#holding--;
    }
    this.#deliverReady();
    this.#kick();
  }

  /**
   * Gives up storing anything for this run (its record could not be created): pending
   * checkpoints resolve, and from now on events are delivered at once, `first` before them.
   */
  detach(first?: WeirEvent): void {
    this.#detached = true;
    this.stop(new FlowError(`run "${this.runId}" has no record in the store`, { code: ErrorCode.RUN_NOT_FOUND }));
    if (first !== undefined) this.#sink.deliver(first);
    const checkpoints = this.#checkpoints;
    const undelivered = this.#undelivered.splice(0);
    this.#checkpoints = [];
    this.#events = [];
    this.#steps = undefined;
    this.#patch = undefined;
    this.#holding = 0;
    if (first !== undefined) for (const e of undelivered) this.#sink.deliver(e);
    this.#held = undefined;
    for (const c of checkpoints) {
      c.resolve();
      c.end?.resolve();
    }
    this.#becameIdle();
  }

  /** Records an event numbered with `nextSeq()`, delivering it now unless a held event is in the way. */
  append(e: WeirEvent): void {
    if (this.#detached) {
      this.#sink.deliver(e);
      return;
    }
    this.#events.push(e);
    if (this.#holding > 0) this.#undelivered.push(e);
    else this.#sink.deliver(e);
    this.#scheduleLazy();
  }

  /** Notes that steps changed: the next commit asks the sink for their records (`changedSteps`). */
  changed(): void {
    if (this.#detached) return;
    this.#stepsChanged = true;
    this.#scheduleLazy();
  }

  /** Records a change of the run's own fields; it is committed with the next batch. */
  patchRun(patch: RunPatch): void {
    if (this.#detached) return;
    this.#patch = this.#patch === undefined ? { ...patch } : Object.assign(this.#patch, patch);
    this.#scheduleLazy();
  }

  /**
   * Commits a step's completion (its record, its output and its `step_complete`, numbered with
   * `nextSeq()`) with everything pending before it, and `patch` of the run's own fields if given.
   * Resolves once it is durable; on failure the event is withdrawn and the promise rejects with the
   * store's error. On a store that commits at once (`commitNow`, memory) with nothing in flight it
   * returns `undefined`, committed, or throws the store's error: no promise and no turn of the loop.
   */
  complete(record: StepRecord, output: unknown, event: WeirEvent, patch?: RunPatch): Promise<void> | undefined {
    return this.#checkpoint(record, { step: record.step, value: output }, event, patch);
  }

  /**
   * Whether `completeEnding` may hold the completion with `output` back for the run's end: a store
   * that commits elsewhere, nothing pending before it, nothing lost, and an output that no store
   * refuses (one that would be refused goes alone, so its refusal fails the step, not the run's end).
   */
  mayJoinEnd(output: unknown): boolean {
    return (
      this.#store.commitNow === undefined &&
      !this.#detached &&
      this.#lost === undefined &&
      this.#checkpoints.length === 0 &&
      this.#held === undefined &&
      findLossy(output) === undefined
    );
  }

  /**
   * `complete` for the step whose completion ends the run (see `mayJoinEnd`): the commit waits
   * for the run's `finish`, made before `release()`, to join it, so the completion and the end are
   * one commit, durable together or not at all. Once `release()` is called the completion goes
   * alone if no end joined it. If the joint commit fails, nothing more is written for the run
   * here: it stays as the store has it (running, its last step not done), for `recover()`.
   */
  completeEnding(record: StepRecord, output: unknown, e: WeirEvent): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.#events.push(e);
      this.#holding++;
      this.#undelivered.push(e);
      const c: Checkpoint = { record, output: { step: record.step, value: output }, event: e, patch: undefined, resolve, reject };
      this.#checkpoints.push(c);
      this.#held = c;
    });
  }

  /** Commits a completion `completeEnding` held, if the run's end did not come to take it. */
  release(): void {
    if (this.#held === undefined) return;
    this.#held = undefined;
    this.#kick();
  }

  /** Commits the run's end (its patch and last event, numbered with `nextSeq()`) with everything pending. */
  finish(patch: RunPatch, event: WeirEvent): Promise<void> {
    this.#ended = true;
    const held = this.#held;
    if (held !== undefined) {
      // The last step's completion waits for this: one commit for both.
      this.#held = undefined;
      return new Promise<void>((resolve, reject) => {
        this.#events.push(event);
        this.#holding++;
        this.#undelivered.push(event);
        held.patch = patch;
        held.end = { event, resolve, reject };
        this.#kick();
      });
    }
    try {
      return this.#checkpoint(undefined, undefined, event, patch) ?? DONE;
    } catch (thrown) {
      // Committed at once and refused: the same rejection an asynchronous commit gives.
      const refusal = thrown as FlowError;
      return Promise.reject(refusal);
    }
  }

  /**
   * Stores how one of the run's waits for input ended, first come first served (not fenced: anyone
   * may answer a run, whoever runs it).
   * @returns whether it was stored (false when the key had an entry already).
   */
  putInput(entry: InputEntry): Promise<boolean> {
    return this.#store.putInput(this.runId, entry);
  }

  /** Forgets how the waits of `keys` ended, so they can be asked and answered again. */
  clearInputs(keys: readonly string[]): Promise<void> {
    return this.#store.clearInputs(this.runId, keys);
  }

  /** Gives up the run's lease (the run stays as it is in the store). @returns whether it was held with this journal's token. */
  releaseLease(owner: RunOwner): Promise<boolean> {
    return this.#store.releaseLease(this.runId, owner, this.#token);
  }

  /**
   * Commits a change of the run's own fields now, after anything pending. Unlike `patchRun`, it
   * rejects with the store's error, for a caller that must know (a stored run's journal).
   */
  async patchNow(patch: RunPatch): Promise<void> {
    await this.settled();
    if (this.#lost !== undefined) throw this.#lost;
    try {
      await this.#store.commit({ runId: this.runId, leaseToken: this.#token, run: patch });
    } catch (thrown) {
      throw this.#storeFailure(thrown);
    }
  }

  /** Whether something recorded is not committed yet (or a commit is in flight). */
  get pending(): boolean {
    return this.#lost === undefined && this.#busy();
  }

  /** Resolves once everything recorded so far was committed, or could not be. */
  settled(): Promise<void> {
    if (!this.#busy()) return Promise.resolve();
    this.#idle ??= new Promise<void>((resolve) => (this.#idleResolve = resolve));
    this.#kick();
    return this.#idle;
  }

  /** Stops committing: the run is over here (its lease is lost, or its store is closing). */
  stop(error: FlowError): void {
    this.#lost ??= error;
    lazy.delete(this);
  }

  #checkpoint(record: StepRecord | undefined, output: OutputWrite | undefined, e: WeirEvent, patch: RunPatch | undefined): Promise<void> | undefined {
    if (this.#detached) {
      this.#sink.deliver(e);
      return undefined;
    }
    if (this.#store.commitNow !== undefined && !this.#inFlight && this.#checkpoints.length === 0 && this.#lost === undefined) {
      // Nothing ahead of it: committed before this returns, its event delivered, or withdrawn and thrown.
      this.#events.push(e);
      this.#holding++;
      this.#undelivered.push(e);
      this.#checkpoints.push({ record, output, event: e, patch, resolve: noop, reject: this.#refused });
      this.#commitNow();
      const failure = this.#refusal;
      if (failure === undefined) return undefined;
      this.#refusal = undefined;
      throw failure;
    }
    return new Promise<void>((resolve, reject) => {
      this.#events.push(e);
      this.#holding++;
      this.#undelivered.push(e);
      this.#checkpoints.push({ record, output, event: e, patch, resolve, reject });
      this.#kick();
    });
  }

  #busy(): boolean {
    return this.#inFlight || this.#events.length > 0 || this.#steps !== undefined || this.#stepsChanged || this.#patch !== undefined || this.#checkpoints.length > 0;
  }

  #scheduleLazy(): void {
    if (this.#inFlight || this.#lost !== undefined) return;
    lazy.add(this);
    // One real timer for every journal: fake timers in tests must not hold back what is written.
    lazyTimer ??= setRealTimer(flushLazy, LAZY_FLUSH_MS, { unref: true });
  }

  /** Called by the shared lazy timer: commits what is pending. */
  lazyFlush(): void {
    this.#kick();
  }

  #kick(): void {
    // A completion held for the run's end goes with it, or on `release()`.
    if (this.#held !== undefined) return;
    if (this.#inFlight) {
      this.#again = true;
      return;
    }
    // The lazy timer, if any, is left to fire and find nothing: cheaper than a timer per commit.
    if (this.#lost !== undefined) {
      this.#failAll(this.#lost);
      return;
    }
    if (!this.#busy()) {
      this.#becameIdle();
      return;
    }
    if (this.#store.commitNow !== undefined) this.#commitNow();
    else void this.#commit();
  }

  /** What one commit writes, taken out of what is pending. */
  #take(): Taken {
    // Take what is pending, up to the checkpoints this commit may hold.
    let checkpoints = this.#checkpoints;
    let events = this.#events;
    if (this.#isolate > 0 && checkpoints.length > 1) {
      // Only the first checkpoint, and the events before the next one.
      const cut = events.indexOf(checkpoints[1]!.event);
      this.#checkpoints = checkpoints.slice(1);
      checkpoints = checkpoints.slice(0, 1);
      this.#events = events.slice(cut);
      events = events.slice(0, cut);
    } else {
      this.#checkpoints = [];
      this.#events = [];
    }
    if (this.#isolate > 0) this.#isolate -= checkpoints.length;
    // Step records, oldest first so the newest of a step wins: put ones, checkpoints', then the run's current state of the changed steps.
    let records: StepRecord[] | undefined;
    if (this.#steps !== undefined) {
      records = [...this.#steps.values()];
      this.#steps = undefined;
    }
    // The patch recorded apart from the checkpoints: what goes back if the commit fails (a checkpoint's own goes, or not, with it).
    const base = this.#patch;
    let patch = base;
    this.#patch = undefined;
    let outputs: OutputWrite[] | undefined;
    for (const c of checkpoints) {
      if (c.record !== undefined) (records ??= []).push(c.record);
      if (c.output !== undefined) (outputs ??= []).push(c.output);
      if (c.patch !== undefined) {
        // Copied the first time, so `base` stays as it was: it goes back if the commit fails.
        if (patch === undefined || patch === base) patch = Object.assign({}, patch);
        Object.assign(patch, c.patch);
      }
    }
    if (this.#stepsChanged) {
      this.#stepsChanged = false;
      for (const record of this.#sink.changedSteps()) (records ??= []).push(record);
    }
    if (records !== undefined && records.length > 1) records = [...new Map(records.map((r) => [r.step, r])).values()];
    const batch: Mutable<CommitBatch> = { runId: this.runId, leaseToken: this.#token };
    if (patch !== undefined) batch.run = patch;
    if (records !== undefined) batch.steps = records;
    if (outputs !== undefined) batch.outputs = outputs;
    if (events.length > 0) batch.events = events;
    return { batch, checkpoints, events, records, base };
  }

  async #commit(): Promise<void> {
    this.#inFlight = true;
    this.#again = false;
    const taken = this.#take();
    const begun = performance.now();
    try {
      await this.#store.commit(taken.batch);
    } catch (thrown) {
      this.#inFlight = false;
      this.#failed(this.#storeFailure(thrown), taken.checkpoints, taken.events, taken.records ?? [], taken.base);
      return;
    }
    this.#inFlight = false;
    if (this.#stats !== undefined) {
      this.#stats.lastMs = performance.now() - begun;
      this.#stats.lastAt = Date.now();
    }
    this.#committed(taken.checkpoints);
  }

  /** `#commit` on a store that commits at once: nothing is in flight before or after. */
  #commitNow(): void {
    this.#again = false;
    const taken = this.#take();
    try {
      this.#store.commitNow!(taken.batch);
    } catch (thrown) {
      this.#failed(this.#storeFailure(thrown), taken.checkpoints, taken.events, taken.records ?? [], taken.base);
      return;
    }
    if (this.#stats !== undefined) {
      this.#stats.lastMs = 0;
      this.#stats.lastAt = Date.now();
    }
    this.#committed(taken.checkpoints);
  }

  /** A commit is durable: its held events go out, its checkpoints resolve, and what came meanwhile follows. */
  #committed(checkpoints: readonly Checkpoint[]): void {
    this.#holding -= heldEvents(checkpoints);
    this.#deliverReady();
    for (const c of checkpoints) {
      c.resolve();
      c.end?.resolve();
    }
    // What came during the commit goes now if someone waits for it (`settled()`), else with the lazy flush.
    if (this.#again || this.#checkpoints.length > 0 || (this.#idle !== undefined && this.#busy())) this.#kick();
    else if (this.#busy()) this.#scheduleLazy();
    else this.#becameIdle();
  }

  /**
   * A commit failed: withdraw its checkpoints' events and put the rest back in front of what came
   * since. `patch` is the batch's patch but the checkpoints' own: a withdrawn run end must not be
   * written later without its event.
   */
  #failed(error: FlowError, checkpoints: Checkpoint[], events: SeqEvent[], records: readonly StepRecord[], patch: RunPatch | undefined): void {
    if (error.code === ErrorCode.LEASE_LOST) {
      this.stop(error);
      this.#sink.leaseLost(error);
      for (const c of checkpoints) {
        c.reject(error);
        c.end?.reject(error);
      }
      this.#failAll(error);
      return;
    }
    if (checkpoints.some((c) => c.end !== undefined)) {
      // The run ended in memory on a completion that is not durable: nothing after the last durable commit is written
      // here (a composite's end it set going, say), so the store keeps the run as it was, for `recover()`.
      this.stop(error);
      for (const c of checkpoints) {
        c.reject(error);
        c.end?.reject(error);
      }
      this.#failAll(error);
      return;
    }
    // The batch's records go back, except each checkpoint's own: it goes again with its checkpoint
    // (when retried alone), or the caller records the step's next state (when withdrawn).
    const own = new Set(checkpoints.map((c) => c.record));
    this.#restore(records.filter((r) => !own.has(r)), patch);
    // With several checkpoints in the batch, retry them one by one so a bad output fails alone.
    if (checkpoints.length > 1) {
      this.#isolate = checkpoints.length + this.#checkpoints.length;
      this.#checkpoints = [...checkpoints, ...this.#checkpoints];
      this.#events = [...events, ...this.#events];
      this.#kick();
      return;
    }
    const withdrawn = new Set(checkpoints.map((c) => c.event));
    const kept = events.filter((e) => !withdrawn.has(e));
    this.#events = [...kept, ...this.#events];
    // The withdrawn events were held, so nothing from the first of them on was delivered: renumber.
    if (withdrawn.size > 0) {
      this.#holding -= withdrawn.size;
      const first = Math.min(...[...withdrawn].map((e) => e.seq));
      const later = this.#undelivered.filter((e) => !withdrawn.has(e));
      this.#undelivered.length = 0;
      this.#undelivered.push(...later);
      let seq = first;
      for (const e of later) if (e.seq > first) e.seq = seq++;
      this.#nextSeq = seq;
    }
    this.#deliverReady();
    for (const c of checkpoints) c.reject(error);
    if (this.#checkpoints.length > 0 || this.#again) this.#kick();
    else if (this.#busy()) this.#scheduleLazy();
    else this.#becameIdle();
  }

  /** Puts uncommitted step records and patch back, under anything newer. */
  #restore(records: readonly StepRecord[], patch: RunPatch | undefined): void {
    for (const record of records) {
      const steps = (this.#steps ??= new Map());
      if (!steps.has(record.step)) steps.set(record.step, record);
    }
    if (patch !== undefined) this.#patch = Object.assign({}, patch, this.#patch);
  }

  /** Delivers the undelivered events up to the first held one that is not durable yet. */
  #deliverReady(): void {
    if (this.#undelivered.length === 0) return;
    let n = this.#undelivered.length;
    if (this.#checkpoints.length > 0) {
      // Checkpoints are kept in order, so the first one still pending holds back everything from its event on.
      n = this.#undelivered.indexOf(this.#checkpoints[0]!.event);
      if (n === -1) n = this.#undelivered.length;
    }
    const ready = this.#undelivered.splice(0, n);
    for (const e of ready) this.#sink.deliver(e);
  }

  #failAll(error: FlowError): void {
    const checkpoints = this.#checkpoints;
    this.#checkpoints = [];
    this.#events = [];
    this.#steps = undefined;
    this.#patch = undefined;
    this.#holding = 0;
    this.#undelivered.length = 0;
    this.#held = undefined;
    for (const c of checkpoints) {
      c.reject(error);
      c.end?.reject(error);
    }
    this.#becameIdle();
  }

  #becameIdle(): void {
    // An ended run's journal (and the run it points to) must not wait for the lazy timer to be let go.
    // A live one stays listed (it would be listed again at its next event): finding it idle costs the timer nothing.
    if (this.#ended || this.#detached) lazy.delete(this);
    const resolve = this.#idleResolve;
    this.#idle = undefined;
    this.#idleResolve = undefined;
    resolve?.();
  }

  /** A store's failure as a `FlowError`: anything else it throws is a retryable `WEIR_STORE`, as a backend failure is. */
  #storeFailure(thrown: unknown): FlowError {
    return wrapError(this.#store.kind, 'write failed', thrown);
  }
}
