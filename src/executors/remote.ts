/**
 * What the thread and process executors share on the main thread: building the task, carrying the
 * step's events back to its `Step`, stopping a worker on abort, and telling crashes from failures.
 */
import { messageOf } from '../util/message-of.js';
import { fromErrorData, toErrorData } from '../errors/error-data.js';
import { CancelledError, ErrorCode, FatalError, FlowError, WarningCode } from '../errors/errors.js';
import type { Processor, Step } from '../model/processor.js';
import { clearTimer, setTimer, type TimerHandle } from '../util/clock.js';
import type { ExecutionRequest, Executor } from './executor.js';
import { locateProcessor, locationOf, processorRef, type ProcessorLocation } from './locate.js';
import type { AbortTaskMessage, DepsReplyMessage, ResultMessage, RunTaskMessage, TaskEvent } from './protocol.js';
import type { Mutable } from '../util/types.js';


/** How a pool hears that a task must be stopped by force: cheaper than an AbortSignal per task. */
export interface KillSwitch {
  readonly killed: boolean;
  readonly reason: unknown;
  /** Sets the one callback run when the task is killed (`undefined` clears it); it is given the task's control. */
  onKill(callback: ((control: TaskControl) => void) | undefined): void;
}

/** What a pool is given with a task: how to stop it, and how to say that its processor starts. */
export interface TaskControl extends KillSwitch {
  /** The task's id (`RunTaskMessage.id`). */
  readonly id: number;
  /** The processor's `module#exportName`, to tell a worker that has loaded it from one that has not. */
  readonly key: string;
  /** True when the step has a timeout, which counts from `started()`; else nobody needs to hear of it. */
  readonly wantsStart: boolean;
  /** The attempt was stopped (aborted: a timeout, a cancel, the executor closing); its answer no longer counts. */
  readonly stopped: boolean;
  /**
   * The processor starts now: called by the pool when it hands the task to a worker known to have the
   * module loaded, else on the worker's `started` message (the task is then sent with `notify`).
   */
  started(): void;
}

/** One attempt in flight: its step, the events received so far, and how to stop it. */
class Attempt implements TaskControl {
  received = 0;
  stopped = false;
  killed = false;
  reason: unknown;
  graceTimer: TimerHandle | undefined;
  #onKill: ((control: TaskControl) => void) | undefined;
  #done = false;
  #settled: (() => void) | undefined;
  #expected = Infinity;
  #drained: (() => void) | undefined;
  readonly inputs: ExecutionRequest['inputs'];
  readonly wantsStart: boolean;
  /** The step was aborted: stop its worker. */
  readonly abort: (reason: unknown) => void;
  #onStart: (() => void) | undefined;

  constructor(
    readonly id: number,
    readonly key: string,
    readonly step: Step,
    readonly executor: RemoteExecutor,
    request: ExecutionRequest,
  ) {
    this.inputs = request.inputs;
    this.#onStart = request.started;
    this.wantsStart = request.started !== undefined;
    // Assigned, not a class field: tsx (keepNames) would name a field's arrow function on every attempt.
    this.abort = (reason) => executor.stopAttempt(this, reason);
  }

  started(): void {
    const onStart = this.#onStart;
    if (onStart === undefined || this.stopped) return;
    this.#onStart = undefined;
    onStart();
  }

  onKill(callback: ((control: TaskControl) => void) | undefined): void {
    this.#onKill = callback;
  }

  kill(): void {
    if (this.killed) return;
    this.killed = true;
    this.#onKill?.(this);
  }

  /** Called once `execute` is done with the attempt. */
  settle(): void {
    this.#done = true;
    this.#settled?.();
  }

  /** Resolves when `execute` is done with the attempt. */
  settled(): Promise<void> {
    return this.#done ? Promise.resolve() : new Promise((resolve) => (this.#settled = resolve));
  }

