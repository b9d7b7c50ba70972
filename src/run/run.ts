/**
 * One run's lifecycle: it starts (its record stored, or restored from the journal), goes on
 * through its scheduler, attempts and waits, and ends once: completed, failed or cancelled, parked
 * to wait for input, suspended by a closing context, or stopped by a lost lease. It reports to the
 * context that owns it through its `RunKeeper` only. Everything it records goes through its
 * `RunJournal`; a step's output is durable before any dependant starts.
 */
import { toErrorData, type ErrorData } from '../errors/error-data.js';
import { CancelledError, ErrorCode, FlowError, TimeoutError, UpstreamFailedError, WarningCode } from '../errors/errors.js';
import { validate } from '../executors/invoke.js';
import type { CompiledGraph, GraphNode } from '../graph/compile.js';
import { RunWaits } from '../human/waits.js';
import type { EventInput, WeirEvent } from '../model/events.js';
import type { FlowResult } from '../model/result.js';
import { FlowStatus, type RunMode } from '../model/status.js';
import type { WaitInfo } from '../model/waits.js';
import { clearTimer, now, setTimer, type TimerHandle } from '../util/clock.js';
import type { Mutable } from '../util/types.js';
import { Attempts } from './attempt.js';
import type { RunEnvironment, RunKeeper, RunSettings } from './environment.js';
import type { EventLog } from './event-log.js';
import { applyRestore, type RestoredRun } from './restored.js';
import { resultOf } from './run-result.js';
import { RunState } from './run-state.js';
import { Scheduler } from './scheduler.js';
import type { StepContext } from './step-context.js';
import type { StepRecord } from '../storage/journal/run-store.js';

const { PENDING, RUNNING, WAITING, COMPLETED, FAILED, CANCELLED, SKIPPED } = FlowStatus;

/** What `Run.ended()` gives for a run that parked to wait for input: it goes on later, here or elsewhere. */
export const PARKED: unique symbol = Symbol('weir.parked');
/** How a run's life in this context ended. */
export type RunOutcome = FlowResult | typeof PARKED;

const noop = (): void => undefined;

/**
 * Checks that `ctx.skip` may mark this step done with `output`: a leaf that has not completed, and
 * an output its processor's schema accepts.
 * @returns the output as the schema parsed it.
 * @throws FlowError `WEIR_RUN_STATE` for a composite or a completed step; ValidationError `WEIR_VALIDATION` for a bad output.
 */
