/**
 * One run's lifecycle: it starts (its record stored, or restored from the journal), goes on
 * through its scheduler, attempts and waits, and ends once: completed, failed or cancelled, parked
 * to wait for input, suspended by a closing context, or stopped by a lost lease. It reports to the
 * context that owns it through its `RunKeeper` only. Everything it records goes through its
 * `RunJournal`; a step's output is durable before any dependant starts.
 */
import { toErrorData, type ErrorData } from '../errors/error-data.js';
import { CancelledError, ErrorCode, FlowError, TimeoutError, WarningCode } from '../errors/errors.js';
import { validate } from '../executors/invoke.js';
import type { CompiledGraph, GraphNode } from '../graph/compile.js';
import { RunWaits } from '../human/waits.js';
import type { EventInput, WeirEvent } from '../model/events.js';
import type { FlowResult } from '../model/result.js';
import { FlowStatus, type RunMode } from '../model/status.js';
import type { TimerHandle } from '../util/clock.js';
import type { Mutable } from '../util/types.js';
import { Attempts } from './attempt.js';
import type { RunEnvironment, RunKeeper, RunSettings } from './environment.js';
import type { EventLog } from './event-log.js';
import { applyRestore, type RestoredRun } from './restored.js';
import { endOf, resultOf, startOf } from './run-result.js';
import { RunState } from './run-state.js';
import { Scheduler } from './scheduler.js';
import { skipStep } from './skip.js';
import { refuseInput, skipUnfinished, stopSteps, takeRunning } from './stopping.js';
import type { StepRecord } from '../storage/journal/run-store.js';

const { PENDING, RUNNING, WAITING, COMPLETED, FAILED, CANCELLED } = FlowStatus;

/** What `Run.ended()` gives for a run that parked to wait for input: it goes on later, here or elsewhere. */
export const PARKED: unique symbol = Symbol('weir.parked');
/** How a run's life in this context ended. */
export type RunOutcome = FlowResult | typeof PARKED;

const noop = (): void => undefined;

