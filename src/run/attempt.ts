/**
 * One attempt of a leaf: its step context, the executor call bounded by the step's timeout and
 * heartbeat timeout, the commit of its output, and on failure the retry decision (backoff, or the
 * step fails for good). It is also what a step context reports to (`StepHost`).
 */
import { toErrorData } from '../errors/error-data.js';
import { ErrorCode, FatalError, TimeoutError } from '../errors/errors.js';
import type { InputAnswer } from '../executors/executor.js';
import type { GraphNode } from '../graph/compile.js';
import { validate } from '../executors/invoke.js';
import type { ProcessDouble } from './environment.js';
import { isInputWaitSignal, type InputAsk } from '../human/ask.js';
import type { AnySchema } from '../model/processor.js';
import { backoffDelay, isRetryable } from '../model/retry-policy.js';
import { FlowStatus, FlowType } from '../model/status.js';
import type { InputEntry } from '../model/waits.js';
import type { WeirEvent } from '../model/events.js';
import type { StepRecord } from '../storage/journal/run-store.js';
import type { Mutable } from '../util/types.js';
import { clearRealTimer, setRealTimer, type TimerHandle } from '../util/clock.js';
import type { RunState } from './run-state.js';
import type { Scheduler } from './scheduler.js';
import { StepContext, type StepHost } from './step-context.js';
import { StepTimers } from './step-timers.js';
import type { StepState } from './step-state.js';

const { PENDING, RUNNING, COMPLETED, FAILED } = FlowStatus;
const { INLINE } = FlowType;
/** How long, in real ms, a step on a virtual clock may wait for its worker to start its processor. */
const VIRTUAL_START_LIMIT = 30_000;

/** What attempts need of the run's waits for input. */
export interface AttemptWaits {
  /** Whether an unanswered ask waits for a person now. */
  readonly personInLoop: boolean;
  answer(key: string): InputEntry | undefined;
  answers(): Readonly<Record<string, InputAnswer>> | undefined;
  /** Records an ask of the current attempt that waits. */
  ask(index: number, attempt: number, ask: InputAsk, schema: AnySchema | undefined): void;
  /** The attempt ended to wait: the step waits, holding no slot. */
  enterWaiting(index: number, attempt: number, started: number): void;
}

/** Runs a run's attempts, and hears what they report. */
export class Attempts implements StepHost {
  readonly runId: string;
  readonly #state: RunState;
  readonly #scheduler: Scheduler;
  readonly #waits: AttemptWaits;
  /** Heartbeat deadlines of running attempts, by step index. */
  readonly #heartbeats: StepTimers;

  constructor(state: RunState, scheduler: Scheduler, waits: AttemptWaits) {
    this.runId = state.runId;
    this.#state = state;
    this.#heartbeats = new StepTimers(state.clock);
    this.#scheduler = scheduler;
    this.#waits = waits;
  }

