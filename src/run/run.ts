/**
 * The scheduler of one run: readiness counting over the compiled graph, attempts through the
 * executors, retry with backoff, timeouts, failure propagation, cancellation and the event log.
 * Everything it records goes through its `RunJournal`; a step's output is durable before any
 * dependant starts. A run is new, or restored from the journal (recovered or resumed).
 */
import type PQueue from 'p-queue';
import { type ErrorData, toErrorData } from '../errors/error-data.js';
import { CancelledError, ErrorCode, FatalError, FlowError, TimeoutError, UpstreamFailedError, WarningCode } from '../errors/errors.js';
import type { EventInput, WeirEvent } from '../model/events.js';
import type { Executor } from '../executors/executor.js';
import { validate } from '../executors/invoke.js';
import type { InputAnswer } from '../executors/executor.js';
import { isInputWaitSignal, validateAgainstJson, type InputAsk } from '../human/ask.js';
import type { AnySchema } from '../model/processor.js';
import type { CompiledGraph, GraphNode } from '../graph/compile.js';
import type { AttemptRecord, FlowResult, StepResult } from '../model/result.js';
import { FlowStatus, type RunMode } from '../model/status.js';
import { clearRealTimer, clearTimer, now, setRealTimer, setTimer, type TimerHandle } from '../util/clock.js';
import { DrainQueue } from '../util/drain-queue.js';
import { backoffDelay, isRetryable } from '../model/retry-policy.js';
import { StepContext, type StepHost } from './step-context.js';
import { EventLog } from './event-log.js';
import { RunJournal } from './journal.js';
import type { RunOwner, RunRecord, RunStore, StepRecord } from '../storage/journal/run-store.js';
import type { InputEntry, InputWait, WaitInfo } from '../model/waits.js';
import type { Mutable } from '../util/types.js';
import { clearTimeout as realClearTimeout, setTimeout as realSetTimeout } from 'node:timers';

/** What a run borrows from its context. */
export interface RunServices {
  readonly store: RunStore;
  readonly owner: RunOwner;
  /** How long a lease lasts without renewal, in milliseconds. */
  readonly leaseMs: number;
  readonly executors: ReadonlyMap<string, Executor>;
  /** The context-wide concurrency limit. */
  readonly queue: PQueue;
  readonly processId: string;
  readonly emit: (event: WeirEvent) => void;
  readonly finished: (run: Run) => void;
  /** The store already has a run with this id: settle this one as the context decides (idempotent start). */
  readonly conflict: (run: Run, error: FlowError) => Promise<FlowResult>;
  /** The run waits for input with nothing else to do: it is committed as `waiting` and its lease released. */
  readonly parked: (run: Run) => void;
  /** The result of a parked run, wherever it goes on. */
  readonly follow: (runId: string) => Promise<FlowResult>;
  /** The events of a parked run after `after`, wherever it goes on. */
  readonly followEvents: (runId: string, after: number, signal: AbortSignal | undefined) => AsyncIterable<WeirEvent>;
}

/** Why a stored run goes on. */
export type ResumeReason = 'recovered' | 'resumed' | 'input' | 'orphaned' | 'human_in_loop';

/** A run read back from the journal, to go on with. */
export interface RestoredRun {
  readonly record: RunRecord;
  /** The lease token the context holds for it. */
  readonly leaseToken: number;
  readonly steps: ReadonlyMap<string, StepRecord>;
  /** The stored outputs of completed leaves. */
  readonly outputs: ReadonlyMap<string, unknown>;
  readonly reason: ResumeReason;
  /** For `orphaned`: the fallback taken. */
  readonly fallback?: 'fail' | 'default' | 'batch' | undefined;
  /** How the run's waits for input ended so far. */
  readonly inputs: readonly InputEntry[];
  /** Re-run this step and everything downstream of it. */
  readonly from?: string | undefined;
  /**
   * Steps that failed or were skipped run again (`ctx.resume`). Every other way a run goes on (a
   * recovery, an answer, a skip, a fallback, a cancel) keeps them as they ended.
   */
  readonly rerunEnded?: boolean | undefined;
  /** Fail the run at once with this error (a poison run, a changed graph). */
  readonly failWith?: FlowError | undefined;
  /** Cancel the run at once (a run cancelled while it waited for input). */
  readonly cancelWith?: CancelledError | undefined;
}

/** The settings of one run, already validated. */
export interface RunSettings {
  readonly runId: string;
  readonly mode: RunMode;
  /** Whether an unanswered ask waits for a person (interactive, or hybrid with a person in the loop). */
  readonly humanInLoop: boolean;
  readonly timeout: number | undefined;
  readonly signal: AbortSignal | undefined;
  /** The most steps of this run that run at once, inside the context's limit (`Infinity` for none). */
  readonly concurrency: number;
  /** The run this one retries. */
  readonly retryOf?: string | undefined;
  readonly restore?: RestoredRun | undefined;
}

const { PENDING, RUNNING, WAITING, COMPLETED, FAILED, CANCELLED, SKIPPED } = FlowStatus;

/** How often a run with steps waiting reads the answers other contexts stored, in ms. */
const INPUT_POLL_MS = 200;

/** An ask a step waits on, with its zod schema where it is at hand (an inline ask of this process). */
interface Wait extends InputWait {
  readonly zod?: AnySchema | undefined;
}

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
export class Run implements StepHost {
  readonly runId: string;
  readonly graph: CompiledGraph;
  readonly startTime: number;
  readonly events: EventLog;
  readonly input: unknown;
  readonly #settings: RunSettings;
  readonly #services: RunServices;
  readonly #journal: RunJournal;