export function checkSkip(node: GraphNode, runId: string, status: FlowStatus | undefined, output: unknown): unknown {
  if (node.processor === undefined) {
    throw new FlowError(`cannot skip "${node.name}" in run "${runId}": it is a composite; skip the steps in it`, { code: ErrorCode.RUN_STATE });
  }
  if (status === COMPLETED) throw new FlowError(`cannot skip "${node.name}" in run "${runId}": it completed`, { code: ErrorCode.RUN_STATE });
  return validate(node.processor.output, output, `ctx.skip: the output given for flow "${node.name}"`);
}

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
    return { ...resultOf(this.#state, WAITING, toErrorData(reason), now()), output: undefined };
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

  /** What the run's steps wait on now. */
  waitingFor(): WaitInfo[] {
    return this.#waits.waitingFor();
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

  /** Resolves once everything the run recorded so far is committed (or could not be). */
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
      this.#timeoutTimer = setTimer(() => {
        this.#stop(FAILED, new TimeoutError(`run "${this.runId}" exceeded its timeout of ${timeout} ms`, { code: ErrorCode.RUN_TIMEOUT, timeout }));
      }, timeout);
    }
    if (settings.restore !== undefined) {
      this.#begin(settings.restore);
      return;
    }
    const { owner, leaseMs } = state.env;
    const created = state.startTime;
    const event: WeirEvent = { type: 'run_start', runId: this.runId, seq: state.journal.nextSeq(), time: created, flow: this.graph.root.name, mode: settings.mode };
    state.journal
      .create(
        {
          runId: this.runId,
          flow: this.graph.root.name,
          fingerprint: this.graph.fingerprint,
          input: this.input,
          mode: settings.mode,
          humanInLoop: this.#waits.personInLoop,
          status: RUNNING,
          createdAt: created,
          updatedAt: created,
          owner,
          leaseExpiresAt: created + leaseMs,
          ...(settings.retryOf === undefined ? {} : { retryOf: settings.retryOf }),
        },
        event,
      )
      .then(
        () => this.#begin(undefined),
        (error: FlowError) => this.#notCreated(error, event),
      );
  }

  /**
   * Marks a step of this running run done with `output`: a running attempt is stopped, and the
   * dependants go on once the output is durable.
   * @throws as `checkSkip` does.
   */
  async skip(name: string, output: unknown): Promise<void> {
    const state = this.#state;
    const node = this.graph.byName.get(name);
    if (node === undefined || (node.index === 0 && node.processor === undefined)) {
      throw new FlowError(`run "${this.runId}" has no step "${name}"`, { code: ErrorCode.INVALID_OPTIONS });
    }
    const index = node.index;
    const s = state.steps[index]!;
    const value = checkSkip(node, this.runId, s.status, output);
    if (!state.live) throw new FlowError(`cannot skip "${name}": run "${this.runId}" has ended`, { code: ErrorCode.RUN_STATE });
    const before = s.status;
    if (before !== PENDING && before !== RUNNING && before !== WAITING) {
      throw new FlowError(`cannot skip "${name}" in run "${this.runId}": it has ended (${before}) and its end was passed on; skip it once the run has ended, then resume the run`, {
        code: ErrorCode.RUN_STATE,
      });
    }
    if (state.committing.has(index)) {
      throw new FlowError(`cannot skip "${name}" in run "${this.runId}": its output is being recorded`, { code: ErrorCode.RUN_STATE });
    }
    const wasReadied = s.readied;
    const ended = now();
    const step = state.running.get(index);
    state.running.delete(index);
    if (step !== undefined) {
      const reason = new CancelledError(`flow "${name}" was skipped by ctx.skip`);
      s.attempts.push({ attempt: s.attempts.length + 1, startTime: s.attemptStarted, endTime: ended, duration: ended - s.attemptStarted, error: toErrorData(reason) });
      s.status = CANCELLED;
      step.abort(reason);
    }
    this.#scheduler.cancelTimer(index);
    this.#waits.drop(index);
    s.status = RUNNING;
    // Not current for any attempt: a late result of the stopped attempt is ignored.
    s.readied = true;
    state.untouch(index);
    state.committing.add(index);
    try {
      await state.journal.complete(
        { runId: this.runId, step: name, status: COMPLETED, attempts: s.attempts.slice(), ...(s.startTime === undefined ? {} : { startTime: s.startTime }), endTime: ended, hasOutput: true, updatedAt: ended },
        value,
        { type: 'step_complete', runId: this.runId, seq: state.journal.nextSeq(), time: ended, step: name, attempt: s.attempts.length, duration: 0, skipped: true },
      );
    } catch (error) {
      // Not recorded: the step goes back to waiting for its turn (a stopped attempt counts as a cancelled one).
      if (state.live && s.status === RUNNING) {
        s.status = PENDING;
        s.readied = wasReadied;
        state.touch(index);
        if (wasReadied) this.#scheduler.schedule(index);
      }
      throw error;
    } finally {
      state.committing.delete(index);
    }
    if (s.status !== RUNNING) return;
    s.output = value;
    this.#scheduler.finish(index, COMPLETED, ended);
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
    const state = this.#state;
    state.journal.stop(error);
    if (!state.live) return;
    state.status = FAILED;
    this.#clearTimers();
    const running = [...state.running.values()];
    state.running.clear();
    for (const step of state.steps) {
      if (step.status === PENDING || step.status === RUNNING || step.status === WAITING) step.status = CANCELLED;
    }
    for (const step of running) step.abort(new CancelledError(`run "${this.runId}" was taken over by another context`, { cause: error }));
    this.#settleWith(resultOf(state, FAILED, toErrorData(error), now()));
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
    const running = this.#takeRunning();
    // Not current any more, and not recorded: in the store these steps stay as they were. A step
    // whose output is being committed is left be: the wait below lets that commit land.
    state.steps.forEach((step, i) => {
      if (step.status === RUNNING && step.node.processor !== undefined && !state.committing.has(i)) {
        step.status = PENDING;
        state.untouch(i);
      }
    });
    for (const [, step] of running) step.abort(new CancelledError(reason.message, { cause: reason }));
    const ended = now();
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
    const state = this.#state;
    if (!state.live) return;
    if (restore?.cancelWith !== undefined) {
      state.journal.patchRun({ status: RUNNING, updatedAt: now() });
      // Steps that ended before keep how they ended; the rest are cancelled.
      for (const step of state.steps) if (step.kept !== undefined) step.status = step.kept;
      this.#stop(CANCELLED, restore.cancelWith);
      return;
    }
    if (restore !== undefined) {
      const event: Mutable<Extract<EventInput, { type: 'run_resumed' }>> = { type: 'run_resumed', reason: restore.reason };
      if (restore.reason === 'recovered') event.recoveries = restore.record.recoveries;
      if (restore.from !== undefined) event.from = restore.from;
      if (restore.fallback !== undefined) event.fallback = restore.fallback;
      state.emit(event);
      state.journal.patchRun({ status: RUNNING, updatedAt: now(), endedAt: undefined, error: undefined, output: undefined });
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
    const state = this.#state;
    const ended = now();
    state.steps.forEach((step, i) => {
      if (step.kept === COMPLETED) {
        step.status = COMPLETED;
        return;
      }
      step.status = SKIPPED;
      step.error = error;
      step.endTime = ended;
      state.touch(i);
    });
    this.#finish(FAILED, error);
  }

  /** Fails a run whose input an entry step refuses: that step failed, its composites with it, every other step skipped. */
  #rejectInput(entry: GraphNode, error: ErrorData): void {
    const state = this.#state;
    const ended = now();
    const skipped = toErrorData(new UpstreamFailedError(`skipped because the run's input failed validation for flow "${entry.name}"`, { upstream: entry.name }));
    for (const step of state.steps) {
      step.status = SKIPPED;
      step.error = skipped;
      step.culprit = entry.name;
      step.endTime = ended;
    }
    for (let i = entry.index; i !== -1; i = this.graph.nodes[i]!.parent) {
      state.steps[i]!.status = FAILED;
      state.steps[i]!.error = error;
    }
    for (let i = 0; i < state.steps.length; i++) state.touch(i);
    this.#finish(FAILED, { ...error, step: entry.name });
  }

  // ---- stopping and ending ----------------------------------------------------------------------

  /** Takes the running attempts out, to stop them; a step whose output is being committed is left be: it completes once that commit lands. */
  #takeRunning(): [index: number, step: StepContext][] {
    const state = this.#state;
    const running = [...state.running].filter(([index]) => !state.committing.has(index));
    for (const [index] of running) state.running.delete(index);
    return running;
  }

  /** Ends the run early: cancel or run timeout. */
  #stop(status: typeof CANCELLED | typeof FAILED, reason: CancelledError | TimeoutError): void {
    const state = this.#state;
    if (!state.live) return;
    const data = toErrorData(reason);
    const ended = now();
    const running = this.#takeRunning();
    for (const [index] of running) this.#cancelStep(index, data, ended);
    state.steps.forEach((step, i) => {
      if (state.committing.has(i)) return;
      if (step.status === PENDING && step.attempts.length > step.attemptBase) {
        // Between attempts (waiting on backoff or back in the queue): it did start, so it is reported.
        this.#cancelStep(i, data, ended);
      } else if (step.status === PENDING || step.status === RUNNING || step.status === WAITING) {
        step.status = CANCELLED;
        step.endTime = ended;
        state.touch(i);
      }
    });
    // Abort after the statuses changed, so the attempts see they are no longer current.
    for (const [, step] of running) step.abort(reason);
    // A run that already had a failing step fails with that step's error; the timeout only stopped the rest.
    this.#finish(status, status === FAILED ? (state.runError ?? data) : data);
  }

  #cancelStep(index: number, data: ErrorData, ended: number): void {
    const state = this.#state;
    const step = state.steps[index]!;
    const attempts = step.attempts;
    if (step.status === RUNNING) {
      attempts.push({ attempt: attempts.length + 1, startTime: step.attemptStarted, endTime: ended, duration: ended - step.attemptStarted, error: data });
    }
    step.status = CANCELLED;
    step.error = data;
    step.endTime = ended;
    state.emit({ type: 'step_cancelled', step: step.node.name, attempt: attempts.length, error: data });
    state.touch(index);
  }

  #clearTimers(): void {
    clearTimer(this.#timeoutTimer);
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
    const ended = now();
    const duration = ended - state.startTime;
    const seq = state.journal.nextSeq();
    const event: WeirEvent =
      status === COMPLETED
        ? { type: 'run_complete', runId: this.runId, seq, time: ended, duration }
        : status === CANCELLED
          ? { type: 'run_cancelled', runId: this.runId, seq, time: ended, duration, error: error! }
          : { type: 'run_failed', runId: this.runId, seq, time: ended, duration, error: error! };
    const root = state.steps[0]!;
    const patch = {
      status,
      updatedAt: ended,
      endedAt: ended,
      ranBy: state.env.processId,
      error,
      // A composite's output is its children's, already stored with them.
      output: this.graph.root.processor !== undefined && status === COMPLETED ? root.output : undefined,
    };
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