  /** Runs the next attempt of leaf `index`, in a queue slot; settles once the attempt is over here. */
  async run(index: number): Promise<void> {
    const state = this.#state;
    const s = state.steps[index]!;
    if (s.status !== PENDING || !state.live) return;
    const node = s.node;
    const attempt = s.attempts.length + 1;
    const started = state.clock.now();
    s.status = RUNNING;
    s.attemptStarted = started;
    s.retryAt = undefined;
    s.waits = undefined;
    if (s.startTime === undefined) s.startTime = started;
    const step = new StepContext(this, index, node.name, attempt, node.dependencyNames);
    state.running.set(index, step);
    state.journal.append({ type: 'step_start', runId: this.runId, seq: state.journal.nextSeq(), time: started, step: node.name, attempt });
    state.touch(index);
    // The step's timeouts count from the processor's start, not a worker's start-up before it; a worker's start-up is counted in `starting`.
    // An untimed inline attempt (the common case) needs none of it, and allocates none of it.
    const timers = node.timeout !== undefined || node.heartbeatTimeout !== undefined || (node.type !== INLINE && state.env.trackStarts) ? new AttemptTimers(this, index, attempt, step) : undefined;
    try {
      // A listener of step_start may have cancelled the run: then the processor never runs.
      if (!state.isCurrent(index, attempt)) return;
      const double = state.env.doubles?.take(node.name, attempt);
      const onStart = timers?.started;
      const pending =
        double === undefined
          ? state.env.executors.get(node.type)!.execute({ processor: node.processor!, input: s.input, step, abort: step, deps: step, inputs: step, started: onStart })
          : runDouble(node, double, s.input, step, onStart);
      timers?.guardStart();
      // An abort (timeout or cancel) ends the wait even when the processor ignores its signal, so the slot is freed.
      const output = await step.race(pending);
      timers?.stop();
      if (!state.isCurrent(index, attempt)) return;
      const ended = state.clock.now();
      const entry = { attempt, startTime: started, endTime: ended, duration: ended - started };
      // Most steps complete on their first attempt: no spread (it goes through the iterator protocol).
      const attempts = s.attempts.length === 0 ? [entry] : [...s.attempts, entry];
      const record: Mutable<StepRecord> = { runId: this.runId, step: node.name, status: COMPLETED, attempts, startTime: s.startTime, endTime: ended, hasOutput: true, updatedAt: ended };
      if (s.progress !== undefined) record.progress = s.progress;
      // The output, the step's record and its step_complete are one commit; dependants start once it is durable.
      state.untouch(index);
      state.commitBegan(index);
      const completed: WeirEvent = { type: 'step_complete', runId: this.runId, seq: state.journal.nextSeq(), time: ended, step: node.name, attempt, duration: ended - started };
      // Only on its last attempt: a store failure of its completion then fails it for good, as it would alone, and
      // a step with attempts left keeps them for such a failure.
      if (attempt - s.attemptBase >= node.retry.maxAttempts && this.#scheduler.completionEndsRun(index) && state.journal.mayJoinEnd(output)) {
        await this.#completeLast(index, record, attempts, output, completed);
        return;
      }
      const durable = state.journal.complete(record, output, completed);
      // A store that commits at once (memory) leaves nothing to wait for.
      if (durable !== undefined) await durable;
      state.commitEnded(index);
      // Durable: it completed, even if the run was stopped meanwhile (a stop leaves committing steps be).
      if (!state.isCurrent(index, attempt)) return;
      s.attempts = attempts;
      s.output = output;
      this.#scheduler.finish(index, COMPLETED, ended);
    } catch (error) {
      state.commitEnded(index);
      if (!state.isCurrent(index, attempt)) return;
      if (isInputWaitSignal(error) && s.waits !== undefined) {
        this.#waits.enterWaiting(index, attempt, started);
        return;
      }
      this.#failed(node, attempt, started, error);
    } finally {
      timers?.stop();
      if (state.running.get(index) === step) state.running.delete(index);
    }
  }

