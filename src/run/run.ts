/**
 * The scheduler of one run: readiness counting over the compiled graph, attempts through the
 * executors, retry with backoff, timeouts, failure propagation, cancellation and the event log.
 */
import type PQueue from 'p-queue';
import { type ErrorData, toErrorData } from '../error-data.js';
import { CancelledError, ErrorCode, FatalError, TimeoutError, UpstreamFailedError } from '../errors.js';
import type { EventInput, WeirEvent } from '../events.js';
import type { Executor } from '../executors/executor.js';
import { validate } from '../executors/invoke.js';
import type { CompiledGraph, GraphNode } from '../graph/compile.js';
import type { AttemptRecord, FlowResult, StepResult } from '../result.js';
import { FlowStatus, type RunMode } from '../status.js';
import { clearTimer, now, setTimer, type TimerHandle } from '../util/clock.js';
import { DrainQueue } from '../util/drain-queue.js';
import { backoffDelay, isRetryable } from './retry.js';
import { StepContext, type StepHost } from './step-context.js';
import { EventLog } from './event-log.js';

/** Where step outputs are written before dependants start. */
export interface OutputStore {
  get(key: string): Promise<unknown>;
  set(key: string, value: unknown): Promise<void>;
}

/** What a run borrows from its context. */
export interface RunServices {
  readonly results: OutputStore;
  readonly executors: ReadonlyMap<string, Executor>;
  /** The context-wide concurrency limit. */
  readonly queue: PQueue;
  readonly processId: string;
  readonly emit: (event: WeirEvent) => void;
  readonly finished: (run: Run) => void;
}

/** The settings of one run, already validated. */
export interface RunSettings {
  readonly runId: string;
  readonly mode: RunMode;
  readonly timeout: number | undefined;
  readonly signal: AbortSignal | undefined;
  /** The most steps of this run that run at once, inside the context's limit (`Infinity` for none). */
  readonly concurrency: number;
}

/** The key a step's output is stored under. */
export function outputKey(runId: string, step: string): string {
  return `${runId}/${step}`;
}

const { PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, SKIPPED } = FlowStatus;

/** One execution of a compiled graph with one input. */
export class Run implements StepHost {
  readonly runId: string;
  readonly graph: CompiledGraph;
  readonly startTime: number;
  readonly events: EventLog;
  readonly #input: unknown;
  readonly #settings: RunSettings;
  readonly #services: RunServices;

  readonly #status: FlowStatus[];
  readonly #waitingOn: number[];
  readonly #childrenLeft: number[];
  readonly #inputs: unknown[];
  readonly #outputs: unknown[];
  readonly #attempts: AttemptRecord[][];
  readonly #startTimes: (number | undefined)[];
  readonly #attemptStarted: number[];
  /** Set once a node became ready, so a node is never readied (and queued) twice. */
  readonly #readied: boolean[];
  readonly #endTimes: (number | undefined)[];
  readonly #errors: (ErrorData | undefined)[];
  /** The flow whose failure each failed or skipped node traces back to. */
  readonly #culprit: (string | undefined)[];
  readonly #running = new Map<number, StepContext>();
  readonly #retryTimers = new Map<number, TimerHandle>();
  /** Leaves ready to run, not yet handed to the context's queue (from `#readyHead` on). */
  readonly #ready_: number[] = [];
  #readyHead = 0;
  /** This run's tasks in the context's queue, waiting or running. */
  #inQueue = 0;
  readonly #window: number;
  /** Nodes that ended and whose dependants and parent are still to be told. */
  readonly #settled = new DrainQueue<number>((index) => this.#propagate(index));