  /** Resolves once `count` events have arrived (they travel apart from the result), or the attempt is stopped. */
  drained(count: number): Promise<void> {
    if (this.received >= count || this.stopped) return Promise.resolve();
    this.#expected = count;
    return new Promise((resolve) => (this.#drained = resolve));
  }

  noteEvent(): void {
    if (++this.received >= this.#expected) this.#drained?.();
  }

  stop(): void {
    this.stopped = true;
    this.#drained?.();
  }
}

/** The main-thread half of an executor that runs processors in another thread or process. */
export abstract class RemoteExecutor implements Executor {
  /** `thread` or `process`, for messages. */
  protected abstract readonly type: 'thread' | 'process';
  /** How long an aborted attempt may take to stop by itself before its worker is ended, in ms. */
  protected abstract readonly abortGrace: number;
  readonly #attempts = new Map<number, Attempt>();
  #nextId = 1;
  #closed = false;

  /** Hands a task to the pool, which calls `control.started()` as its processor starts; rejects when its worker dies, or once the task is killed. */
  protected abstract dispatch(task: RunTaskMessage, control: TaskControl): Promise<ResultMessage>;
  /** Sends a message to the worker running the task it names; false when the task is known not to be running. */
  protected abstract post(message: AbortTaskMessage | DepsReplyMessage): boolean;
  /** Ends every worker. */
  protected abstract shutdown(): Promise<void>;
  /** The error for an attempt whose worker died under it. */
  protected abstract crashed(step: Step, error: unknown): FlowError;

  /** Checks at registration that a worker can find and rebuild `processor`. */
  prepare(processor: Processor, where: string): void {
    locateProcessor(processor, where, this.type);
  }

  async execute(request: ExecutionRequest): Promise<unknown> {
    const { step, abort } = request;
    if (this.#closed) throw new FlowError(`flow "${step.name}": the ${this.type} executor is closed`, { code: ErrorCode.CONTEXT_CLOSED });
    // The abort hook, not step.signal: reading the signal would make an AbortController per step.
    if (abort.aborted) throw abort.abortReason;
    // Checked at registration; an uncloneable field set since then fails the send as WEIR_SERIALIZATION.
    const location = locationOf(request.processor) ?? locateProcessor(request.processor, `flow "${step.name}"`, this.type);
    // Only an answer already known: waiting could wait on the module that is awaiting this very run.
    if (location.problem !== undefined) throw new FatalError(`flow "${step.name}": ${location.problem}`, { code: ErrorCode.PROCESSOR_EXPORT });
    const deps = request.deps.dependencyOutputs();
    const id = this.#nextId++;
    const task = this.#task(id, request, location, deps);
    const attempt = new Attempt(id, location.key, step, this, request);
    this.#attempts.set(id, attempt);
    abort.onAbort(attempt.abort);
    try {
      let result: ResultMessage;
      try {
        result = await this.dispatch(task, attempt);
      } catch (error) {
        if (attempt.stopped) throw attempt.reason;
        if (error instanceof FlowError) throw error;
        if ((error as { name?: unknown }).name === 'DataCloneError') {
          throw new FlowError(`flow "${step.name}": its input or dependency outputs cannot be structured-cloned to a ${this.type} worker: ${String(error)}`, {
            code: ErrorCode.SERIALIZATION,
            cause: error,
          });
        }
        throw this.crashed(step, error);
      }
      // Events travel apart from the result; most steps send none, and then there is nothing to wait for.
      if (result.events !== undefined && result.events > attempt.received) await attempt.drained(result.events);
      if (result.ok) return result.value;
      // A stopped attempt may be answered without having run (see `markAborted`): it ends as it was stopped.
      if (attempt.stopped) throw attempt.reason;
      throw fromErrorData(result.error);
    } finally {
      abort.offAbort(attempt.abort);
      clearTimer(attempt.graceTimer);
      this.#attempts.delete(id);
      attempt.settle();
    }
  }

  /** The task message, with the fields at their usual value left out: it is copied on every dispatch. */
  #task(id: number, request: ExecutionRequest, location: ProcessorLocation, deps: Readonly<Record<string, unknown>>): RunTaskMessage {
    const { step } = request;
    const task: Mutable<RunTaskMessage> = {
      id,
      processor: processorRef(location, request.processor),
      input: request.input,
      name: step.name,
      runId: step.runId,
      attempt: step.attempt,
    };
    for (const _ in deps) {
      task.deps = deps;
      break;
    }
    const inputs = request.inputs;
    if (inputs !== undefined) {
      if (inputs.waits) task.waits = true;
      if (inputs.answers !== undefined) task.answers = inputs.answers;
    }
    return task;
  }

  /** Ends running attempts (abort, then the grace period, then the worker), waits for them, and ends the pool. */
  async close(): Promise<void> {
    this.#closed = true;
    const attempts = [...this.#attempts.values()];
    for (const attempt of attempts) this.stopAttempt(attempt, new CancelledError(`the ${this.type} executor was closed`));
    await Promise.all(attempts.map((attempt) => attempt.settled()));
    await this.shutdown();
  }

  /** The abort messages of attempts stopped but not yet settled, for a worker that was not listening yet. */
  protected pendingAborts(): AbortTaskMessage[] {
    const messages: AbortTaskMessage[] = [];
    for (const attempt of this.#attempts.values()) {
      if (attempt.stopped) messages.push({ type: 'abort', id: attempt.id, reason: toErrorData(attempt.reason) });
    }
    return messages;
  }

  /** Routes an event from a worker to its attempt's step. */
  protected onEvent(message: TaskEvent): void {
    const attempt = this.#attempts.get(message.id);
    if (attempt === undefined) return;
    // Not a step event: the result does not count it.
    if (message.type === 'started') return attempt.started();
    attempt.noteEvent();
    const step = attempt.step;
    switch (message.type) {
      case 'progress':
        step.progress(message.fraction, message.message);
        break;
      case 'heartbeat':
        try {
          step.heartbeat(message.details);
        } catch (error) {
          // Details the store cannot keep: the heartbeat still counts, without them.
          process.emitWarning(`weir: flow "${step.name}": heartbeat details dropped: ${messageOf(error)}`, { code: WarningCode.HEARTBEAT_DETAILS });
          step.heartbeat(undefined);
        }
        break;
      case 'ask':
        attempt.inputs?.wait(message.ask);
        break;
      case 'deps-get':
        step.deps.get(message.name).then(
          (value) => this.post({ type: 'deps-reply', id: message.id, call: message.call, value }),
          (error: unknown) => this.post({ type: 'deps-reply', id: message.id, call: message.call, error: toErrorData(error) }),
        );
        break;
    }
  }

  /** Aborts the worker's `step.signal` now and ends the worker after the grace period. @internal */
  stopAttempt(attempt: Attempt, reason: unknown): void {
    if (attempt.stopped) return;
    attempt.reason = reason;
    attempt.stop();
    // A task still queued has nothing to wind down: it is dropped at once.
    if (!this.post({ type: 'abort', id: attempt.id, reason: toErrorData(reason) })) attempt.kill();
    else attempt.graceTimer = setTimer(() => attempt.kill(), this.abortGrace);
  }
}