  readonly #status: FlowStatus[];
  readonly #waitingOn: number[];
  readonly #childrenLeft: number[];
  readonly #inputs: unknown[];
  readonly #outputs: unknown[];
  readonly #attempts: AttemptRecord[][];
  /** Attempts made before this run (re)started: a retry policy counts only the ones after. */
  readonly #attemptBase: number[];
  readonly #startTimes: (number | undefined)[];
  readonly #attemptStarted: number[];
  /** Set once a node became ready, so a node is never readied (and queued) twice. */
  readonly #readied: boolean[];
  readonly #endTimes: (number | undefined)[];
  readonly #errors: (ErrorData | undefined)[];
  readonly #progress: ({ fraction: number; message?: string } | undefined)[];
  /** When a restored step's next attempt is due (a backoff that outlived its process). */
  readonly #retryAt: (number | undefined)[];
  /**
   * How restored steps ended before, kept: `completed` (any restored run), or `failed` / `skipped`
   * for good (a recovered run). They end so again, silently, when their turn comes.
   */
  readonly #kept: (FlowStatus | undefined)[];
  /** Restored composites whose `step_start` is already in the log. */
  readonly #announced: boolean[];
  /** The flow whose failure each failed or skipped node traces back to. */
  readonly #culprit: (string | undefined)[];
  readonly #running = new Map<number, StepContext>();
  /** Steps whose record changed since the last commit. */
  readonly #changed = new Set<number>();
  /** Leaves whose completion (output and record) is being committed: a cancel or a skip leaves them be. */
  readonly #committing = new Set<number>();
  readonly #retryTimers = new Map<number, TimerHandle>();
  readonly #heartbeatTimers = new Map<number, TimerHandle>();
  /** The asks of each step's current attempt, or the waits of a waiting step. */
  readonly #waits: (Wait[] | undefined)[];
  /** How the run's waits for input ended, by key. */
  readonly #answers = new Map<string, InputEntry>();
  /** Answers the asking step refused, by key (their time): not taken in again while the store still has them. */
  readonly #refused = new Map<string, number>();
  #humanInLoop: boolean;
  /** Steps that began to wait; cleaned as they leave `waiting` (see `#hasWaiting`), so a run without asks never scans its steps. */
  readonly #waitingSteps = new Set<number>();
  /** Deadline timers of waiting steps. */
  readonly #waitTimers = new Map<number, TimerHandle>();
  #inputPoll: ReturnType<typeof realSetTimeout> | undefined;
  /** Set once the run is committed as waiting and handed back to its context. */
  #parked = false;
  #parking: Promise<void> | undefined;
  #followed: Promise<FlowResult> | undefined;
  /** The run that went on with this one after it parked, in the same context. */
  #successor: Run | undefined;
  #resolveFollow: ((result: FlowResult | Promise<FlowResult>) => void) | undefined;
  #closedResult: FlowResult | undefined;
  /** Set once `result()` was asked before the run parked: the promise then follows it. */
  #asked = false;
  #left: Promise<void> | undefined;
  #leave: (() => void) | undefined;
  /** Set when the run settled as another run of the same id (an idempotent start). */
  #gone = false;
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
  #settle!: (result: FlowResult | Promise<FlowResult>) => void;
  readonly #done: Promise<FlowResult>;
  readonly #onAbort = (): void => {
    const reason: unknown = this.#settings.signal?.reason;
    this.cancel(reason instanceof CancelledError ? reason : new CancelledError(`run "${this.runId}" was cancelled by its signal`, { cause: reason }));
  };

  constructor(graph: CompiledGraph, input: unknown, settings: RunSettings, services: RunServices) {
    this.runId = settings.runId;
    this.graph = graph;
    this.input = input;
    this.#settings = settings;
    this.#services = services;
    const restore = settings.restore;
    this.startTime = restore?.record.createdAt ?? now();
    this.events = new EventLog(restore?.record.lastSeq ?? 0);
    this.#journal = new RunJournal(this.runId, services.store, this, restore?.leaseToken ?? 1, restore?.record.lastSeq ?? 0);
    const n = graph.nodes.length;
    this.#status = new Array<FlowStatus>(n).fill(PENDING);
    this.#waitingOn = graph.nodes.map((node) => node.dependencies.length);
    this.#childrenLeft = new Array<number>(n).fill(0);
    this.#inputs = new Array<unknown>(n);
    this.#outputs = new Array<unknown>(n);
    this.#attempts = graph.nodes.map(() => []);
    this.#attemptBase = new Array<number>(n).fill(0);
    this.#startTimes = new Array<number | undefined>(n);
    this.#attemptStarted = new Array<number>(n).fill(0);
    this.#readied = new Array<boolean>(n).fill(false);
    this.#endTimes = new Array<number | undefined>(n);
    this.#errors = new Array<ErrorData | undefined>(n);
    this.#progress = new Array<{ fraction: number; message?: string } | undefined>(n);
    this.#retryAt = new Array<number | undefined>(n);
    this.#kept = new Array<FlowStatus | undefined>(n);
    this.#announced = new Array<boolean>(n).fill(false);
    this.#culprit = new Array<string | undefined>(n);
    this.#waits = new Array<Wait[] | undefined>(n);
    this.#humanInLoop = settings.humanInLoop;
    this.#done = new Promise((resolve) => (this.#settle = resolve));
    this.#window = Math.min(settings.concurrency, services.queue.concurrency);
    if (restore !== undefined) this.#restore(restore);
  }

  /** How the run treats `waitForInput`. */
  get mode(): RunMode {
    return this.#settings.mode;
  }

  /** The run's status now. */
  get status(): FlowStatus {
    return this.#status_;
  }

  /** The lease token this run commits with. */
  get leaseToken(): number {
    return this.#journal.leaseToken;
  }

  /**
   * Resolves to the run's result when it ends; rejects only when an idempotent start names a
   * different run. A run that parked to wait for input is followed wherever it goes on.
   */
  result(): Promise<FlowResult> {
    if (this.#parked) return this.#follow();
    this.#asked = true;
    return this.#done;
  }

  /**
   * The result of a parked run: from the run that goes on with it here, else from the store
   * (whichever comes first), or, once the context closes, the run as it waits.
   */
  #follow(): Promise<FlowResult> {
    if (this.#followed !== undefined) return this.#followed;
    if (this.#successor !== undefined) return (this.#followed = this.#successor.result());
    if (this.#closedResult !== undefined) return (this.#followed = Promise.resolve(this.#closedResult));
    this.#followed = new Promise<FlowResult>((resolve, reject) => {
      this.#resolveFollow = resolve;
      this.#services.follow(this.runId).then(resolve, (error: unknown) => {
        // The context closed under the poll: the run as it waits, unless it went on here meanwhile.
        if (this.#successor === undefined && this.#closedResult === undefined) reject(error instanceof Error ? error : new Error(String(error)));
      });
    });
    return this.#followed;
  }

  /** This parked run goes on as `run` in the same context: its result and events come from there. */
  continuedBy(run: Run): void {
    this.#successor = run;
    this.#resolveFollow?.(run.result());
  }

  /**
   * The context closed while this run waited: a result still awaited is the run as it waits
   * (status `waiting`, with `reason`), unless it went on in this context first.
   */
  contextClosed(reason: FlowError): void {
    this.#closedResult = { ...this.#buildResult(WAITING, toErrorData(reason), now()), output: undefined };
    this.#resolveFollow?.(this.#closedResult);
  }

  /** Resolves once the run no longer runs in this context: it ended, or parked. */
  leftContext(): Promise<void> {
    if (this.#result !== undefined || this.#parked || this.#gone) return Promise.resolve();
    return (this.#left ??= new Promise<void>((resolve) => (this.#leave = resolve)));
  }

  /** Resolves once a run that began to park is committed as waiting (at once if it is not parking). */
  parked(): Promise<void> {
    return this.#parking ?? Promise.resolve();
  }

  /** Events with `seq > after`: those stored before this run was restored read from the store, then the live log. */
  async *eventsAfter(after: number, signal: AbortSignal | undefined): AsyncGenerator<WeirEvent, void, undefined> {
    if (this.#parked) {
      yield* this.#followEvents(after, signal);
      return;
    }
    const base = this.events.base;
    let last = after;
    while (last < base && signal?.aborted !== true) {
      const page = await this.#services.store.readEvents(this.runId, last, Math.min(1000, base - last));
      if (page.length === 0) break;
      for (const event of page) {
        yield event;
        last = event.seq;
      }
    }
    for await (const event of this.events.follow(Math.max(last, base), signal)) {
      yield event;
      last = event.seq;
    }
    // Parked to wait for input: it goes on in a later run of the same id, here or elsewhere.
    if (this.#parked && signal?.aborted !== true) yield* this.#followEvents(last, signal);
  }

  #followEvents(after: number, signal: AbortSignal | undefined): AsyncIterable<WeirEvent> {
    return this.#successor?.eventsAfter(after, signal) ?? this.#services.followEvents(this.runId, after, signal);
  }

  /** Resolves once everything the run recorded so far is committed (or could not be). */
  flushed(): Promise<void> {
    return this.#journal.settled();
  }

  /** Begins the run: stores its record, validates the input of every entry step, then schedules the root. */
  start(): void {
    this.#status_ = RUNNING;
    // The context refuses an already-aborted signal before a run is made.
    this.#settings.signal?.addEventListener('abort', this.#onAbort, { once: true });
    if (this.#settings.timeout !== undefined) {
      const timeout = this.#settings.timeout;
      this.#timeoutTimer = setTimer(() => {
        const error = new TimeoutError(`run "${this.runId}" exceeded its timeout of ${timeout} ms`, { code: ErrorCode.RUN_TIMEOUT, timeout });
        this.#stop(FAILED, error);
      }, timeout);
    }
    const restore = this.#settings.restore;
    if (restore !== undefined) {
      this.#begin(restore);
      return;
    }
    const { owner, leaseMs } = this.#services;
    const created = this.startTime;
    const event: WeirEvent = { type: 'run_start', runId: this.runId, seq: this.#journal.nextSeq(), time: created, flow: this.graph.root.name, mode: this.#settings.mode };
    this.#journal
      .create(
        {
          runId: this.runId,
          flow: this.graph.root.name,
          fingerprint: this.graph.fingerprint,
          input: this.input,
          mode: this.#settings.mode,
          humanInLoop: this.#humanInLoop,
          status: RUNNING,
          createdAt: created,
          updatedAt: created,
          owner,
          leaseExpiresAt: created + leaseMs,
          ...(this.#settings.retryOf === undefined ? {} : { retryOf: this.#settings.retryOf }),
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
    const node = this.graph.byName.get(name);
    if (node === undefined || (node.index === 0 && node.processor === undefined)) {
      throw new FlowError(`run "${this.runId}" has no step "${name}"`, { code: ErrorCode.INVALID_OPTIONS });
    }
    const index = node.index;
    const value = checkSkip(node, this.runId, this.#status[index], output);
    if (this.#status_ !== RUNNING) throw new FlowError(`cannot skip "${name}": run "${this.runId}" has ended`, { code: ErrorCode.RUN_STATE });
    const before = this.#status[index]!;
    if (before !== PENDING && before !== RUNNING && before !== WAITING) {
      throw new FlowError(`cannot skip "${name}" in run "${this.runId}": it has ended (${before}) and its end was passed on; skip it once the run has ended, then resume the run`, {
        code: ErrorCode.RUN_STATE,
      });
    }
    if (this.#committing.has(index)) {
      throw new FlowError(`cannot skip "${name}" in run "${this.runId}": its output is being recorded`, { code: ErrorCode.RUN_STATE });
    }
    const wasReadied = this.#readied[index]!;
    const ended = now();
    const step = this.#running.get(index);
    this.#running.delete(index);
    const attempts = this.#attempts[index]!;
    if (step !== undefined) {
      const started = this.#attemptStarted[index]!;
      const reason = new CancelledError(`flow "${name}" was skipped by ctx.skip`);
      attempts.push({ attempt: attempts.length + 1, startTime: started, endTime: ended, duration: ended - started, error: toErrorData(reason) });
      this.#status[index] = CANCELLED;
      step.abort(reason);
    }
    clearTimer(this.#retryTimers.get(index));
    this.#retryTimers.delete(index);
    this.#clearWait(index);
    this.#status[index] = RUNNING;
    // Not current for any attempt: a late result of the stopped attempt is ignored.
    this.#readied[index] = true;
    this.#changed.delete(index);
    this.#committing.add(index);
    try {
      await this.#journal.complete(
        { runId: this.runId, step: name, status: COMPLETED, attempts: attempts.slice(), ...(this.#startTimes[index] === undefined ? {} : { startTime: this.#startTimes[index] }), endTime: ended, hasOutput: true, updatedAt: ended },
        value,
        { type: 'step_complete', runId: this.runId, seq: this.#journal.nextSeq(), time: ended, step: name, attempt: attempts.length, duration: 0, skipped: true },
      );
    } catch (error) {
      // Not recorded: the step goes back to waiting for its turn (a stopped attempt counts as a cancelled one).
      if (this.#status_ === RUNNING && this.#status[index] === RUNNING) {
        this.#status[index] = PENDING;
        this.#readied[index] = wasReadied;
        this.#touch(index);
        if (wasReadied) this.#schedule(index);
      }
      throw error;
    } finally {
      this.#committing.delete(index);
    }
    if (this.#status[index] !== RUNNING) return;
    this.#outputs[index] = value;
    this.#finishNode(index, COMPLETED, ended);
  }

  /** Cancels the run: running steps see their signal abort, pending ones never start. */
  cancel(reason: CancelledError = new CancelledError(`run "${this.runId}" was cancelled`)): void {
    this.#stop(CANCELLED, reason);
  }

  // ---- human in the loop ----------------------------------------------------------------------

  /**
   * Answers a wait of this running run: validated by the ask's own schema where it is at hand
   * (an inline ask), else by its JSON Schema; stored first come first served; the asking step then
   * runs again once all its waits are answered.
   * @throws FlowError `WEIR_INPUT_NOT_AWAITED` when no step waits on `key`; `WEIR_INPUT_ANSWERED` when it was answered.
   * @throws ValidationError `WEIR_VALIDATION` when `value` does not pass the ask's schema (the step keeps waiting).
   */
  async submitInput(key: string, value: unknown): Promise<void> {
    const wait = this.#waitFor(key);
    if (this.#answers.has(key)) throw answeredAlready(this.runId, key);
    if (wait === undefined) throw notAwaited(this.runId, key, this.waitingFor().map((w) => w.key));
    const what = `the value submitted for input "${key}" of run "${this.runId}"`;
    if (wait.zod !== undefined) validate(wait.zod, value, what);
    else validateAgainstJson(wait.schema, value, what);
    const entry: InputEntry = { key, outcome: 'answered', value, at: now() };
    if (!(await this.#services.store.putInput(this.runId, entry))) {
      await this.#readInputs();
      throw answeredAlready(this.runId, key);
    }
    this.#consume([entry]);
  }

  /**
   * Turns the person in the loop of a hybrid run on or off, recorded with the run. Off: steps
   * waiting now run again and take their default (or fail), and later asks do not wait.
   * Resolves once the change is stored.
   */
  async setHumanInLoop(on: boolean): Promise<void> {
    if (this.#status_ !== RUNNING) throw new FlowError(`cannot change run "${this.runId}": it is ${this.#status_}`, { code: ErrorCode.RUN_STATE });
    if (this.#humanInLoop !== on) {
      this.#humanInLoop = on;
      this.#journal.patchRun({ humanInLoop: on, updatedAt: now() });
      if (!on) for (let i = 0; i < this.#status.length; i++) if (this.#status[i] === WAITING) this.#rerun(i);
    }
    await this.#journal.settled();
  }

  /** What the run's steps wait on now. */
  waitingFor(): WaitInfo[] {
    const waits: WaitInfo[] = [];
    for (let i = 0; i < this.#status.length; i++) {
      if (this.#status[i] !== WAITING && this.#status[i] !== RUNNING) continue;
      for (const wait of this.#waits[i] ?? []) if (!this.#answers.has(wait.key)) waits.push(waitInfo(this.graph.nodes[i]!.name, wait));
    }
    return waits;
  }

  /** The wait on `key` of a waiting step, or of a running attempt that asked it. */
  #waitFor(key: string): Wait | undefined {
    for (let i = 0; i < this.#status.length; i++) {
      if (this.#status[i] !== WAITING && this.#status[i] !== RUNNING) continue;
      const wait = this.#waits[i]?.find((w) => w.key === key);
      if (wait !== undefined) return wait;
    }
    return undefined;
  }

  /**
   * An answer the asking step refused (it failed the ask's own schema): forgotten here and in the
   * store, so the key can be answered again; a read of the store before that lands skips it.
   */
  #dropAnswer(key: string): void {
    const entry = this.#answers.get(key);
    if (entry === undefined) return;
    this.#answers.delete(key);
    this.#refused.set(key, entry.at);
    this.#services.store.clearInputs(this.runId, [key]).catch((error: unknown) => {
      process.emitWarning(`weir: run "${this.runId}": a refused answer to "${key}" could not be cleared: ${String(error)}`, { code: WarningCode.INPUT });
    });
  }

  /** Takes in how waits ended: a step whose waits all ended runs again. */
  #consume(entries: readonly InputEntry[]): void {
    if (this.#status_ !== RUNNING) return;
    for (const entry of entries) {
      if (this.#answers.has(entry.key) || this.#refused.get(entry.key) === entry.at) continue;
      this.#answers.set(entry.key, entry);
      for (let i = 0; i < this.#status.length; i++) {
        if (this.#status[i] === WAITING && this.#waits[i]?.some((w) => w.key === entry.key) === true && this.#waitsEnded(i)) this.#rerun(i);
      }
    }
  }

  async #readInputs(): Promise<void> {
    this.#consume(await this.#services.store.readInputs(this.runId));
  }

  #waitsEnded(index: number): boolean {
    return !this.#humanInLoop || (this.#waits[index] ?? []).every((w) => this.#answers.has(w.key));
  }

  /**
   * A waiting step whose waits ended goes back to the queue: it runs again and its asks are
   * answered at once. Its answers are announced now, once each (`input_received`).
   */
  #rerun(index: number): void {
    for (const wait of this.#waits[index] ?? []) {
      const entry = this.#answers.get(wait.key);
      if (entry !== undefined) this.#emit({ type: 'input_received', step: this.graph.nodes[index]!.name, key: wait.key, outcome: entry.outcome });
    }
    this.#clearWait(index);
    this.#status[index] = PENDING;
    this.#touch(index);
    this.#schedule(index);
  }

  /** A step's attempt ended to wait: it holds no slot, and runs again once its waits end. */
  #enterWaiting(index: number, attempt: number, started: number): void {
    const ended = now();
    const waits = this.#waits[index]!;
    this.#attempts[index]!.push({ attempt, startTime: started, endTime: ended, duration: ended - started, waitedFor: waits.map((w) => w.key) });
    // Not counted by the retry policy: waiting is not failing.
    this.#attemptBase[index]!++;
    this.#status[index] = WAITING;
    this.#waitingSteps.add(index);
    this.#touch(index);
    this.#holdWait(index);
  }

  /** Keeps a step waiting: it runs again at once if its waits ended, else at its first deadline, or when an answer comes. */
  #holdWait(index: number): void {
    if (this.#waitsEnded(index)) {
      this.#rerun(index);
      return;
    }
    const open = this.#waits[index]!.filter((w) => !this.#answers.has(w.key) && w.deadline !== undefined);
    if (open.length > 0) {
      const due = Math.min(...open.map((w) => w.deadline!));
      clearTimer(this.#waitTimers.get(index));
      this.#waitTimers.set(index, setTimer(() => void this.#expire(index), Math.max(0, due - now())));
    }
    this.#pollInputs();
  }

  /** A wait's deadline passed: it expires (unless an answer was stored first), and the step takes its default or fails. */
  async #expire(index: number): Promise<void> {
    this.#waitTimers.delete(index);
    if (this.#status_ !== RUNNING || this.#status[index] !== WAITING) return;
    const at = now();
    const due = this.#waits[index]!.filter((w) => !this.#answers.has(w.key) && w.deadline !== undefined && w.deadline <= at);
    try {
      const entries: InputEntry[] = [];
      for (const wait of due) {
        const entry: InputEntry = { key: wait.key, outcome: 'expired', at };
        if (await this.#services.store.putInput(this.runId, entry)) entries.push(entry);
      }
      this.#consume(entries);
      await this.#readInputs();
    } catch (error) {
      process.emitWarning(`weir: run "${this.runId}": an expired wait could not be recorded: ${String(error)}`, { code: WarningCode.INPUT_EXPIRY });
    }
    if (this.#status_ === RUNNING && this.#status[index] === WAITING && !this.#waitTimers.has(index)) this.#holdWait(index);
  }

  #clearWait(index: number): void {
    const timer = this.#waitTimers.get(index);
    if (timer === undefined) return;
    clearTimer(timer);
    this.#waitTimers.delete(index);
  }

  /** While steps wait and the run goes on here, reads the answers other contexts store. */
  #pollInputs(): void {
    if (this.#inputPoll !== undefined) return;
    this.#inputPoll = realSetTimeout(() => {
      this.#inputPoll = undefined;
      if (this.#status_ !== RUNNING || !this.#hasWaiting()) return;
      this.#readInputs().then(
        () => this.#pollInputs(),
        () => this.#pollInputs(),
      );
    }, INPUT_POLL_MS).unref();
  }

  /** Whether a step waits now. */
  #hasWaiting(): boolean {
    for (const index of this.#waitingSteps) {
      if (this.#status[index] === WAITING) return true;
      this.#waitingSteps.delete(index);
    }
    return false;
  }

  /** Parks the run when steps wait and nothing else can go on: committed as `waiting`, its lease released. */
  #maybePark(): void {
    if (this.#status_ !== RUNNING || this.#inQueue > 0 || this.#readyHead < this.#ready_.length) return;
    if (this.#running.size > 0 || this.#committing.size > 0 || this.#retryTimers.size > 0 || !this.#hasWaiting()) return;
    this.#status_ = WAITING;
    const waits = this.waitingFor();
    this.#clearTimers();
    const at = now();
    const event: WeirEvent = {
      type: 'run_waiting',
      runId: this.runId,
      seq: this.#journal.nextSeq(),
      time: at,
      waitingFor: waits.map((w) => (w.deadline === undefined ? { step: w.step, key: w.key } : { step: w.step, key: w.key, deadline: w.deadline })),
    };
    // The store releases the lease with this commit: a run that waits is held by nobody.
    this.#parking = this.#journal.finish({ status: WAITING, updatedAt: at }, event).then(
      () => {
        this.#journal.stop(new FlowError(`run "${this.runId}" waits for input`, { code: ErrorCode.RUN_STATE }));
        this.#parked = true;
        // What a parked run kept in memory is in the store: only its id and how to follow it stay.
        this.events.release();
        this.#outputs.fill(undefined);
        this.#inputs.fill(undefined);
        this.#waits.fill(undefined);
        this.#answers.clear();
        this.#services.parked(this);
        this.#leave?.();
        if (this.#asked) this.#settle(this.#follow());
      },
      (thrown: FlowError) => {
        // Not recorded as waiting: in the store it stays running until its lease runs out and recover() goes on with it.
        this.#status_ = RUNNING;
        this.#finishRun(FAILED, toErrorData(new FlowError(`run "${this.runId}": its wait for input could not be recorded: ${thrown.message}`, { code: thrown.code, cause: thrown })));
      },
    );
  }

  // ---- JournalSink ----------------------------------------------------------------------------

  deliver(event: WeirEvent): void {
    this.events.push(event);
    this.#services.emit(event);
  }

  /** Another context took the run over: stop here without writing anything more. */
  leaseLost(error: FlowError): void {
    this.#journal.stop(error);
    if (this.#status_ !== RUNNING) return;
    const data = toErrorData(error);
    this.#status_ = FAILED;
    this.#clearTimers();
    const running = [...this.#running.values()];
    this.#running.clear();
    for (let i = 0; i < this.#status.length; i++) {
      if (this.#status[i] === PENDING || this.#status[i] === RUNNING || this.#status[i] === WAITING) this.#status[i] = CANCELLED;
    }
    for (const step of running) step.abort(new CancelledError(`run "${this.runId}" was taken over by another context`, { cause: error }));
    this.#settleWith(this.#buildResult(FAILED, data, now()));
  }

  /**
   * Stops working on the run here but leaves it running in the store, with what it completed
   * committed and its lease released, so `recover()` goes on with it at once (a context closing
   * over a durable store). `result()` then gives status `running` with `reason` as its error.
   */
  suspend(reason: FlowError): Promise<void> {
    if (this.#status_ !== RUNNING) return this.#done.then(noop, noop);
    this.#status_ = CANCELLED;
    this.#clearTimers();
    const running = this.#takeRunning();
    // Not current any more, and not recorded: in the store these steps stay as they were. A step
    // whose output is being committed is left be: the wait below lets that commit land.
    for (let i = 0; i < this.#status.length; i++) {
      if (this.#status[i] === RUNNING && this.graph.nodes[i]!.processor !== undefined && !this.#committing.has(i)) {
        this.#status[i] = PENDING;
        this.#changed.delete(i);
      }
    }
    for (const [, step] of running) step.abort(new CancelledError(reason.message, { cause: reason }));
    const ended = now();
    const { store, owner } = this.#services;
    return this.#journal
      .settled()
      .then(() => {
        this.#journal.stop(reason);
        return store.releaseLease(this.runId, owner, this.#journal.leaseToken);
      })
      .then(noop, (error: unknown) => process.emitWarning(`weir: run "${this.runId}": its lease could not be released: ${String(error)}`, { code: WarningCode.LEASE_RELEASE }))
      .finally(() => this.#settleWith(this.#buildResult(RUNNING, toErrorData(reason), ended)));
  }

  // ---- StepHost -------------------------------------------------------------------------------

  /** A dependency's output: kept in memory once durable (or read back from the journal on restore). */
  async dependencyOutput(index: number): Promise<unknown> {
    if (this.#status[index] !== COMPLETED) return undefined;
    return this.#outputs[index];
  }

  progress(index: number, attempt: number, fraction: number, message: string | undefined): void {
    if (!this.#isCurrent(index, attempt)) return;
    const step = this.graph.nodes[index]!.name;
    this.#progress[index] = message === undefined ? { fraction } : { fraction, message };
    this.#emit(
      message === undefined
        ? { type: 'step_progress', step, attempt, progress: fraction }
        : { type: 'step_progress', step, attempt, progress: fraction, message },
    );
    this.#touch(index);
  }

  /**
   * @throws FlowError `WEIR_SERIALIZATION` when the store cannot store `details` (the event
   * would otherwise hold back every later commit of the run).
   */
  heartbeat(index: number, attempt: number, details: unknown): void {
    if (!this.#isCurrent(index, attempt)) return;
    const step = this.graph.nodes[index]!.name;
    if (details !== undefined) this.#services.store.checkStorable(details, `heartbeat details of flow ${step}`);
    this.#armHeartbeat(index, attempt);
    this.#emit(details === undefined ? { type: 'step_heartbeat', step, attempt } : { type: 'step_heartbeat', step, attempt, details });
  }

  get personInLoop(): boolean {
    return this.#humanInLoop;
  }

  inputAnswer(key: string): InputEntry | undefined {
    return this.#answers.get(key);
  }

  inputAnswers(): Readonly<Record<string, InputAnswer>> | undefined {
    if (this.#answers.size === 0) return undefined;
    const answers: Record<string, InputAnswer> = {};
    for (const [key, entry] of this.#answers) answers[key] = entry.outcome === 'answered' ? { outcome: entry.outcome, value: entry.value } : { outcome: entry.outcome };
    return answers;
  }

  inputWait(index: number, attempt: number, ask: InputAsk, schema: AnySchema | undefined): void {
    if (!this.#isCurrent(index, attempt)) return;
    const waits = (this.#waits[index] ??= []);
    if (waits.some((w) => w.key === ask.key)) return;
    if (ask.rejected !== undefined) this.#dropAnswer(ask.key);
    const askedAt = now();
    const wait: Wait = {
      key: ask.key,
      schema: ask.schema,
      askedAt,
      hasDefault: ask.hasDefault,
      ...(ask.timeout === undefined ? {} : { deadline: askedAt + ask.timeout }),
      ...(schema === undefined ? {} : { zod: schema }),
    };
    waits.push(wait);
    const step = this.graph.nodes[index]!.name;
    this.#emit({
      type: 'input_required',
      step,
      attempt,
      key: ask.key,
      schema: ask.schema,
      hasDefault: ask.hasDefault,
      ...(wait.deadline === undefined ? {} : { deadline: wait.deadline }),
      ...(ask.rejected === undefined ? {} : { rejected: ask.rejected }),
    });
    // Recorded with the ask, so another process that reads the event finds the wait in the store.
    this.#touch(index);
  }

  // ---- starting -------------------------------------------------------------------------------

  /** Applies what the journal says: completed steps are kept, the rest run (again). */
  #restore(restore: RestoredRun): void {
    for (const entry of restore.inputs) this.#answers.set(entry.key, entry);
    const redo = restore.from === undefined ? new Set<number>() : this.#downstreamOf(this.graph.byName.get(restore.from)!.index);
    const at = now();
    for (const node of this.graph.nodes) {
      const i = node.index;
      const record = restore.steps.get(node.name);
      if (record === undefined) continue;
      const attempts = [...record.attempts];
      this.#startTimes[i] = record.startTime;
      if (record.status === COMPLETED && !redo.has(i) && (node.processor === undefined || restore.outputs.has(node.name))) {
        this.#kept[i] = COMPLETED;
        this.#attempts[i] = attempts;
        this.#endTimes[i] = record.endTime;
        this.#outputs[i] = restore.outputs.get(node.name);
        continue;
      }
      if (restore.rerunEnded !== true && (record.status === FAILED || record.status === SKIPPED)) {
        // A run goes on where it was: a step that failed for good stays failed (no fresh retry
        // budget), one skipped stays skipped, and neither is announced again. Only a resume reruns them.
        this.#kept[i] = record.status;
        if (node.processor === undefined) this.#announced[i] = true;
        this.#attempts[i] = attempts;
        this.#endTimes[i] = record.endTime;
        this.#errors[i] = record.error;
        continue;
      }
      if (record.status === RUNNING && node.processor !== undefined && !redo.has(i)) {
        // The attempt its lost owner was running: recorded, and not counted against the retry policy.
        const started = record.updatedAt;
        const lost = new FlowError(`flow "${node.name}": attempt ${attempts.length + 1} was lost with the process running it`, { code: ErrorCode.OWNER_LOST });
        attempts.push({ attempt: attempts.length + 1, startTime: started, endTime: at, duration: Math.max(0, at - started), error: toErrorData(lost) });
      }
      if (record.status === RUNNING && node.processor === undefined && !redo.has(i)) this.#announced[i] = true;
      if (record.status === PENDING && record.retryAt !== undefined) this.#retryAt[i] = record.retryAt;
      // A step that waited waits again when its turn comes (unless its waits ended meanwhile).
      if (record.status === WAITING && record.waitingFor !== undefined && !redo.has(i)) this.#waits[i] = [...record.waitingFor];
      this.#attempts[i] = attempts;
      // The retry policy starts afresh after a resume; after a recovery only the lost attempt is not counted.
      // Attempts that ended to wait are never counted.
      const waited = attempts.filter((a) => a.waitedFor !== undefined).length;
      this.#attemptBase[i] =
        record.status === PENDING || record.status === WAITING ? waited : record.status === RUNNING && node.processor !== undefined && !redo.has(i) ? 1 + waited : attempts.length;
      this.#touch(i);
    }
  }

  /** The step, everything under it, everything that depends on any of those, and the composites that hold them. */
  #downstreamOf(start: number): Set<number> {
    const redo = new Set<number>();
    const visit = (i: number, withChildren: boolean): void => {
      if (redo.has(i)) return;
      redo.add(i);
      const node = this.graph.nodes[i]!;
      if (withChildren) for (const child of node.children) visit(child, true);
      for (const edge of node.dependants) visit(edge.index, true);
      // Its composite's output changes with it, so the composite's dependants run again too; the
      // composite itself only re-assembles, and its other children stay kept.
      if (node.parent !== -1) visit(node.parent, false);
    };
    visit(start, true);
    return redo;
  }

  #begin(restore: RestoredRun | undefined): void {
    if (this.#status_ !== RUNNING) return;
    if (restore?.cancelWith !== undefined) {
      this.#journal.patchRun({ status: RUNNING, updatedAt: now() });
      // Steps that ended before keep how they ended; the rest are cancelled.
      for (let i = 0; i < this.#status.length; i++) if (this.#kept[i] !== undefined) this.#status[i] = this.#kept[i]!;
      this.#stop(CANCELLED, restore.cancelWith);
      return;
    }
    if (restore !== undefined) {
      const event: Mutable<Extract<EventInput, { type: 'run_resumed' }>> = { type: 'run_resumed', reason: restore.reason };
      if (restore.reason === 'recovered') event.recoveries = restore.record.recoveries;
      if (restore.from !== undefined) event.from = restore.from;
      if (restore.fallback !== undefined) event.fallback = restore.fallback;
      this.#emit(event);
      this.#journal.patchRun({ status: RUNNING, updatedAt: now(), endedAt: undefined, error: undefined, output: undefined });
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
    this.#ready(0);
    // A restored run whose steps all still wait parks again at once.
    this.#maybePark();
  }

  /** The run's record could not be stored: an id that exists, or an input that cannot be stored. */
  #notCreated(error: FlowError, runStart: WeirEvent): void {
    if (error.code === ErrorCode.RUN_CONFLICT) {
      this.#status_ = CANCELLED;
      this.#clearTimers();
      this.#journal.detach();
      this.events.end();
      this.#gone = true;
      this.#leave?.();
      this.#services.finished(this);
      this.#settle(this.#services.conflict(this, error));
      return;
    }
    // Nothing is stored for this run: its events go to listeners only.
    this.#journal.detach(runStart);
    if (this.#status_ !== RUNNING) return;
    this.#failUnfinished(toErrorData(error));
  }

  /** Ends the run before any (more) step runs: every unfinished step is skipped with `error`. */
  #failUnfinished(error: ErrorData): void {
    const ended = now();
    for (let i = 0; i < this.#status.length; i++) {
      if (this.#kept[i] === COMPLETED) {
        this.#status[i] = COMPLETED;
        continue;
      }
      this.#status[i] = SKIPPED;
      this.#errors[i] = error;
      this.#endTimes[i] = ended;
      this.#touch(i);
    }
    this.#finishRun(FAILED, error);
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
    for (let i = 0; i < this.#status.length; i++) this.#touch(i);
    this.#finishRun(FAILED, { ...error, step: entry.name });
  }

  // ---- scheduling -----------------------------------------------------------------------------

  #isCurrent(index: number, attempt: number): boolean {
    return this.#status[index] === RUNNING && this.#attempts[index]!.length === attempt - 1;
  }

  #emit(event: EventInput): void {
    this.#journal.append({ ...event, runId: this.runId, seq: this.#journal.nextSeq(), time: now() });
  }

  /** Marks a step's record to be written with the run's next commit, in its state then. */
  #touch(index: number): void {
    this.#changed.add(index);
    this.#journal.changed();
  }

  changedSteps(): StepRecord[] {
    const records: StepRecord[] = [];
    for (const index of this.#changed) records.push(this.#record(index));
    this.#changed.clear();
    return records;
  }

  /** A step's durable state now. */
  #record(i: number): StepRecord {
    const node = this.graph.nodes[i]!;
    const status = this.#status[i]!;
    const record: Mutable<StepRecord> = {
      runId: this.runId,
      step: node.name,
      status,
      attempts: this.#attempts[i]!.slice(),
      hasOutput: false,
      updatedAt: now(),
    };
    if (node.processor === undefined) {
      record.composite = true;
      record.children = node.childNames;
    }
    if (this.#startTimes[i] !== undefined) record.startTime = this.#startTimes[i];
    if (this.#endTimes[i] !== undefined && status !== RUNNING && status !== PENDING) record.endTime = this.#endTimes[i];
    if (this.#errors[i] !== undefined && status !== COMPLETED) record.error = this.#errors[i];
    if (this.#progress[i] !== undefined) record.progress = this.#progress[i];
    if (this.#retryAt[i] !== undefined && status === PENDING) record.retryAt = this.#retryAt[i];
    if (status === RUNNING && node.processor !== undefined) record.updatedAt = this.#attemptStarted[i]!;
    const waits = this.#waits[i];
    if (waits !== undefined && (status === WAITING || status === RUNNING)) record.waitingFor = waits.map(({ zod: _, ...wait }) => wait);
    return record;
  }

  #inputOf(node: GraphNode): unknown {
    if (node.parent === -1) return this.input;
    return node.previous === -1 ? this.#inputs[node.parent] : this.#outputs[node.previous];
  }

  #ready(index: number): void {
    if (this.#readied[index]) return;
    this.#readied[index] = true;
    const node = this.graph.nodes[index]!;
    this.#inputs[index] = this.#inputOf(node);
    if (node.processor !== undefined) {
      if (this.#kept[index] === COMPLETED) {
        this.#finishNode(index, COMPLETED, this.#endTimes[index] ?? now());
        return;
      }
      if (this.#kept[index] === FAILED) {
        this.#culprit[index] = node.name;
        this.#noteFailure(node, this.#errors[index]!);
        this.#finishNode(index, FAILED, this.#endTimes[index] ?? now());
        return;
      }
      const waits = this.#waits[index];
      if (waits !== undefined) {
        // A restored step that waited: it waits again, or runs again if its waits ended meanwhile.
        this.#status[index] = WAITING;
        this.#waitingSteps.add(index);
        this.#holdWait(index);
        return;
      }
      const due = this.#retryAt[index];
      if (due !== undefined && due > now()) {
        this.#retryTimers.set(
          index,
          setTimer(() => {
            this.#retryTimers.delete(index);
            this.#schedule(index);
          }, due - now()),
        );
        return;
      }
      this.#schedule(index);
      return;
    }
    this.#status[index] = RUNNING;
    if (this.#kept[index] !== COMPLETED && !this.#announced[index]) {
      this.#startTimes[index] = now();
      if (index !== 0) this.#emit({ type: 'step_start', step: node.name, attempt: 1 });
      this.#touch(index);
    }
    // A child may have ended already (ctx.skip before its composite started).
    let left = 0;
    for (const child of node.children) if (this.#status[child] === PENDING || this.#status[child] === RUNNING) left++;
    this.#childrenLeft[index] = left;
    if (left === 0) {
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
    this.#maybePark();
  };

  async #attempt(index: number): Promise<void> {
    if (this.#status[index] !== PENDING || this.#status_ !== RUNNING) return;
    const node = this.graph.nodes[index]!;
    const attempt = this.#attempts[index]!.length + 1;
    const started = now();
    this.#status[index] = RUNNING;
    this.#attemptStarted[index] = started;
    this.#retryAt[index] = undefined;
    this.#waits[index] = undefined;
    if (this.#startTimes[index] === undefined) this.#startTimes[index] = started;
    const step = new StepContext(this, index, node.name, attempt, node.dependencyNames);
    this.#running.set(index, step);
    this.#journal.append({ type: 'step_start', runId: this.runId, seq: this.#journal.nextSeq(), time: started, step: node.name, attempt });
    this.#touch(index);

    let timer: TimerHandle | undefined;
    let startGuard: TimerHandle | undefined;
    // Set once the processor has started, or the attempt is over: a late start arms nothing.
    let begun = false;
    try {
      // A listener of step_start may have cancelled the run: then the processor never runs.
      if (!this.#isCurrent(index, attempt)) return;
      const executor = this.#services.executors.get(node.type)!;
      // The step's timeouts count from the processor's start, not a worker's start-up before it.
      const onStart =
        node.timeout === undefined && node.heartbeatTimeout === undefined
          ? undefined
          : (): void => {
              if (begun) return;
              begun = true;
              clearRealTimer(startGuard);
              if (node.timeout !== undefined) {
                const timeout = node.timeout;
                timer = setTimer(() => {
                  step.abort(new TimeoutError(`flow "${node.name}": attempt ${attempt} exceeded its timeout of ${timeout} ms`, { timeout }));
                }, timeout);
              }
              if (node.heartbeatTimeout !== undefined) this.#armHeartbeat(index, attempt);
            };
      const pending = executor.execute({ processor: node.processor!, input: this.#inputs[index], step, abort: step, inputs: step, started: onStart });
      if (onStart !== undefined && !begun) {
        // Until then the same limit bounds the wait (for a slot, a worker, its module), so a module that never loads
        // still fails the attempt. On the real clock: start-up takes real time, which fake timers in tests must not see.
        const limit = node.timeout ?? node.heartbeatTimeout!;
        startGuard = setRealTimer(() => {
          step.abort(
            new TimeoutError(
              `flow "${node.name}": attempt ${attempt} did not start within ${limit} ms (waiting for a free worker, for one to start, or for it to load the processor's module)`,
              { timeout: limit },
            ),
          );
        }, limit);
      }
      // An abort (timeout or cancel) ends the wait even when the processor ignores its signal, so the slot is freed.
      const output = await new Promise<unknown>((resolve, reject) => {
        step.onAbort(reject);
        pending.then(resolve, reject);
      });
      clearTimer(timer);
      this.#disarmHeartbeat(index);
      if (!this.#isCurrent(index, attempt)) return;
      const ended = now();
      const attempts = [...this.#attempts[index]!, { attempt, startTime: started, endTime: ended, duration: ended - started }];
      // The output, the step's record and its step_complete are one commit; dependants start once it is durable.
      this.#changed.delete(index);
      this.#committing.add(index);
      await this.#journal.complete(
        {
          runId: this.runId,
          step: node.name,
          status: COMPLETED,
          attempts,
          startTime: this.#startTimes[index],
          endTime: ended,
          hasOutput: true,
          updatedAt: ended,
          ...(this.#progress[index] === undefined ? {} : { progress: this.#progress[index] }),
        },
        output,
        { type: 'step_complete', runId: this.runId, seq: this.#journal.nextSeq(), time: ended, step: node.name, attempt, duration: ended - started },
      );
      this.#committing.delete(index);
      // Durable: it completed, even if the run was stopped meanwhile (a stop leaves committing steps be).
      if (!this.#isCurrent(index, attempt)) return;
      this.#attempts[index] = attempts;
      this.#outputs[index] = output;
      this.#finishNode(index, COMPLETED, ended);
    } catch (error) {
      this.#committing.delete(index);
      if (!this.#isCurrent(index, attempt)) return;
      if (isInputWaitSignal(error) && this.#waits[index] !== undefined) {
        this.#enterWaiting(index, attempt, started);
        return;
      }
      this.#attemptFailed(node, attempt, started, error);
    } finally {
      begun = true;
      clearRealTimer(startGuard);
      clearTimer(timer);
      this.#disarmHeartbeat(index);
      if (this.#running.get(index) === step) this.#running.delete(index);
    }
  }

  /** (Re)starts the wait for the next heartbeat of a step's current attempt. */
  #armHeartbeat(index: number, attempt: number): void {
    const node = this.graph.nodes[index]!;
    const limit = node.heartbeatTimeout;
    if (limit === undefined) return;
    clearTimer(this.#heartbeatTimers.get(index));
    this.#heartbeatTimers.set(
      index,
      setTimer(() => {
        this.#heartbeatTimers.delete(index);
        if (!this.#isCurrent(index, attempt)) return;
        this.#running.get(index)?.abort(
          new TimeoutError(`flow "${node.name}": attempt ${attempt} sent no heartbeat for ${limit} ms`, { timeout: limit }),
        );
      }, limit),
    );
  }

  #disarmHeartbeat(index: number): void {
    const timer = this.#heartbeatTimers.get(index);
    if (timer === undefined) return;
    clearTimer(timer);
    this.#heartbeatTimers.delete(index);
  }

  #attemptFailed(node: GraphNode, attempt: number, started: number, thrown: unknown): void {
    const ended = now();
    const policy = node.retry;
    const index = node.index;
    // The policy counts the attempts of this run of the step: a resume or a recovery starts afresh.
    const counted = attempt - this.#attemptBase[index]!;
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
    this.#attempts[index]!.push({ attempt, startTime: started, endTime: ended, duration: ended - started, error: data });
    if (retryable) {
      const delay = backoffDelay(policy, counted);
      this.#status[index] = PENDING;
      this.#retryAt[index] = ended + delay;
      this.#emit({
        type: 'step_retry',
        step: node.name,
        attempt,
        maxAttempts: policy.maxAttempts,
        delay,
        error: data,
        message: `will retry in ${delay} ms (attempt ${counted + 1} of ${policy.maxAttempts})`,
      });
      this.#touch(index);
      this.#retryTimers.set(
        index,
        setTimer(() => {
          this.#retryTimers.delete(index);
          this.#schedule(index);
        }, delay),
      );
      return;
    }
    this.#errors[index] = data;
    this.#culprit[index] = node.name;
    this.#status[index] = FAILED;
    this.#endTimes[index] = ended;
    this.#emit({ type: 'step_failed', step: node.name, attempt, error: data });
    this.#touch(index);
    this.#noteFailure(node, data);
    this.#finishNode(index, FAILED, ended);
  }

  /** Records the run's first failing step whose failure is not tolerated (`allowFailure`) on the way up. */
  #noteFailure(node: GraphNode, data: ErrorData): void {
    if (this.#runError === undefined && !node.failureTolerated) this.#runError = { ...data, step: node.name };
  }

  /**
   * Whether a child's end fails its composite: a failure not allowed (`allowFailure`), or a cancel.
   * A skipped child fails nothing by itself: the sibling whose failure skipped it decides.
   */
  #failsParent(index: number): boolean {
    const status = this.#status[index];
    if (status === COMPLETED || status === SKIPPED) return false;
    return !(status === FAILED && this.graph.nodes[index]!.allowFailure);
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
      this.#finishRun(status === COMPLETED ? COMPLETED : FAILED, status === COMPLETED ? undefined : this.#runError);
      return;
    }
    if (this.#status_ !== RUNNING) return;
    const node = this.graph.nodes[index]!;
    const ok = status === COMPLETED;
    const ended = this.#endTimes[index]!;
    // Siblings wait for their composite to start: one it readies itself once their dependencies are done.
    const parentRunning = this.#status[node.parent] === RUNNING;
    for (const edge of node.dependants) {
      if (this.#status[edge.index] !== PENDING) continue;
      if (!ok && edge.required) {
        this.#skip(edge.index, this.#culprit[index]!, ended);
      } else if (--this.#waitingOn[edge.index]! === 0 && parentRunning) {
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
      // A child already completed (a skip by hand) keeps its result: history is only appended to.
      if (this.#status[i] === COMPLETED) return;
      this.#status[i] = SKIPPED;
      this.#errors[i] = data;
      this.#culprit[i] = culprit;
      this.#endTimes[i] = ended;
      if (this.#kept[i] !== SKIPPED) {
        this.#emit({ type: 'step_skipped', step: n.name, status: SKIPPED, error: data });
        this.#touch(i);
      }
      for (const child of n.children) markSkipped(child);
    };
    for (const child of node.children) markSkipped(child);
    this.#status[index] = SKIPPED;
    this.#errors[index] = data;
    this.#culprit[index] = culprit;
    this.#endTimes[index] = ended;
    if (this.#kept[index] !== SKIPPED) {
      this.#emit({ type: 'step_skipped', step: node.name, status: SKIPPED, error: data });
      this.#touch(index);
    }
    this.#finishNode(index, SKIPPED, ended);
  }

  #finishComposite(index: number): void {
    const node = this.graph.nodes[index]!;
    const output = this.#partialOutput(index);
    const failedChild = node.children.find((child) => this.#failsParent(child));
    const ended = now();
    this.#outputs[index] = output;
    if (failedChild === undefined) {
      if (this.#kept[index] === COMPLETED) {
        this.#finishNode(index, COMPLETED, this.#endTimes[index] ?? ended);
        return;
      }
      this.#status[index] = COMPLETED;
      this.#endTimes[index] = ended;
      if (index !== 0) this.#emit({ type: 'step_complete', step: node.name, attempt: 1, duration: ended - this.#startTimes[index]! });
      this.#touch(index);
      this.#finishNode(index, COMPLETED, ended);
      return;
    }
    const culprit = this.#culprit[failedChild] ?? this.graph.nodes[failedChild]!.name;
    this.#culprit[index] = culprit;
    this.#errors[index] = this.#errors[this.graph.byName.get(culprit)!.index];
    this.#status[index] = FAILED;
    this.#endTimes[index] = ended;
    if (this.#kept[index] !== FAILED) {
      if (index !== 0) this.#emit({ type: 'step_failed', step: node.name, attempt: 1, error: this.#errors[index]! });
      this.#touch(index);
    }
    this.#finishNode(index, FAILED, ended);
  }

  /**
   * Takes the running attempts out of `#running`, to stop them; a step whose output is being
   * committed is left be: it completes once that commit lands.
   */
  #takeRunning(): [index: number, step: StepContext][] {
    const running = [...this.#running].filter(([index]) => !this.#committing.has(index));
    for (const [index] of running) this.#running.delete(index);
    return running;
  }

  /** Ends the run early: cancel or run timeout. */
  #stop(status: typeof CANCELLED | typeof FAILED, reason: CancelledError | TimeoutError): void {
    if (this.#status_ !== RUNNING) return;
    const data = toErrorData(reason);
    const ended = now();
    const running = this.#takeRunning();
    for (const [index] of running) this.#cancelStep(index, data, ended);
    for (let i = 0; i < this.#status.length; i++) {
      const status = this.#status[i];
      if (this.#committing.has(i)) continue;
      if (status === PENDING && this.#attempts[i]!.length > this.#attemptBase[i]!) {
        // Between attempts (waiting on backoff or back in the queue): it did start, so it is reported.
        this.#cancelStep(i, data, ended);
      } else if (status === PENDING || status === RUNNING || status === WAITING) {
        this.#status[i] = CANCELLED;
        this.#endTimes[i] = ended;
        this.#touch(i);
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
    this.#touch(index);
  }

  #clearTimers(): void {
    this.#ready_.length = 0;
    this.#readyHead = 0;
    clearTimer(this.#timeoutTimer);
    for (const timer of this.#retryTimers.values()) clearTimer(timer);
    this.#retryTimers.clear();
    for (const timer of this.#heartbeatTimers.values()) clearTimer(timer);
    this.#heartbeatTimers.clear();
    for (const timer of this.#waitTimers.values()) clearTimer(timer);
    this.#waitTimers.clear();
    if (this.#inputPoll !== undefined) realClearTimeout(this.#inputPoll);
    this.#inputPoll = undefined;
    this.#settings.signal?.removeEventListener('abort', this.#onAbort);
  }

  #finishRun(status: FlowStatus, error: ErrorData | undefined): void {
    if (this.#status_ !== RUNNING) return;
    this.#status_ = status;
    this.#clearTimers();
    const ended = now();
    const duration = ended - this.startTime;
    const seq = this.#journal.nextSeq();
    const event: WeirEvent =
      status === COMPLETED
        ? { type: 'run_complete', runId: this.runId, seq, time: ended, duration }
        : status === CANCELLED
          ? { type: 'run_cancelled', runId: this.runId, seq, time: ended, duration, error: error! }
          : { type: 'run_failed', runId: this.runId, seq, time: ended, duration, error: error! };
    const patch = {
      status,
      updatedAt: ended,
      endedAt: ended,
      ranBy: this.#services.processId,
      error,
      // A composite's output is its children's, already stored with them.
      output: this.graph.root.processor !== undefined && status === COMPLETED ? this.#outputs[0] : undefined,
    };
    // The result is read once the end is recorded: a completion committed before it counts.
    this.#journal.finish(patch, event).then(
      () => this.#settleWith(this.#buildResult(status, error, ended)),
      (thrown: FlowError) => {
        const result = this.#buildResult(status, error, ended);
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
    this.events.end();
    this.#services.finished(this);
    this.#settle(result);
  }

  #buildResult(status: FlowStatus, error: ErrorData | undefined, ended: number): FlowResult {
    const root = this.graph.root;
    const steps: Record<string, StepResult> = {};
    for (const node of this.graph.nodes) {
      if (node.index === 0 && root.processor === undefined) continue;
      steps[node.name] = this.#stepResult(node.index);
    }
    return {
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

function waitInfo(step: string, wait: Wait): WaitInfo {
  const { zod: _, ...stored } = wait;
  return { step, ...stored };
}

export function answeredAlready(runId: string, key: string): FlowError {
  return new FlowError(`input "${key}" of run "${runId}" was answered already; an input takes one answer`, { code: ErrorCode.INPUT_ANSWERED });
}

export function notAwaited(runId: string, key: string, awaited: readonly string[]): FlowError {
  return new FlowError(
    `run "${runId}" does not wait on input "${key}" (${awaited.length === 0 ? 'it waits on none' : `it waits on ${awaited.map((k) => `"${k}"`).join(', ')}`})`,
    { code: ErrorCode.INPUT_NOT_AWAITED },
  );
}