/** One execution of a compiled graph with one input. */
export class Run {
  readonly runId: string;
  readonly graph: CompiledGraph;
  readonly input: unknown;
  readonly #state: RunState;
  readonly #keeper: RunKeeper;
  readonly #scheduler: Scheduler;
  readonly #attempts: Attempts;
  readonly #waits: RunWaits;
  #timeoutTimer: TimerHandle | undefined;
  #result: FlowResult | undefined;
  /** Set once the run is committed as waiting and handed back to its context. */
  #parked = false;
  /** Set when the run gave way to a stored run of the same id (an idempotent start). */
  #gone = false;
  /** Set once its record is stored (or it was restored) and its steps may start. */
  #begun = false;
  #left: Promise<void> | undefined;
  #leave: (() => void) | undefined;
  #settle!: (outcome: RunOutcome | Promise<FlowResult>) => void;
  readonly #done: Promise<RunOutcome>;
  readonly #onAbort = (): void => {
    const reason: unknown = this.#state.settings.signal?.reason;
    this.cancel(reason instanceof CancelledError ? reason : new CancelledError(`run "${this.runId}" was cancelled by its signal`, { cause: reason }));
  };

  constructor(graph: CompiledGraph, input: unknown, settings: RunSettings, env: RunEnvironment, keeper: RunKeeper) {
    this.runId = settings.runId;
    this.graph = graph;
    this.input = input;
    this.#keeper = keeper;
    const state: RunState = new RunState(graph, input, settings, env, {
      deliver: (event) => {
        state.events.push(event);
        env.publish(event);
      },
      changedSteps: (): StepRecord[] => state.changedSteps(),
      leaseLost: (error) => this.leaseLost(error),
    });
    this.#state = state;
    this.#scheduler = new Scheduler(state, {
      attempt: (index) => this.#attempts.run(index),
      waitAgain: (index) => this.#waits.waitAgain(index),
      rootEnded: (status) => this.#finish(status === COMPLETED ? COMPLETED : FAILED, status === COMPLETED ? undefined : state.runError),
      slotFreed: () => this.#waits.maybePark(),
    });
    const restore = settings.restore;
    this.#waits = new RunWaits(
      state,
      this.#scheduler,
      {
        stopTimers: () => this.#clearTimers(),
        parked: () => this.#onParked(),
        parkFailed: (error) => this.#finish(FAILED, toErrorData(error)),
      },
      settings.humanInLoop,
      restore?.inputs ?? [],
    );
    this.#attempts = new Attempts(state, this.#scheduler, this.#waits);
    this.#done = new Promise((resolve) => (this.#settle = resolve));
    if (restore !== undefined) applyRestore(state, restore);
  }

  /** How the run treats `waitForInput`. */
  get mode(): RunMode {
    return this.#state.settings.mode;
  }

  /** The run's status now. */
  get status(): FlowStatus {
    return this.#state.status;
  }

  /** The lease token this run commits with. */
  get leaseToken(): number {
    return this.#state.journal.leaseToken;
  }

  /** When the run was first started, in ms since the epoch. */
  get startTime(): number {
    return this.#state.startTime;
  }

  /** The run's events in memory. */
  get events(): EventLog {
    return this.#state.events;
  }

  /**
   * What the run does now, for a test kit's virtual clock: `working` when something under way ends
   * by itself (its record being stored, a commit, a leaf about to be queued, an attempt whose worker
   * is starting); `running`, the attempts under way (they may wait on anything, a timeout
   * included); `waitingForSlot`, its leaves in the context's queue that wait for a slot.
   */
  get activity(): { readonly working: boolean; readonly running: number; readonly waitingForSlot: number } {
    const state = this.#state;
    if (!state.live) return { working: state.journal.pending, running: 0, waitingForSlot: 0 };
    const working = !this.#begun || state.journal.pending || state.committingCount > 0 || state.starting > 0 || this.#scheduler.pumpable;
    return { working, running: state.running.size, waitingForSlot: Math.max(0, this.#scheduler.inQueue - state.running.size) };
  }

  /** Whether the run parked to wait for input: it goes on later, as another `Run` of the same id. */
  get isParked(): boolean {
    return this.#parked;
  }

  /**
   * Resolves once the run's life here ends: to its result when it ended (or to the result of the
   * stored run it gave way to), or to `PARKED` when it parked to wait for input.
   */
  ended(): Promise<RunOutcome> {
    return this.#done;
  }

  /** The result of the run as it waits (status `waiting`, `reason` as its error): for a handle once the context closed. */
  waitingResult(reason: FlowError): FlowResult {
    return { ...resultOf(this.#state, WAITING, toErrorData(reason), this.#state.clock.now()), output: undefined };
  }

  /** Resolves once the run no longer runs in this context: it ended, or parked. */
  leftContext(): Promise<void> {
    if (this.#result !== undefined || this.#parked || this.#gone) return Promise.resolve();
    return (this.#left ??= new Promise<void>((resolve) => (this.#leave = resolve)));
  }

  /** Resolves once a run that began to park is committed as waiting (at once if it is not parking). */
  parked(): Promise<void> {
    return this.#waits.parked();
  }

  /** Events with `seq > after`: those stored before this run was restored read from the store, then the live log, until it ends or parks. */
  async *eventsAfter(after: number, signal: AbortSignal | undefined): AsyncGenerator<WeirEvent, void, undefined> {
    if (this.#parked) return;
    const events = this.#state.events;
    const base = events.base;
    let last = after;
    while (last < base && signal?.aborted !== true) {
      const page = await this.#state.env.store.readEvents(this.runId, last, Math.min(1000, base - last));
      if (page.length === 0) break;
      for (const event of page) {
        yield event;
        last = event.seq;
      }
    }
    yield* events.follow(Math.max(last, base), signal);
  }

  /** Commits what the run recorded now (not when the lazy flush comes); resolves once everything so far is committed (or could not be). */
  flushed(): Promise<void> {
    return this.#state.journal.settled();
  }

  /** Begins the run: stores its record, validates the input of every entry step, then schedules the root. */
  start(): void {
    const state = this.#state;
    const settings = state.settings;
    state.status = RUNNING;
    // The context refuses an already-aborted signal before a run is made.
    settings.signal?.addEventListener('abort', this.#onAbort, { once: true });
    if (settings.timeout !== undefined) {
      const timeout = settings.timeout;
      this.#timeoutTimer = this.#state.clock.setTimer(() => {
        this.#stop(FAILED, new TimeoutError(`run "${this.runId}" exceeded its timeout of ${timeout} ms`, { code: ErrorCode.RUN_TIMEOUT, timeout }));
      }, timeout);
    }
    if (settings.restore !== undefined) {
      this.#begin(settings.restore);
      return;
    }
    const { record, event } = startOf(state, this.#waits.personInLoop);
    state.journal
      .create(record, event)
      .then(
        () => this.#begin(undefined),
        (error: FlowError) => this.#notCreated(error, event),
      );
  }

  /**
   * Marks a step of this running run done with `output`: a running attempt is stopped, and the
   * dependants go on once the output is durable.
   * @throws as `skipStep` does.
   */
  skip(name: string, output: unknown): Promise<void> {
    return skipStep(this.#state, this.#scheduler, this.#waits, name, output);
  }

  /** The concurrency key of a run taken from the queue. */
  get concurrencyKey(): string | undefined {
    return this.#state.settings.restore?.record.concurrencyKey;
  }

  /** Cancels the run: running steps see their signal abort, pending ones never start. */
  cancel(reason: CancelledError = new CancelledError(`run "${this.runId}" was cancelled`)): void {
    this.#stop(CANCELLED, reason);
  }

  /** Answers a wait of this running run (see `RunWaits.submit`). */
  submitInput(key: string, value: unknown): Promise<void> {
    return this.#waits.submit(key, value);
  }

  /** Turns the person in the loop of this hybrid run on or off (see `RunWaits.setHumanInLoop`). */
  setHumanInLoop(on: boolean): Promise<void> {
    return this.#waits.setHumanInLoop(on);
  }

  /** Another context took the run over: stop here without writing anything more. */
  leaseLost(error: FlowError): void {
    this.#halt(error, FAILED, `run "${this.runId}" was taken over by another context`);
  }

  /**
   * Stops the run here as a killed process would (`weir/testing`): nothing more is committed, no
   * timer of it fires, its steps are aborted, its lease is neither renewed nor released. Its result
   * has status `running` and `reason` as its error: in the store it stays as the last commit left it.
   */
  halt(reason: FlowError): void {
    this.#halt(reason, RUNNING, reason.message);
  }

  #halt(error: FlowError, status: typeof FAILED | typeof RUNNING, why: string): void {
    const state = this.#state;
    state.journal.stop(error);
    if (!state.live) return;
    state.status = status === RUNNING ? CANCELLED : status;
    this.#clearTimers();
    const running = [...state.running.values()];
    state.running.clear();
    for (const step of state.steps) {
      if (step.status === PENDING || step.status === RUNNING || step.status === WAITING) step.status = CANCELLED;
    }
    for (const step of running) step.abort(new CancelledError(why, { cause: error }));
    this.#settleWith(resultOf(state, status, toErrorData(error), this.#state.clock.now()));
  }

  /**
   * Stops working on the run here but leaves it running in the store, with what it completed
   * committed and its lease released, so `recover()` goes on with it at once (a context closing
   * over a durable store). Its result then has status `running` and `reason` as its error.
   */
  suspend(reason: FlowError): Promise<void> {
    const state = this.#state;
    if (!state.live) return this.#done.then(noop, noop);
    state.status = CANCELLED;
    this.#clearTimers();
    const running = takeRunning(state);
    // Not current any more, and not recorded: in the store these steps stay as they were. A step
    // whose output is being committed is left be: the wait below lets that commit land.
    state.steps.forEach((step, i) => {
      if (step.status === RUNNING && step.node.processor !== undefined && !state.isCommitting(i)) {
        step.status = PENDING;
        state.untouch(i);
      }
    });
    for (const [, step] of running) step.abort(new CancelledError(reason.message, { cause: reason }));
    const ended = this.#state.clock.now();
    return state.journal
      .settled()
      .then(() => {
        state.journal.stop(reason);
        return state.journal.releaseLease(state.env.owner);
      })
      .then(noop, (error: unknown) => process.emitWarning(`weir: run "${this.runId}": its lease could not be released: ${String(error)}`, { code: WarningCode.LEASE_RELEASE }))
      .finally(() => this.#settleWith(resultOf(state, RUNNING, toErrorData(reason), ended)));
  }

  // ---- starting ---------------------------------------------------------------------------------

  #begin(restore: RestoredRun | undefined): void {
    this.#begun = true;
    const state = this.#state;
    if (!state.live) return;
    if (restore?.cancelWith !== undefined) {
      state.journal.patchRun({ status: RUNNING, updatedAt: this.#state.clock.now() });
      // Steps that ended before keep how they ended; the rest are cancelled.
      for (const step of state.steps) if (step.kept !== undefined) step.status = step.kept;
      this.#stop(CANCELLED, restore.cancelWith);
      return;
    }
    if (restore?.reason === 'queued') {
      // Taken from the queue: the run begins here, as a started one does.
      state.emit({ type: 'run_start', flow: this.graph.root.name, mode: state.settings.mode });
      state.journal.patchRun({ status: RUNNING, updatedAt: this.#state.clock.now() });
    } else if (restore !== undefined) {
      // Its owner was lost before it stored an event (a queued run taken, then a kill): its log begins here.
      if (restore.record.lastSeq === 0) state.emit({ type: 'run_start', flow: this.graph.root.name, mode: state.settings.mode });
      const event: Mutable<Extract<EventInput, { type: 'run_resumed' }>> = { type: 'run_resumed', reason: restore.reason };
      if (restore.reason === 'recovered') event.recoveries = restore.record.recoveries;
      if (restore.from !== undefined) event.from = restore.from;
      if (restore.fallback !== undefined) event.fallback = restore.fallback;
      state.emit(event);
      state.journal.patchRun({ status: RUNNING, updatedAt: this.#state.clock.now(), endedAt: undefined, error: undefined, output: undefined });
      if (restore.failWith !== undefined) {
        this.#failUnfinished(toErrorData(restore.failWith));
        return;
      }
    }
    for (const entry of this.graph.entryLeaves) {
      try {
        validate(entry.processor!.input, this.input, `run input for flow "${entry.name}"`);
      } catch (error) {
        this.#rejectInput(entry, toErrorData(error));
        return;
      }
    }
    this.#scheduler.ready(0);
    // A restored run whose steps all still wait parks again at once.
    this.#waits.maybePark();
  }

  /** The run's record could not be stored: an id that exists, or an input that cannot be stored. */
  #notCreated(error: FlowError, runStart: WeirEvent): void {
    const state = this.#state;
    if (error.code === ErrorCode.RUN_CONFLICT) {
      state.status = CANCELLED;
      this.#clearTimers();
      state.journal.detach();
      state.events.end();
      this.#gone = true;
      this.#leave?.();
      this.#keeper.released(this);
      this.#settle(this.#keeper.adopt(this, error));
      return;
    }
    // Nothing is stored for this run: its events go to listeners only.
    state.journal.detach(runStart);
    if (!state.live) return;
    this.#failUnfinished(toErrorData(error));
  }

  /** Ends the run before any (more) step runs: every unfinished step is skipped with `error`. */
  #failUnfinished(error: ErrorData): void {
    skipUnfinished(this.#state, error, this.#state.clock.now());
    this.#finish(FAILED, error);
  }

  /** Fails a run whose input an entry step refuses. */
  #rejectInput(entry: GraphNode, error: ErrorData): void {
    refuseInput(this.#state, entry, error, this.#state.clock.now());
    this.#finish(FAILED, { ...error, step: entry.name });
  }

  // ---- stopping and ending ----------------------------------------------------------------------

  /** Ends the run early: cancel or run timeout. */
  #stop(status: typeof CANCELLED | typeof FAILED, reason: CancelledError | TimeoutError): void {
    const state = this.#state;
    if (!state.live) return;
    const data = toErrorData(reason);
    const running = stopSteps(state, data, this.#state.clock.now());
    // Abort after the statuses changed, so the attempts see they are no longer current.
    for (const [, step] of running) step.abort(reason);
    // A run that already had a failing step fails with that step's error; the timeout only stopped the rest.
    this.#finish(status, status === FAILED ? (state.runError ?? data) : data);
  }

  #clearTimers(): void {
    this.#state.clock.clearTimer(this.#timeoutTimer);
    this.#scheduler.clear();
    this.#attempts.clear();
    this.#waits.clear();
    this.#state.settings.signal?.removeEventListener('abort', this.#onAbort);
  }

  /** Ends the run: commits its end (the result counts a completion committed before it), then settles. */
  #finish(status: FlowStatus, error: ErrorData | undefined): void {
    const state = this.#state;
    if (!state.live) return;
    state.status = status;
    this.#clearTimers();
    const ended = this.#state.clock.now();
    const { patch, event } = endOf(state, status, error, ended);
    state.journal.finish(patch, event).then(
      () => this.#settleWith(resultOf(state, status, error, ended)),
      (thrown: FlowError) => {
        const result = resultOf(state, status, error, ended);
        // The run's end is not recorded: here it failed; in the store it stays running until its lease runs out and `recover()` finishes it.
        // A run that failed keeps its own error; one that completed or was cancelled fails with the store's.
        if (status === FAILED && thrown.code !== ErrorCode.LEASE_LOST) {
          this.#settleWith(result);
          return;
        }
        const data =
          thrown.code === ErrorCode.LEASE_LOST
            ? toErrorData(thrown)
            : toErrorData(new FlowError(`run "${this.runId}": its end could not be recorded: ${thrown.message}`, { code: thrown.code, cause: thrown }));
        this.#settleWith({ ...result, status: FAILED, error: data });
      },
    );
  }

  #settleWith(result: FlowResult): void {
    if (this.#result !== undefined) return;
    this.#result = result;
    this.#leave?.();
    this.#state.events.end();
    this.#keeper.released(this);
    this.#settle(result);
  }

  /** Committed as waiting: what it kept in memory is in the store; it lets go of it here. */
  #onParked(): void {
    this.#parked = true;
    this.#state.events.release();
    this.#keeper.released(this);
    this.#leave?.();
    this.#settle(PARKED);
  }
}