  /**
   * Completes the step whose completion ends the run, on its last attempt: no step depends on it,
   * so the run ends at once, and its end rides on the same commit (`RunJournal.completeEnding`):
   * one commit, not two. If that commit fails, neither is stored: the step failed here (with the
   * store's error), and the run stays as the store has it, running, for `recover()`.
   */
  async #completeLast(index: number, record: StepRecord, attempts: StepState['attempts'], output: unknown, completed: WeirEvent): Promise<void> {
    const state = this.#state;
    const s = state.steps[index]!;
    const durable = state.journal.completeEnding(record, output, completed);
    const before = s.attempts;
    s.attempts = attempts;
    s.output = output;
    this.#scheduler.finish(index, COMPLETED, record.endTime!);
    state.journal.release();
    try {
      await durable;
    } catch (error) {
      // Told before the run's end is, so the run's result shows the step as the store has it: not done.
      s.attempts = before;
      s.output = undefined;
      s.status = FAILED;
      s.error = toErrorData(error);
    } finally {
      state.commitEnded(index);
    }
  }

  /** The run's state, for the timers of its attempts. @internal */
  get state(): RunState {
    return this.#state;
  }

  /** (Re)starts the wait for the next heartbeat of a step's current attempt. @internal */
  armHeartbeat(index: number, attempt: number): void {
    this.#armHeartbeat(index, attempt);
  }

  /** Stops waiting for a step's heartbeats. @internal */
  disarmHeartbeat(index: number): void {
    this.#disarmHeartbeat(index);
  }

  /** Drops every heartbeat deadline: the run has stopped here. */
  clear(): void {
    this.#heartbeats.clear();
  }

  /** (Re)starts the wait for the next heartbeat of a step's current attempt. */
  #armHeartbeat(index: number, attempt: number): void {
    const node = this.#state.graph.nodes[index]!;
    const limit = node.heartbeatTimeout;
    if (limit === undefined) return;
    this.#heartbeats.set(index, limit, () => {
      if (!this.#state.isCurrent(index, attempt)) return;
      this.#state.running.get(index)?.abort(new TimeoutError(`flow "${node.name}": attempt ${attempt} sent no heartbeat for ${limit} ms`, { timeout: limit }));
    });
  }

  #disarmHeartbeat(index: number): void {
    this.#heartbeats.delete(index);
  }

  /** An attempt failed: the step is tried again after its backoff, or fails for good. */
  #failed(node: GraphNode, attempt: number, started: number, thrown: unknown): void {
    const state = this.#state;
    const ended = this.#state.clock.now();
    const policy = node.retry;
    const index = node.index;
    const s = state.steps[index]!;
    // The policy counts the attempts of this run of the step: a resume or a recovery starts afresh.
    const counted = attempt - s.attemptBase;
    let error = thrown;
    let retryable: boolean;
    try {
      retryable = isRetryable(policy, error, counted);
    } catch (predicateError) {
      const original = toErrorData(thrown);
      error = new FatalError(`flow "${node.name}": retryOn threw while classifying ${original.name}: ${original.message}`, {
        code: ErrorCode.INVALID_CONFIG,
        cause: predicateError,
      });
      retryable = false;
    }
    const data = toErrorData(error);
    s.attempts.push({ attempt, startTime: started, endTime: ended, duration: ended - started, error: data });
    if (retryable) {
      const delay = backoffDelay(policy, counted);
      s.status = PENDING;
      s.retryAt = ended + delay;
      state.emit({
        type: 'step_retry',
        step: node.name,
        attempt,
        maxAttempts: policy.maxAttempts,
        delay,
        error: data,
        message: `will retry in ${delay} ms (attempt ${counted + 1} of ${policy.maxAttempts})`,
      });
      state.touch(index);
      this.#scheduler.after(index, delay);
      return;
    }
    s.error = data;
    s.culprit = node.name;
    s.status = FAILED;
    s.endTime = ended;
    state.emit({ type: 'step_failed', step: node.name, attempt, error: data });
    state.touch(index);
    this.#scheduler.noteFailure(node, data);
    this.#scheduler.finish(index, FAILED, ended);
  }

  // ---- StepHost: what a step context reports ---------------------------------------------------

  /** A dependency's output: kept in memory once durable (or read back from the journal on restore). */
  dependencyOutput(index: number): unknown {
    const step = this.#state.steps[index]!;
    return step.status === COMPLETED ? step.output : undefined;
  }

  progress(index: number, attempt: number, fraction: number, message: string | undefined): void {
    const state = this.#state;
    if (!state.isCurrent(index, attempt)) return;
    const step = state.graph.nodes[index]!.name;
    state.steps[index]!.progress = message === undefined ? { fraction } : { fraction, message };
    state.emit(message === undefined ? { type: 'step_progress', step, attempt, progress: fraction } : { type: 'step_progress', step, attempt, progress: fraction, message });
    state.touch(index);
  }

  /**
   * @throws FlowError `WEIR_SERIALIZATION` when the store cannot store `details` (the event
   * would otherwise hold back every later commit of the run).
   */
  heartbeat(index: number, attempt: number, details: unknown): void {
    const state = this.#state;
    if (!state.isCurrent(index, attempt)) return;
    const step = state.graph.nodes[index]!.name;
    if (details !== undefined) state.env.store.checkStorable(details, `heartbeat details of flow ${step}`);
    this.#armHeartbeat(index, attempt);
    state.emit(details === undefined ? { type: 'step_heartbeat', step, attempt } : { type: 'step_heartbeat', step, attempt, details });
  }

  get personInLoop(): boolean {
    return this.#waits.personInLoop;
  }

  inputAnswer(key: string): InputEntry | undefined {
    return this.#waits.answer(key);
  }

  inputAnswers(): Readonly<Record<string, InputAnswer>> | undefined {
    return this.#waits.answers();
  }

  inputWait(index: number, attempt: number, ask: InputAsk, schema: AnySchema | undefined): void {
    this.#waits.ask(index, attempt, ask, schema);
  }
}