  #status_: FlowStatus = PENDING;
  #runError: ErrorData | undefined;
  #timeoutTimer: TimerHandle | undefined;
  #result: FlowResult | undefined;
  #settle!: (result: FlowResult) => void;
  readonly #done: Promise<FlowResult>;
  readonly #onAbort = (): void => {
    const reason: unknown = this.#settings.signal?.reason;
    this.cancel(reason instanceof CancelledError ? reason : new CancelledError(`run "${this.runId}" was cancelled by its signal`, { cause: reason }));
  };

  constructor(graph: CompiledGraph, input: unknown, settings: RunSettings, services: RunServices) {
    this.runId = settings.runId;
    this.graph = graph;
    this.#input = input;
    this.#settings = settings;
    this.#services = services;
    this.startTime = now();
    this.events = new EventLog();
    const n = graph.nodes.length;
    this.#status = new Array<FlowStatus>(n).fill(PENDING);
    this.#waitingOn = graph.nodes.map((node) => node.dependencies.length);
    this.#childrenLeft = new Array<number>(n).fill(0);
    this.#inputs = new Array<unknown>(n);
    this.#outputs = new Array<unknown>(n);
    this.#attempts = graph.nodes.map(() => []);
    this.#startTimes = new Array<number | undefined>(n);
    this.#attemptStarted = new Array<number>(n).fill(0);
    this.#readied = new Array<boolean>(n).fill(false);
    this.#endTimes = new Array<number | undefined>(n);
    this.#errors = new Array<ErrorData | undefined>(n);
    this.#culprit = new Array<string | undefined>(n);
    this.#done = new Promise((resolve) => (this.#settle = resolve));
    this.#window = Math.min(settings.concurrency, services.queue.concurrency);
  }

  /** The run's status now. */
  get status(): FlowStatus {
    return this.#status_;
  }

  /** Resolves to the run's result when it ends; never rejects. */
  result(): Promise<FlowResult> {
    return this.#done;
  }

  /** Begins the run: validates the input of every entry step, then schedules the root. */
  start(): void {
    this.#status_ = RUNNING;
    this.#emit({ type: 'run_start', flow: this.graph.root.name, mode: this.#settings.mode });
    for (const entry of this.graph.entryLeaves) {
      try {
        validate(entry.processor!.input, this.#input, `run input for flow "${entry.name}"`);
      } catch (error) {
        this.#rejectInput(entry, toErrorData(error));
        return;
      }
    }
    // The context refuses an already-aborted signal before a run is made.
    this.#settings.signal?.addEventListener('abort', this.#onAbort, { once: true });
    if (this.#settings.timeout !== undefined) {
      const timeout = this.#settings.timeout;
      this.#timeoutTimer = setTimer(() => {
        const error = new TimeoutError(`run "${this.runId}" exceeded its timeout of ${timeout} ms`, { code: ErrorCode.RUN_TIMEOUT, timeout });
        this.#stop(FAILED, error);
      }, timeout);
    }
    this.#ready(0);
  }

  /** Fails a run whose input an entry step refuses: that step failed, its composites with it, every other step skipped. */
  #rejectInput(entry: GraphNode, error: ErrorData): void {
    const ended = now();
    const skipped = toErrorData(
      new UpstreamFailedError(`skipped because the run's input failed validation for flow "${entry.name}"`, { upstream: entry.name }),
    );
    for (let i = 0; i < this.#status.length; i++) {
      this.#status[i] = SKIPPED;
      this.#errors[i] = skipped;
      this.#culprit[i] = entry.name;
      this.#endTimes[i] = ended;
    }
    for (let i = entry.index; i !== -1; i = this.graph.nodes[i]!.parent) {
      this.#status[i] = FAILED;
      this.#errors[i] = error;
    }
    this.#finishRun(FAILED, { ...error, step: entry.name });
  }

  /** Cancels the run: running steps see their signal abort, pending ones never start. */
  cancel(reason: CancelledError = new CancelledError(`run "${this.runId}" was cancelled`)): void {
    this.#stop(CANCELLED, reason);
  }

  // ---- StepHost -------------------------------------------------------------------------------

  /** A leaf's output is read back through the results store, its source of truth; a composite's is assembled. */
  async dependencyOutput(index: number): Promise<unknown> {
    if (this.#status[index] !== COMPLETED) return undefined;
    const node = this.graph.nodes[index]!;
    if (node.processor === undefined) return this.#outputs[index];
    return this.#services.results.get(outputKey(this.runId, node.name));
  }

  progress(index: number, attempt: number, fraction: number, message: string | undefined): void {
    if (!this.#isCurrent(index, attempt)) return;
    const step = this.graph.nodes[index]!.name;
    this.#emit(
      message === undefined
        ? { type: 'step_progress', step, attempt, progress: fraction }
        : { type: 'step_progress', step, attempt, progress: fraction, message },
    );
  }

  heartbeat(index: number, attempt: number, details: unknown): void {
    if (!this.#isCurrent(index, attempt)) return;
    const step = this.graph.nodes[index]!.name;
    this.#emit(details === undefined ? { type: 'step_heartbeat', step, attempt } : { type: 'step_heartbeat', step, attempt, details });
  }

  // ---- scheduling -----------------------------------------------------------------------------

  #isCurrent(index: number, attempt: number): boolean {
    return this.#status[index] === RUNNING && this.#attempts[index]!.length === attempt - 1;
  }

  #emit(event: EventInput): void {
    this.#publish({ ...event, runId: this.runId, seq: this.events.length + 1, time: now() });
  }

  /** Appends a complete event; hot paths build it as one literal, which is much cheaper than a spread. */
  #publish(event: WeirEvent): void {
    this.events.push(event);
    this.#services.emit(event);
  }

  #inputOf(node: GraphNode): unknown {
    if (node.parent === -1) return this.#input;
    return node.previous === -1 ? this.#inputs[node.parent] : this.#outputs[node.previous];
  }

  #ready(index: number): void {
    if (this.#readied[index]) return;
    this.#readied[index] = true;
    const node = this.graph.nodes[index]!;
    this.#inputs[index] = this.#inputOf(node);
    if (node.processor !== undefined) {
      this.#schedule(index);
      return;
    }
    this.#status[index] = RUNNING;
    this.#startTimes[index] = now();
    if (index !== 0) this.#emit({ type: 'step_start', step: node.name, attempt: 1 });
    this.#childrenLeft[index] = node.children.length;
    if (node.children.length === 0) {
      this.#finishComposite(index);
      return;
    }
    for (const child of node.children) {
      if (this.#waitingOn[child] === 0 && this.#status[child] === PENDING) this.#ready(child);
    }
  }

  /**
   * Queues a leaf's attempt. A run hands the context's queue at most `#window` tasks at a time and
   * keeps the rest as indices: a wide graph then holds numbers, not thousands of queued closures,
   * and the same window is the run's own concurrency limit.
   */
  #schedule(index: number): void {
    this.#ready_.push(index);
    this.#pump();
  }

  #pump(): void {
    const ready = this.#ready_;
    while (this.#inQueue < this.#window && this.#readyHead < ready.length) {
      const index = ready[this.#readyHead++]!;
      this.#inQueue++;
      void this.#services.queue.add(() => this.#attempt(index).finally(this.#slotFreed));
    }
    if (this.#readyHead === ready.length) {
      ready.length = 0;
      this.#readyHead = 0;
    }
  }

  readonly #slotFreed = (): void => {
    this.#inQueue--;
    this.#pump();
  };

  async #attempt(index: number): Promise<void> {
    if (this.#status[index] !== PENDING || this.#status_ !== RUNNING) return;
    const node = this.graph.nodes[index]!;
    const attempt = this.#attempts[index]!.length + 1;
    const started = now();
    this.#status[index] = RUNNING;
    this.#attemptStarted[index] = started;
    if (attempt === 1) this.#startTimes[index] = started;
    const step = new StepContext(this, index, node.name, attempt, node.dependencyNames);
    this.#running.set(index, step);
    this.#publish({ type: 'step_start', runId: this.runId, seq: this.events.length + 1, time: started, step: node.name, attempt });

    let timer: TimerHandle | undefined;
    try {
      // A listener of step_start may have cancelled the run: then the processor never runs.
      if (!this.#isCurrent(index, attempt)) return;
      const executor = this.#services.executors.get(node.type)!;
      const pending = executor.execute({ processor: node.processor!, input: this.#inputs[index], step, abort: step, mode: this.#settings.mode });
      if (node.timeout !== undefined) {
        const timeout = node.timeout;
        timer = setTimer(() => {
          step.abort(new TimeoutError(`flow "${node.name}": attempt ${attempt} exceeded its timeout of ${timeout} ms`, { timeout }));
        }, timeout);
      }
      // An abort (timeout or cancel) ends the wait even when the processor ignores its signal, so the slot is freed.
      const output = await new Promise<unknown>((resolve, reject) => {
        step.onAbort(reject);
        pending.then(resolve, reject);
      });
      clearTimer(timer);
      if (!this.#isCurrent(index, attempt)) return;
      await this.#services.results.set(outputKey(this.runId, node.name), output);
      if (!this.#isCurrent(index, attempt)) return;
      const ended = now();
      this.#attempts[index]!.push({ attempt, startTime: started, endTime: ended, duration: ended - started });
      this.#outputs[index] = output;
      this.#publish({ type: 'step_complete', runId: this.runId, seq: this.events.length + 1, time: ended, step: node.name, attempt, duration: ended - started });
      this.#finishNode(index, COMPLETED, ended);
    } catch (error) {
      if (!this.#isCurrent(index, attempt)) return;
      this.#attemptFailed(node, attempt, started, error);
    } finally {
      clearTimer(timer);
      if (this.#running.get(index) === step) this.#running.delete(index);
    }
  }

  #attemptFailed(node: GraphNode, attempt: number, started: number, thrown: unknown): void {
    const ended = now();
    const policy = node.retry;
    let error = thrown;
    let retryable: boolean;
    try {
      retryable = isRetryable(policy, error, attempt);
    } catch (predicateError) {
      const original = toErrorData(thrown);
      error = new FatalError(`flow "${node.name}": retryOn threw while classifying ${original.name}: ${original.message}`, {
        code: ErrorCode.INVALID_CONFIG,
        cause: predicateError,
      });
      retryable = false;
    }
    const data = toErrorData(error);
    this.#attempts[node.index]!.push({ attempt, startTime: started, endTime: ended, duration: ended - started, error: data });
    if (retryable) {
      const delay = backoffDelay(policy, attempt);
      this.#status[node.index] = PENDING;
      this.#emit({
        type: 'step_retry',
        step: node.name,
        attempt,
        maxAttempts: policy.maxAttempts,
        delay,
        error: data,
        message: `will retry in ${delay} ms (attempt ${attempt + 1} of ${policy.maxAttempts})`,
      });
      this.#retryTimers.set(
        node.index,
        setTimer(() => {
          this.#retryTimers.delete(node.index);
          this.#schedule(node.index);
        }, delay),
      );
      return;
    }
    this.#errors[node.index] = data;
    this.#culprit[node.index] = node.name;
    this.#emit({ type: 'step_failed', step: node.name, attempt, error: data });
    this.#noteFailure(node, data);
    this.#finishNode(node.index, FAILED, ended);
  }

  /** Records the run's first failing step. */
  #noteFailure(node: GraphNode, data: ErrorData): void {
    if (this.#runError === undefined) this.#runError = { ...data, step: node.name };
  }

  /** Records a node's end and propagates it; propagation is a loop, so a long failure cascade cannot overflow the stack. */
  #finishNode(index: number, status: FlowStatus, ended: number): void {
    this.#status[index] = status;
    this.#endTimes[index] = ended;
    this.#settled.push(index);
  }

  #propagate(index: number): void {
    const status = this.#status[index]!;
    if (index === 0) {
      this.#finishRun(status === COMPLETED ? COMPLETED : FAILED, this.#runError);
      return;
    }
    if (this.#status_ !== RUNNING) return;
    const node = this.graph.nodes[index]!;
    const ok = status === COMPLETED;
    const ended = this.#endTimes[index]!;
    for (const edge of node.dependants) {
      if (this.#status[edge.index] !== PENDING) continue;
      if (!ok && edge.required) {
        this.#skip(edge.index, this.#culprit[index]!, ended);
      } else if (--this.#waitingOn[edge.index]! === 0) {
        this.#ready(edge.index);
      }
    }
    if (this.#status_ !== RUNNING) return;
    const parent = node.parent;
    if (this.#status[parent] === RUNNING && --this.#childrenLeft[parent]! === 0) this.#finishComposite(parent);
  }

  #skip(index: number, culprit: string, ended: number): void {
    const node = this.graph.nodes[index]!;
    const data = toErrorData(
      new UpstreamFailedError(`flow "${node.name}" was skipped because "${culprit}" failed`, { upstream: culprit }),
    );
    const markSkipped = (i: number): void => {
      const n = this.graph.nodes[i]!;
      this.#status[i] = SKIPPED;
      this.#errors[i] = data;
      this.#culprit[i] = culprit;
      this.#endTimes[i] = ended;
      this.#emit({ type: 'step_skipped', step: n.name, status: SKIPPED, error: data });
      for (const child of n.children) markSkipped(child);
    };
    for (const child of node.children) markSkipped(child);
    this.#status[index] = SKIPPED;
    this.#errors[index] = data;
    this.#culprit[index] = culprit;
    this.#emit({ type: 'step_skipped', step: node.name, status: SKIPPED, error: data });
    this.#finishNode(index, SKIPPED, ended);
  }

  #finishComposite(index: number): void {
    const node = this.graph.nodes[index]!;
    const output = this.#partialOutput(index);
    const failedChild = node.children.find((child) => this.#status[child] !== COMPLETED);
    const ended = now();
    this.#outputs[index] = output;
    if (failedChild === undefined) {
      if (index !== 0) this.#emit({ type: 'step_complete', step: node.name, attempt: 1, duration: ended - this.#startTimes[index]! });
      this.#finishNode(index, COMPLETED, ended);
      return;
    }
    const culprit = this.#culprit[failedChild] ?? this.graph.nodes[failedChild]!.name;
    this.#culprit[index] = culprit;
    this.#errors[index] = this.#errors[this.graph.byName.get(culprit)!.index];
    if (index !== 0) this.#emit({ type: 'step_failed', step: node.name, attempt: 1, error: this.#errors[index]! });
    this.#finishNode(index, FAILED, ended);
  }

  /** Ends the run early: cancel or run timeout. */
  #stop(status: typeof CANCELLED | typeof FAILED, reason: CancelledError | TimeoutError): void {
    if (this.#status_ !== RUNNING) return;
    const data = toErrorData(reason);
    const ended = now();
    const running = [...this.#running];
    this.#running.clear();
    for (const [index] of running) this.#cancelStep(index, data, ended);
    for (let i = 0; i < this.#status.length; i++) {
      const status = this.#status[i];
      if (status === PENDING && this.#attempts[i]!.length > 0) {
        // Between attempts (waiting on backoff or back in the queue): it did start, so it is reported.
        this.#cancelStep(i, data, ended);
      } else if (status === PENDING || status === RUNNING) {
        this.#status[i] = CANCELLED;
        this.#endTimes[i] = ended;
      }
    }
    // Abort after the statuses changed, so the attempts see they are no longer current.
    for (const [, step] of running) step.abort(reason);
    // A run that already had a failing step fails with that step's error; the timeout only stopped the rest.
    this.#finishRun(status, status === FAILED ? (this.#runError ?? data) : data);
  }

  #cancelStep(index: number, data: ErrorData, ended: number): void {
    const node = this.graph.nodes[index]!;
    const attempts = this.#attempts[index]!;
    if (this.#status[index] === RUNNING) {
      const started = this.#attemptStarted[index]!;
      attempts.push({ attempt: attempts.length + 1, startTime: started, endTime: ended, duration: ended - started, error: data });
    }
    this.#status[index] = CANCELLED;
    this.#errors[index] = data;
    this.#endTimes[index] = ended;
    this.#emit({ type: 'step_cancelled', step: node.name, attempt: attempts.length, error: data });
  }

  #finishRun(status: FlowStatus, error: ErrorData | undefined): void {
    if (this.#status_ !== RUNNING) return;
    this.#status_ = status;
    this.#ready_.length = 0;
    this.#readyHead = 0;
    clearTimer(this.#timeoutTimer);
    for (const timer of this.#retryTimers.values()) clearTimer(timer);
    this.#retryTimers.clear();
    this.#settings.signal?.removeEventListener('abort', this.#onAbort);
    const ended = now();
    const duration = ended - this.startTime;
    if (status === COMPLETED) this.#emit({ type: 'run_complete', duration });
    else if (status === CANCELLED) this.#emit({ type: 'run_cancelled', duration, error: error! });
    else this.#emit({ type: 'run_failed', duration, error: error! });
    this.events.end();
    const root = this.graph.root;
    const steps: Record<string, StepResult> = {};
    for (const node of this.graph.nodes) {
      if (node.index === 0 && root.processor === undefined) continue;
      steps[node.name] = this.#stepResult(node.index);
    }
    this.#result = {
      runId: this.runId,
      processId: this.#services.processId,
      name: root.name,
      status,
      startTime: this.startTime,
      endTime: ended,
      output: root.processor === undefined ? (this.#outputs[0] ?? this.#partialOutput(0)) : status === COMPLETED ? this.#outputs[0] : undefined,
      error,
      attempts: this.#attempts[0]!,
      steps,
    };
    this.#services.finished(this);
    this.#settle(this.#result);
  }

  /** A composite's completed children's outputs, for a run that ended before the composite did. */
  #partialOutput(index: number): Record<string, unknown> {
    const output: Record<string, unknown> = {};
    for (const child of this.graph.nodes[index]!.children) {
      if (this.#status[child] === COMPLETED) output[this.graph.nodes[child]!.name] = this.#outputs[child];
    }
    return output;
  }

  #stepResult(index: number): StepResult {
    return {
      name: this.graph.nodes[index]!.name,
      status: this.#status[index]!,
      startTime: this.#startTimes[index],
      endTime: this.#endTimes[index],
      output: this.#status[index] === COMPLETED ? this.#outputs[index] : undefined,
      error: this.#errors[index],
      attempts: this.#attempts[index]!,
    };
  }
}