/**
 * The timers of one attempt that has a timeout or heartbeat timeout, or whose worker's start-up a
 * virtual clock must see: they count from the processor's start (`started`), and until then a
 * limit of their own bounds the wait for a slot, a worker or its module.
 */
class AttemptTimers {
  readonly #attempts: Attempts;
  readonly #index: number;
  readonly #attempt: number;
  readonly #step: StepContext;
  #timer: TimerHandle | undefined;
  #startGuard: TimerHandle | undefined;
  /** Set once the processor has started, or the attempt is over: a late start arms nothing. */
  #begun = false;

  constructor(attempts: Attempts, index: number, attempt: number, step: StepContext) {
    this.#attempts = attempts;
    this.#index = index;
    this.#attempt = attempt;
    this.#step = step;
    attempts.state.starting++;
  }

  /** Called by the executor once the processor starts: the step's own timeouts begin. */
  readonly started = (): void => {
    if (this.#begun) return;
    this.#begun = true;
    const state = this.#attempts.state;
    state.starting--;
    clearRealTimer(this.#startGuard);
    const node = state.graph.nodes[this.#index]!;
    if (node.timeout !== undefined) {
      const timeout = node.timeout;
      const attempt = this.#attempt;
      this.#timer = state.clock.setTimer(() => {
        this.#step.abort(new TimeoutError(`flow "${node.name}": attempt ${attempt} exceeded its timeout of ${timeout} ms`, { timeout }));
      }, timeout);
    }
    if (node.heartbeatTimeout !== undefined) this.#attempts.armHeartbeat(this.#index, this.#attempt);
  };

  /**
   * Bounds the wait for the processor's start by the step's limit, so a module that never loads
   * still fails the attempt. On the real clock: start-up takes real time, which fake timers in
   * tests must not see. On a virtual clock (a test kit's) the step's limit is virtual time: the real
   * wait gets a limit of its own.
   */
  guardStart(): void {
    if (this.#begun) return;
    const state = this.#attempts.state;
    const node = state.graph.nodes[this.#index]!;
    const limit = state.env.trackStarts ? VIRTUAL_START_LIMIT : (node.timeout ?? node.heartbeatTimeout!);
    const attempt = this.#attempt;
    this.#startGuard = setRealTimer(() => {
      this.#step.abort(
        new TimeoutError(
          `flow "${node.name}": attempt ${attempt} did not start within ${limit} ms (waiting for a free worker, for one to start, or for it to load the processor's module)`,
          { timeout: limit },
        ),
      );
    }, limit);
  }

  /** The attempt is over here: no timer of it is left. Idempotent. */
  stop(): void {
    const state = this.#attempts.state;
    if (!this.#begun) state.starting--;
    this.#begun = true;
    clearRealTimer(this.#startGuard);
    state.clock.clearTimer(this.#timer);
    this.#timer = undefined;
    this.#attempts.disarmHeartbeat(this.#index);
  }
}

/** Runs a test double in place of a step's processor: the same input and output validation, on the event loop. */
async function runDouble(node: GraphNode, double: ProcessDouble, input: unknown, step: StepContext, started: (() => void) | undefined): Promise<unknown> {
  started?.();
  const processor = node.processor!;
  const parsed = validate(processor.input, input, `flow "${node.name}": input`);
  const output = await double(parsed, step);
  return validate(processor.output, output, `flow "${node.name}": output of its test double`);
}
