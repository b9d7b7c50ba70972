/**
 * `FlowContext`: the registry of flows and the runtime that runs them, with its executors,
 * its results, its concurrency limit and its events.
 */
import { randomUUID } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import { hostname } from 'node:os';
import { EventEmitter } from 'eventemitter3';
import PQueue from 'p-queue';
import { CancelledError, ErrorCode, FlowError, WarningCode } from '../errors/errors.js';
import { toErrorData } from '../errors/error-data.js';
import type { WeirEvent, WeirEventMap } from '../model/events.js';
import type { Executor } from '../executors/executor.js';
import { InlineExecutor } from '../executors/inline.js';
import { ProcessExecutor } from '../executors/process.js';
import { ThreadExecutor } from '../executors/thread.js';
import { setDefaultRunner, graphVersionOf, Flow, type AnyFlow } from '../model/flow.js';
import { compileGraph, type CompiledGraph, type GraphNode } from '../graph/compile.js';
import { runStoreOf, type ResultsManager } from '../results/results-manager.js';
import { contextSettings, type ContextSettings, type FlowContextOptions } from './options.js';
import type { FlowResult } from '../model/result.js';
import { handleOf, storedHandleOf, type EventsOptions, type RunHandle } from '../run/handle.js';
import { runOptionsSchema, type RunOptions } from '../model/run-options.js';
import { answeredAlready, checkSkip, notAwaited, Run, type RestoredRun, type ResumeReason, type RunServices, type RunSettings } from '../run/run.js';
import { validateAgainstJson } from '../human/ask.js';
import type { InputEntry, ListRunsQuery, LoadedRun, RunOwner, RunPatch, RunRecord, RunStore, StepRecord } from '../storage/journal/run-store.js';
import { FlowStatus, RunMode } from '../model/status.js';
import { infoOf, isStale, outputsOf, storedResult, summaryOf, waitsOf, type RunInfo, type RunList, type RunSummary } from '../durability/history.js';
import {
  listRunsSchema,
  pruneSchema,
  resumeOptionsSchema,
  type ListRunsOptions,
  type PruneRunsOptions,
  type ResumeOptions,
} from '../model/run-options.js';
import { FINISHED } from '../storage/journal/store-support.js';
import { messageOf } from '../util/message-of.js';
import { setImmediate as realSetImmediate } from 'node:timers';
import { clearTimer, now, setTimer, type TimerHandle } from '../util/clock.js';
import { DrainQueue } from '../util/drain-queue.js';
import { parseOptions } from '../util/parse.js';
import { stripUndefined } from '../util/types.js';
import { workerLoading } from '../util/worker-loading.js';

/** The lifecycle of a context. */
export type ContextState = 'open' | 'closing' | 'closed';

const HOST = hostname();
const PROCESS_ID = `${HOST}:${process.pid}`;
let contextCount = 0;
let defaultInstance: FlowContext | undefined;

/**
 * The registry and the runtime: validates flow graphs, runs them, stores their results and emits
 * their events. `close()` releases everything it holds.
 *
 * @example
 * const ctx = new FlowContext({ results: ResultsManager.sqlite('.weir/runs.db') });
 * const result = await ctx.run(pipeline, { text: 'a b c' });
 * await ctx.close();
 */
export class FlowContext {
  /** Where this context stores step outputs. */
  readonly results: ResultsManager;
  // Untyped inside; `on`, `once` and `off` give the typed view.
  readonly #emitter = new EventEmitter();
  readonly #queue: PQueue;
  readonly #executors: ReadonlyMap<string, Executor>;
  readonly #settings: ContextSettings;
  readonly #registry = new Map<string, AnyFlow>();
  /** Flows started here without being registered, by name: a run of one that parks goes on here too. */
  readonly #started = new Map<string, AnyFlow>();
  readonly #compiled = new WeakMap<AnyFlow, { version: number; graph: CompiledGraph }>();
  readonly #runs = new Map<string, Run>();
  #state: ContextState = 'open';
  readonly #backlog = new DrainQueue<WeirEvent>((event) => this.#deliver(event));
  #closing: Promise<void> | undefined;
  readonly #store: RunStore;
  readonly #owner: RunOwner;
  readonly #services: RunServices;
  /** When this context looks again at a parked run (a wait's deadline, or `inputTimeout`), by run id. */
  readonly #waitTimers = new Map<string, TimerHandle>();
  #renewTimer: TimerHandle | undefined;
  #recoverScheduled = false;
  #recoverTimer: TimerHandle | undefined;
  /** Store work started outside any run (recovery, skip, retry links): `close()` waits for it. */
  readonly #chores = new Set<Promise<unknown>>();
  /** Runs that parked here, so the run that goes on with one here takes over its handle (weakly: a dropped handle is not kept). */
  readonly #parked = new Map<string, WeakRef<Run>>();
  /** Handles of runs not live here wait on these: resolved when this context takes the run. */
  readonly #launched = new Map<string, { promise: Promise<void>; resolve: () => void }>();
  /** Parked runs this context is taking again right now, one continuation per run at a time. */
  readonly #continuing = new Map<string, Promise<Run | undefined>>();
  /** Runs a recovery of this context is taking over right now: two overlapping `recover()` calls take each once. */
  readonly #takingOver = new Set<string>();

  /**
   * Makes an isolated context.
   * @throws ValidationError `WEIR_INVALID_OPTIONS` naming the bad option.
   */
  constructor(options: FlowContextOptions = {}) {
    const settings = contextSettings(options);
    this.#settings = settings;
    this.results = settings.results;
    this.#queue = new PQueue({ concurrency: settings.concurrency });
    this.#executors = new Map<string, Executor>([
      ['inline', new InlineExecutor()],
      ['thread', new ThreadExecutor(settings.threads)],
      ['process', new ProcessExecutor(settings.processes)],
    ]);
    this.#store = runStoreOf(this.results);
    this.#owner = { processId: `${PROCESS_ID}:${++contextCount}`, host: HOST, pid: process.pid };
    this.#services = {
      store: this.#store,
      owner: this.#owner,
      leaseMs: this.#settings.leaseMs,
      executors: this.#executors,
      queue: this.#queue,
      processId: PROCESS_ID,
      emit: this.#emit,
      finished: (run) => {
        if (this.#runs.get(run.runId) === run) this.#runs.delete(run.runId);
      },
      conflict: (run, error) => this.#adopt(run, error),
      parked: (run) => {
        if (this.#runs.get(run.runId) === run) this.#runs.delete(run.runId);
        this.#parked.set(run.runId, new WeakRef(run));
        const flow = run.graph.root.flow;
        if (!this.#registry.has(flow.name)) this.#started.set(flow.name, flow);
        // Whoever lets go of a waiting run looks at its answers after: one stored meanwhile is not left unread.
        void this.#chore(this.#review(run.runId));
      },
      follow: (runId) => this.#storedHandle(runId).result(),
      followEvents: (runId, after, signal) => this.#storedHandle(runId).events(signal === undefined ? { after } : { after, signal }),
    };
    if (this.#settings.recover) this.#scheduleRecovery();
  }

  /** The process-wide default context (memory results), made on first use and again after it is closed. */
  static getInstance(): FlowContext {
    if (defaultInstance === undefined || defaultInstance.#state !== 'open') defaultInstance = new FlowContext();
    return defaultInstance;
  }

  /** `open`, `closing` or `closed`. */
  get state(): ContextState {
    return this.#state;
  }

  /** How many worker threads and child processes this context's pools hold now (0 until first used). */
  get workers(): { readonly threads: number; readonly processes: number } {
    return {
      threads: (this.#executors.get('thread') as ThreadExecutor).size,
      processes: (this.#executors.get('process') as ProcessExecutor).size,
    };
  }

  /** How many runs are in progress in this context. */
  get activeRuns(): number {
    return this.#runs.size;
  }

  /**
   * Resolves once the context can run: its store is open (a SQLite file opened and its tables made,
   * a directory created and writable). Without it the store opens on first use, and a bad path fails
   * the first run instead.
   * @throws FlowError `WEIR_STORE` with the store's reason (a directory where a file should be, a
   * file that is not a database, a path that cannot be written); `WEIR_CONTEXT_CLOSED` after `close()`.
   * @example
   * const ctx = await new FlowContext({ results: ResultsManager.sqlite('.weir/runs.db') }).ready();
   */
  async ready(): Promise<this> {
    this.#assertOpen('get ready');
    await this.#chore(this.results.ready());
    return this;
  }

  /**
   * Validates a flow graph and records it by name, so runs can be found by flow name later.
   * @throws DependencyError `WEIR_DEPENDENCY` for a required dependency that is not registered.
   * @throws FlowError `WEIR_DUPLICATE_NAME` when the name is taken by another flow, or repeats in the graph.
   * @throws FlowError `WEIR_CONTEXT_CLOSED` after `close()`; `WEIR_INVALID_OPTIONS` when `flow` is not a Flow.
   */
  register(flow: AnyFlow): this {
    this.#assertOpen('register');
    this.#graphOf(flow);
    const existing = this.#registry.get(flow.name);
    if (existing !== undefined && existing !== flow) {
      throw new FlowError(`a different flow named "${flow.name}" is already registered with this context`, {
        code: ErrorCode.DUPLICATE_NAME,
      });
    }
    this.#registry.set(flow.name, flow);
    if (this.#settings.recover) this.#scheduleRecovery();
    return this;
  }

  /** The flow registered under `name`, if any. */
  getFlow(name: string): AnyFlow | undefined {
    return this.#registry.get(name);
  }

  /**
   * Starts a run and returns its handle at once. In a weir worker, a run asked for by the top level of
   * the module the worker is importing never starts, and its result never comes (see docs/executors.md).
   * @throws FlowError `WEIR_CONTEXT_CLOSED` after `close()`; `WEIR_RUN_CONFLICT` when `runId` is running.
   * @throws ValidationError `WEIR_INVALID_OPTIONS` for bad options; a bad *input* fails the run instead.
   * @throws CancelledError `WEIR_CANCELLED` when `options.signal` is already aborted (nothing is started).
   * @throws DependencyError, FlowError as `register` does, when the flow's graph is invalid.
   */
  start<I, O>(flow: Flow<I, O>, input: I, options: RunOptions = {}): RunHandle<O> {
    // A worker importing this module as a processor module: the run is the main thread's, not a nested one here.
    if (workerLoading()?.holdRun() === true) return heldHandle(options);
    this.#assertOpen('start a run');
    const parsed = parseOptions(runOptionsSchema, options, 'run options');
    const graph = this.#graphOf(flow);
    if (parsed.signal?.aborted === true) {
      const reason: unknown = parsed.signal.reason;
      throw reason instanceof CancelledError ? reason : new CancelledError(`the run of "${flow.name}" was not started: its signal is already aborted`, { cause: reason });
    }
    const runId = parsed.runId ?? randomUUID();
    const live = this.#runs.get(runId);
    if (live !== undefined) {
      // Idempotent start: the same flow and input get the run that exists.
      if (live.graph.root.flow === flow && isDeepStrictEqual(live.input, input)) return handleOf<O>(live);
      throw conflictWith(runId, 'is running in this context');
    }
    const mode = parsed.mode ?? RunMode.BATCH;
    if (parsed.humanInLoop !== undefined && mode !== RunMode.HYBRID) {
      throw new FlowError(`run options: humanInLoop is for mode 'hybrid' only (mode is '${mode}')`, { code: ErrorCode.INVALID_OPTIONS });
    }
    return handleOf<O>(
      this.#launch(graph, input, {
        runId,
        mode,
        humanInLoop: mode === RunMode.INTERACTIVE || (mode === RunMode.HYBRID && (parsed.humanInLoop ?? true)),
        timeout: parsed.timeout,
        signal: parsed.signal,
        concurrency: parsed.concurrency ?? Infinity,
      }),
    );
  }

  #launch(graph: CompiledGraph, input: unknown, settings: RunSettings): Run {
    const run = new Run(graph, input, settings, this.#services);
    this.#runs.set(settings.runId, run);
    const parked = this.#parked.get(settings.runId)?.deref();
    this.#parked.delete(settings.runId);
    parked?.continuedBy(run);
    const launched = this.#launched.get(settings.runId);
    if (launched !== undefined) {
      this.#launched.delete(settings.runId);
      launched.resolve();
    }
    this.#renewLater();
    run.start();
    return run;
  }

  /**
   * Runs a flow to its end; resolves to its `FlowResult` (a failed step fails the result, it does not reject).
   * @throws FlowError rejects with what `start` throws: a closed context, bad options, an aborted signal, an invalid graph.
   */
  async run<I, O>(flow: Flow<I, O>, input: I, options: RunOptions = {}): Promise<FlowResult<O>> {
    return this.start(flow, input, options).result();
  }

  /**
   * Cancels a run of this context: running steps see `step.signal` abort, pending ones never start.
   * Resolves once the run has ended as `cancelled`.
   * @throws FlowError `WEIR_RUN_NOT_FOUND` when no such run exists; `WEIR_RUN_STATE` when it has
   * ended, or another context runs it; `WEIR_CONTEXT_CLOSED` once the context is closed.
   */
  async cancel(runId: string, reason?: string): Promise<void> {
    this.#assertNotClosed('cancel a run');
    const found = this.#liveRun(runId);
    const run = found instanceof Promise ? await found : found;
    if (run === undefined) {
      const loaded = await this.#load(runId);
      if (loaded.run.status === FlowStatus.WAITING) {
        // Waiting for input here or elsewhere: taken, and cancelled.
        const cancelled = await this.#chore(this.#continueWaiting(loaded, 'resumed', { cancelWith: new CancelledError(reason ?? `run "${runId}" was cancelled`) }));
        if (cancelled !== undefined) {
          await cancelled.result();
          return;
        }
        return this.cancel(runId, reason);
      }
      throw new FlowError(
        loaded.run.status === FlowStatus.RUNNING
          ? `cannot cancel run "${runId}": another context runs it (${loaded.run.owner?.processId ?? 'its owner is gone'}); cancel it there, or recover it here first`
          : `cannot cancel run "${runId}": it has ended (${loaded.run.status})`,
        { code: ErrorCode.RUN_STATE },
      );
    }
    run.cancel(new CancelledError(reason ?? `run "${runId}" was cancelled`));
    await run.result();
  }

  /**
   * The events of a run from `after` on, then live until it ends: from memory for a run of this
   * context, from the store for any other.
   * @throws FlowError `WEIR_RUN_NOT_FOUND` (when iterated) when no such run exists; `WEIR_CONTEXT_CLOSED` once the context is closed.
   * @throws ValidationError `WEIR_INVALID_OPTIONS` when `after` is not a whole number >= 0.
   */
  events(runId: string, options: EventsOptions = {}): AsyncIterable<WeirEvent> {
    this.#assertNotClosed('read the events of a run');
    const run = this.#runs.get(runId);
    if (run !== undefined) return handleOf(run).events(options);
    const stored = this.#storedHandle(runId);
    const events = stored.events(options);
    const load = (): Promise<LoadedRun> => this.#load(runId);
    return {
      async *[Symbol.asyncIterator]() {
        await load();
        yield* events;
      },
    };
  }

  /**
   * The handle of any run in the store: its `result()` settles when the run ends, whichever
   * context finishes it, and `events()` replays and follows it. Given the run's flow, the handle
   * is typed from it, the run is checked to be a run of that flow (by name), and a composite's
   * output is assembled from its children's even when the flow is not registered here.
   * @throws FlowError `WEIR_RUN_NOT_FOUND` when no such run exists; `WEIR_RUN_CONFLICT` when the
   * run is of another flow than `flow`; `WEIR_INVALID_OPTIONS` when `flow` is not a `Flow`;
   * DependencyError, FlowError as `register` does, when `flow`'s graph is invalid; `WEIR_CONTEXT_CLOSED`
   * once the context is closed.
   * @example
   * const handle = await ctx.handle('order-42', pipeline); // RunHandle of pipeline's output
   */
  async handle<O = unknown>(runId: string, flow?: Flow<any, O>): Promise<RunHandle<O>> {
    this.#assertNotClosed('get the handle of a run');
    if (flow !== undefined && !(flow instanceof Flow)) {
      throw new FlowError(`ctx.handle("${runId}", flow): flow must be a Flow, got ${flow === null ? 'null' : typeof flow}`, { code: ErrorCode.INVALID_OPTIONS });
    }
    if (flow !== undefined) this.#graphOf(flow);
    const run = this.#runs.get(runId);
    if (run !== undefined) {
      if (flow !== undefined) assertRunOf(runId, run.graph.root.name, flow);
      return handleOf<O>(run);
    }
    const loaded = await this.#load(runId);
    if (flow !== undefined) assertRunOf(runId, loaded.run.flow, flow);
    return this.#storedHandle<O>(runId, flow);
  }

  /**
   * Takes over the stale runs of registered flows (their lease ran out, or their process on this
   * host is gone) and goes on with them from their last completed steps.
   * @returns the handles of the runs taken over. A run another context takes first is left to it.
   */
  async recover(): Promise<RunHandle[]> {
    if (workerLoading()?.holdRun() === true) return never();
    this.#assertOpen('recover runs');
    return this.#chore(this.#recover());
  }

  /**
   * Goes on with a failed or cancelled run in place: completed steps are kept, the others run
   * again. With `from`, that step and everything downstream of it run again (of any ended run).
   * @throws FlowError `WEIR_RUN_NOT_FOUND`; `WEIR_RUN_STATE` for a running run, or a completed one
   * without `from`; `WEIR_FLOW_NOT_REGISTERED` when its flow is not registered here;
   * `WEIR_FLOW_CHANGED` when the flow's graph changed (unless `onFlowChange: 'continue'`);
   * `WEIR_INVALID_OPTIONS` for an unknown `from`.
   */
  async resume<O = unknown>(runId: string, options: ResumeOptions = {}): Promise<RunHandle<O>> {
    if (workerLoading()?.holdRun() === true) return never();
    this.#assertOpen('resume a run');
    const { from } = parseOptions(resumeOptionsSchema, options, 'resume options');
    return this.#chore(this.#resume<O>(runId, from));
  }

  async #resume<O>(runId: string, from: string | undefined): Promise<RunHandle<O>> {
    const loaded = await this.#loadEnded(runId, 'resume');
    if (loaded.run.status === FlowStatus.COMPLETED && from === undefined) {
      throw new FlowError(`cannot resume run "${runId}": it completed; pass { from } to run steps again`, { code: ErrorCode.RUN_STATE });
    }
    const graph = this.#graphFor(loaded.run);
    if (graph.fingerprint !== loaded.run.fingerprint && this.#settings.onFlowChange === 'fail') throw flowChanged(loaded.run);
    if (from !== undefined) stepOf(graph, runId, from);
    const token = await this.#leaseEnded(loaded.run, `resume run "${runId}"`);
    try {
      // Waits that expired (or were refused) ended those attempts, not the questions: asked again, they wait again.
      const expired = (await this.#store.readInputs(runId)).filter((e) => e.outcome !== 'answered').map((e) => e.key);
      if (expired.length > 0) await this.#store.clearInputs(runId, expired);
    } catch (error) {
      await this.#store.releaseLease(runId, this.#owner, token).catch(() => false);
      throw error;
    }
    const run = await this.#restore(graph, loaded, token, { reason: 'resumed', from, rerunEnded: true });
    return handleOf<O>(run);
  }

  /**
   * Starts a new run of an ended run's flow with the same input; each run records the other
   * (`retryOf`, `retriedBy`).
   * @throws FlowError as `resume` does, for a missing, running or unregistered run.
   */
  async retry<O = unknown>(runId: string): Promise<RunHandle<O>> {
    if (workerLoading()?.holdRun() === true) return never();
    this.#assertOpen('retry a run');
    return this.#chore(this.#retryRun<O>(runId));
  }

  async #retryRun<O>(runId: string): Promise<RunHandle<O>> {
    const loaded = await this.#loadEnded(runId, 'retry');
    const graph = this.#graphFor(loaded.run);
    const old = loaded.run;
    if (old.retriedBy !== undefined) {
      throw new FlowError(`cannot retry run "${runId}": run "${old.retriedBy}" already retries it; retry that one`, { code: ErrorCode.RUN_STATE });
    }
    const retryId = randomUUID();
    const token = await this.#leaseEnded(old, `retry run "${runId}"`);
    try {
      await this.#store.commit({ runId, leaseToken: token, run: { retriedBy: retryId, updatedAt: now() } });
    } finally {
      await this.#store.releaseLease(runId, this.#owner, token).catch(() => false);
    }
    this.#assertOpen('retry a run');
    const humanInLoop = old.mode === RunMode.INTERACTIVE || (old.mode === RunMode.HYBRID && old.humanInLoop);
    const run = this.#launch(graph, old.input, { runId: retryId, mode: old.mode, humanInLoop, timeout: undefined, signal: undefined, concurrency: Infinity, retryOf: runId });
    return handleOf<O>(run);
  }

  /**
   * Marks a step done with `output` (validated by its processor's output schema). In a running run
   * of this context its dependants go on; in a failed or cancelled run the output is recorded and
   * the run stays as it is until `resume`.
   * @throws FlowError `WEIR_RUN_NOT_FOUND`; `WEIR_RUN_STATE` for a completed run, a run another
   * context runs, a step that completed, or a composite; `WEIR_INVALID_OPTIONS` for an unknown step.
   * @throws ValidationError `WEIR_VALIDATION` when `output` fails the step's output schema.
   */
  async skip(runId: string, step: string, output?: unknown): Promise<void> {
    this.#assertOpen('skip a step');
    const found = this.#liveRun(runId);
    const live = found instanceof Promise ? await found : found;
    if (live !== undefined) {
      await live.skip(step, output);
      return;
    }
    return this.#chore(this.#skipStored(runId, step, output));
  }

  async #skipStored(runId: string, step: string, output: unknown): Promise<void> {
    const loaded = await this.#loadEnded(runId, 'skip a step of', true);
    if (loaded.run.status === FlowStatus.COMPLETED) {
      throw new FlowError(`cannot skip "${step}" in run "${runId}": the run completed`, { code: ErrorCode.RUN_STATE });
    }
    const graph = this.#graphFor(loaded.run);
    const node = stepOf(graph, runId, step);
    const record = loaded.steps.find((s) => s.step === step);
    const value = checkSkip(node, runId, record?.status, output);
    if (loaded.run.status === FlowStatus.WAITING) {
      // A run waiting for input goes on once the step is skipped (its other waits, if any, wait again).
      const run = await this.#continueWaiting(loaded, 'resumed', { apply: (token, fresh) => this.#recordSkip(fresh, token, step, fresh.steps.find((s) => s.step === step), value) });
      if (run === undefined) throw new FlowError(`cannot skip "${step}" in run "${runId}": another context took the run first; try again`, { code: ErrorCode.RUN_STATE });
      return;
    }
    const token = await this.#leaseEnded(loaded.run, `skip "${step}" in run "${runId}"`);
    try {
      await this.#recordSkip(loaded, token, step, record, value);
    } finally {
      await this.#store.releaseLease(runId, this.#owner, token).catch(() => false);
    }
  }

  async #recordSkip(loaded: LoadedRun, token: number, step: string, record: StepRecord | undefined, value: unknown): Promise<void> {
    const { runId } = loaded.run;
    // Read again under the lease: the seq to continue is the one stored now.
    const lastSeq = (await this.#load(runId)).run.lastSeq;
    const at = now();
    await this.#store.commit({
      runId,
      leaseToken: token,
      run: { updatedAt: at },
      steps: [{ runId, step, status: FlowStatus.COMPLETED, attempts: record?.attempts ?? [], ...(record?.startTime === undefined ? {} : { startTime: record.startTime }), endTime: at, hasOutput: true, updatedAt: at }],
      outputs: [{ step, value }],
      events: [{ type: 'step_complete', runId, seq: lastSeq + 1, time: at, step, attempt: record?.attempts.length ?? 0, duration: 0, skipped: true }],
    });
  }

  /**
   * Answers a step's `waitForInput(key, ...)` in a run, from any context on the store. The value
   * must pass the ask's schema (its zod schema when the asking step runs inline in this context,
   * else its JSON Schema); it is stored first come first served, and the asking step runs again
   * with `waitForInput` returning it. A run that waits with nothing else to do goes on here when
   * its flow is registered here (else in the next context that recovers it).
   * @throws FlowError `WEIR_RUN_NOT_FOUND`; `WEIR_RUN_STATE` for a run that has ended;
   * `WEIR_INPUT_NOT_AWAITED` when no step waits on `key`; `WEIR_INPUT_ANSWERED` for a second answer.
   * @throws ValidationError `WEIR_VALIDATION` when `value` fails the schema (the run keeps waiting).
   */
  async submitInput(runId: string, key: string, value: unknown): Promise<void> {
    this.#assertOpen('submit input');
    if (typeof key !== 'string' || key.length === 0) throw new FlowError(`submitInput: key must be a non-empty string, got ${JSON.stringify(key)}`, { code: ErrorCode.INVALID_OPTIONS });
    const found = this.#liveRun(runId);
    const live = found instanceof Promise ? await found : found;
    if (live?.status === FlowStatus.RUNNING) return this.#submitLive(live, key, value);
    return this.#chore(this.#submitStored(runId, key, value));
  }

  async #submitLive(live: Run, key: string, value: unknown): Promise<void> {
    await live.submitInput(key, value);
    // The run parked while the answer was stored: it did not take it in; going on with it here does.
    if (live.status === FlowStatus.WAITING) {
      await live.parked();
      await this.#chore(this.#review(live.runId));
    }
  }

  async #submitStored(runId: string, key: string, value: unknown): Promise<void> {
    const loaded = await this.#load(runId);
    const live = this.#runs.get(runId);
    if (live?.status === FlowStatus.RUNNING) return this.#submitLive(live, key, value);
    const { run } = loaded;
    if (FINISHED.has(run.status)) throw new FlowError(`cannot submit input "${key}" to run "${runId}": it has ended (${run.status})`, { code: ErrorCode.RUN_STATE });
    const entries = await this.#store.readInputs(runId);
    if (entries.some((e) => e.key === key)) throw answeredAlready(runId, key);
    const answered = new Set(entries.map((e) => e.key));
    const waits = waitsOf(loaded).filter((w) => !answered.has(w.key));
    const wait = waits.find((w) => w.key === key);
    if (wait === undefined) throw notAwaited(runId, key, waits.map((w) => w.key));
    validateAgainstJson(wait.schema, value, `the value submitted for input "${key}" of run "${runId}"`);
    const entry: InputEntry = { key, outcome: 'answered', value, at: now() };
    if (!(await this.#store.putInput(runId, entry))) throw answeredAlready(runId, key);
    // Stored: a run that waits goes on (here, if its flow is); one that runs elsewhere reads it there.
    if (this.#flowNamed(run.flow) === undefined) return;
    if (run.status === FlowStatus.WAITING) {
      await this.#review(runId, loaded);
    } else {
      // It ran elsewhere when read: if it parked since, its owner may have read the answers before this one landed.
      await this.#review(runId);
    }
  }

  /**
   * Turns the person in the loop of a `hybrid` run on or off, recorded with the run, at once. Off:
   * steps waiting now run again and take their defaults (or fail), and later asks do not wait. On:
   * later asks wait.
   * @throws FlowError `WEIR_RUN_NOT_FOUND`; `WEIR_RUN_STATE` for a run that is not hybrid, has ended,
   * or runs in another context.
   */
  async setHumanInLoop(runId: string, on: boolean): Promise<void> {
    this.#assertOpen('set human in the loop');
    if (typeof on !== 'boolean') throw new FlowError(`setHumanInLoop: on must be a boolean, got ${typeof on}`, { code: ErrorCode.INVALID_OPTIONS });
    const found = this.#liveRun(runId);
    const live = found instanceof Promise ? await found : found;
    if (live?.status === FlowStatus.RUNNING) {
      notHybrid(runId, live.mode);
      return live.setHumanInLoop(on);
    }
    return this.#chore(this.#setHumanStored(runId, on, 3));
  }

  async #setHumanStored(runId: string, on: boolean, tries: number): Promise<void> {
    const loaded = await this.#load(runId);
    const { run } = loaded;
    notHybrid(runId, run.mode);
    const live = this.#runs.get(runId);
    if (live?.status === FlowStatus.RUNNING) return live.setHumanInLoop(on);
    if (run.status !== FlowStatus.WAITING) {
      throw new FlowError(
        `cannot set human in the loop of run "${runId}": ${FINISHED.has(run.status) ? `it has ended (${run.status})` : `it runs in another context (${run.owner?.processId ?? 'its owner is gone; recover() takes it over'}); set it there`}`,
        { code: ErrorCode.RUN_STATE },
      );
    }
    if (run.humanInLoop === on) return;
    const continued = await this.#continueWaiting(loaded, 'human_in_loop', { patch: { humanInLoop: on } });
    if (continued !== undefined) return;
    if (tries <= 1) throw new FlowError(`cannot set human in the loop of run "${runId}": other contexts kept taking it; try again`, { code: ErrorCode.RUN_STATE });
    return this.#setHumanStored(runId, on, tries - 1);
  }

  /**
   * Looks at a run that waits for input with nothing else to do: goes on with it when a wait
   * ended (an answer, a deadline, the context's `inputTimeout`), else looks again when the next
   * one is due. Only for runs of flows registered here.
   */
  async #review(runId: string, read?: LoadedRun): Promise<void> {
    // Never rejects: what could not be done now (a store that fails) is warned of, and done by the next review or recover().
    await this.#reviewNow(runId, read).catch((error: unknown) => warnInput(runId, error));
  }

  async #reviewNow(runId: string, read: LoadedRun | undefined): Promise<void> {
    clearTimer(this.#waitTimers.get(runId));
    this.#waitTimers.delete(runId);
    if (this.#state !== 'open' || this.#runs.has(runId)) return;
    // The run the caller just read will do (going on checks under its lease that nobody wrote it
    // since); the answers are read now, after the caller's own: two answers stored at once both
    // see each other's.
    const loaded = read ?? (await this.#store.loadRun(runId));
    if (loaded === undefined || loaded.run.status !== FlowStatus.WAITING || this.#flowNamed(loaded.run.flow) === undefined) return;
    const ended = new Set((await this.#store.readInputs(runId)).map((e) => e.key));
    const waits = waitsOf(loaded);
    const at = now();
    for (const wait of waits) {
      if (!ended.has(wait.key) && wait.deadline !== undefined && wait.deadline <= at) {
        await this.#store.putInput(runId, { key: wait.key, outcome: 'expired', at });
        ended.add(wait.key);
      }
    }
    const open = waits.filter((w) => !ended.has(w.key));
    // A step goes on once all its waits ended; one answer of two leaves it waiting.
    let reason: ResumeReason | undefined = waits.some((w) => !open.some((o) => o.step === w.step)) ? 'input' : undefined;
    let fallback: 'fail' | 'default' | 'batch' | undefined;
    let patch: RunPatch | undefined;
    const orphanedAt = this.#settings.inputTimeout === undefined ? Infinity : loaded.run.updatedAt + this.#settings.inputTimeout;
    if (open.length > 0 && orphanedAt <= at) {
      fallback = this.#settings.inputFallback;
      reason = 'orphaned';
      if (fallback === 'batch') patch = { humanInLoop: false };
      else for (const wait of open) await this.#store.putInput(runId, { key: wait.key, outcome: fallback === 'fail' ? 'refused' : 'expired', at });
    }
    if (reason === undefined) {
      const due = Math.min(orphanedAt, ...open.map((w) => w.deadline ?? Infinity));
      if (due !== Infinity && this.#state === 'open') {
        this.#waitTimers.set(
          runId,
          setTimer(() => void this.#chore(this.#review(runId)), Math.max(0, due - now()), { unref: true }),
        );
      }
      return;
    }
    await this.#continueWaiting(loaded, reason, { fallback, patch });
  }

  /**
   * Takes a run that waits (compare-and-set on its lease token, so one context of many does),
   * applies `patch`, and goes on with it here.
   * @returns the run, or `undefined` when another context took it first (it reads the answers then).
   */
  async #continueWaiting(loaded: LoadedRun, reason: ResumeReason, how: ContinueHow): Promise<Run | undefined> {
    const runId = loaded.run.runId;
    // One at a time per run here: this context's own live lease would not keep a second one out.
    const busy = this.#continuing.get(runId);
    if (busy !== undefined) {
      await busy.catch(() => undefined);
      return undefined;
    }
    const work = this.#continueNow(loaded, reason, how);
    this.#continuing.set(runId, work);
    try {
      return await work;
    } finally {
      if (this.#continuing.get(runId) === work) this.#continuing.delete(runId);
    }
  }

  async #continueNow(loaded: LoadedRun, reason: ResumeReason, how: ContinueHow): Promise<Run | undefined> {
    const { run } = loaded;
    const runId = run.runId;
    const graph = this.#graphFor(run);
    // A run live here holds its own lease: taking it "again" would succeed, and must not. A parked
    // run holds no lease: one held now means another context took it since (it reads the answers).
    if (this.#runs.has(runId) || (run.owner !== undefined && run.leaseExpiresAt >= now())) return undefined;
    // Only a free lease: of two contexts going on with one parked run, exactly one takes it.
    const token = await this.#store.acquireLease(runId, this.#owner, this.#settings.leaseMs, now());
    if (token === undefined || this.#runs.has(runId)) return undefined;
    if (token !== run.leaseToken + 1) {
      // Taken and let go by another context since `run` was read: it read the answers then.
      await this.#store.releaseLease(runId, this.#owner, token).catch(() => false);
      return undefined;
    }
    // Nobody took the lease since `loaded` was read (the token rose by one), so nobody wrote the
    // run since: it is what goes on, unless this continuation writes a change first.
    let fresh = loaded;
    try {
      // A closing context still cancels the runs that wait (a memory store's).
      if (this.#state !== 'open' && !(this.#state === 'closing' && how.cancelWith !== undefined)) {
        throw new FlowError(`cannot go on with run "${runId}": the FlowContext is ${this.#state}`, { code: ErrorCode.CONTEXT_CLOSED });
      }
      if (how.patch !== undefined) await this.#store.commit({ runId, leaseToken: token, run: { ...how.patch, updatedAt: now() } });
      if (how.apply !== undefined) await how.apply(token, loaded);
      if (how.patch !== undefined || how.apply !== undefined) fresh = await this.#load(runId);
    } catch (error) {
      if (!this.#runs.has(runId)) await this.#store.releaseLease(runId, this.#owner, token).catch(() => false);
      if (error instanceof FlowError && error.code === ErrorCode.CONTEXT_CLOSED) return undefined;
      throw error;
    }
    const failWith = graph.fingerprint !== run.fingerprint && this.#settings.onFlowChange === 'fail' ? flowChanged(run) : undefined;
    return this.#restore(graph, fresh, token, { reason, fallback: how.fallback, failWith, cancelWith: how.cancelWith });
  }

  /**
   * A run in detail: status, running steps, progress (done/total), last update, and every step's attempts.
   * @throws FlowError `WEIR_RUN_NOT_FOUND`; `WEIR_CORRUPT_RECORD` naming a record that cannot be read;
   * `WEIR_CONTEXT_CLOSED` once the context is closed (it still reads while closing).
   */
  async getRun(runId: string): Promise<RunInfo> {
    this.#assertNotClosed('read a run');
    const live = this.#runs.get(runId);
    if (live !== undefined) await live.flushed();
    const loaded = await this.#load(runId);
    return infoOf(loaded, this.#graphMatching(loaded.run), now(), HOST, await this.#endedWaits(loaded));
  }

  /** The keys whose waits ended (answered or expired), for a run with waits; none read otherwise. */
  async #endedWaits(loaded: LoadedRun): Promise<ReadonlySet<string> | undefined> {
    if (!loaded.steps.some((s) => s.waitingFor !== undefined)) return undefined;
    return new Set((await this.#store.readInputs(loaded.run.runId)).map((e) => e.key));
  }

  /**
   * Active and recent runs, newest first, one page at a time (`next` is the cursor for `before`).
   * @throws ValidationError `WEIR_INVALID_OPTIONS` for a bad query; FlowError `WEIR_UNSUPPORTED` for a
   * Keyv store that cannot be iterated; `WEIR_CONTEXT_CLOSED` once the context is closed.
   */
  async listRuns(query: ListRunsOptions = {}): Promise<RunList> {
    this.#assertNotClosed('list runs');
    const parsed = stripUndefined(parseOptions(listRunsSchema, query, 'listRuns options')) as Omit<ListRunsQuery, 'now'>;
    const at = now();
    await Promise.all([...this.#runs.values()].map((run) => run.flushed()));
    if (parsed.stale !== true) {
      const page = await this.#store.listRuns({ ...parsed, stale: false, now: at });
      // What a waiting run waits on is in its step records.
      const runs = await Promise.all(
        page.runs.map(async (run) => {
          if (run.status !== FlowStatus.WAITING) return summaryOf(run, at, HOST);
          const loaded = await this.#store.loadRun(run.runId);
          return summaryOf(run, at, HOST, loaded === undefined ? undefined : waitsOf(loaded, await this.#endedWaits(loaded)));
        }),
      );
      return { runs, ...(page.next === undefined ? {} : { next: page.next }) };
    }
    // Stale: an expired lease (the store's query), or a dead owner on this host (checked here).
    const runs: RunSummary[] = [];
    let before = parsed.before;
    const limit = parsed.limit ?? 100;
    for (;;) {
      const page = await this.#store.listRuns({ ...parsed, status: FlowStatus.RUNNING, stale: false, ...(before === undefined ? {} : { before }), limit, now: at });
      for (const run of page.runs) if (isStale(run, at, HOST)) runs.push(summaryOf(run, at, HOST));
      if (runs.length >= limit || page.next === undefined) return { runs: runs.slice(0, limit), ...(page.next === undefined ? {} : { next: page.next }) };
      before = page.next;
    }
  }

  /**
   * Deletes finished runs (completed, failed, cancelled) that ended before the cutoff, with their
   * steps, outputs and events; never a running or waiting one.
   * @returns how many runs were deleted.
   * @throws ValidationError `WEIR_INVALID_OPTIONS` for a negative age or an invalid Date; FlowError
   * `WEIR_CONTEXT_CLOSED` after `close()`.
   */
  async prune(options: PruneRunsOptions): Promise<number> {
    this.#assertOpen('prune runs');
    const { olderThan } = parseOptions(pruneSchema, options, 'prune options');
    return this.#store.prune({ olderThan: olderThan instanceof Date ? olderThan.getTime() : now() - olderThan });
  }

  /** Listens to one event type of every run, or to all of them with `'event'`. */
  on<T extends keyof WeirEventMap>(type: T, listener: WeirEventMap[T]): this {
    this.#emitter.on(type, listener);
    return this;
  }

  /** Like `on`, for the next event only. */
  once<T extends keyof WeirEventMap>(type: T, listener: WeirEventMap[T]): this {
    this.#emitter.once(type, listener);
    return this;
  }

  /** Removes a listener added with `on` or `once`. */
  off<T extends keyof WeirEventMap>(type: T, listener: WeirEventMap[T]): this {
    this.#emitter.off(type, listener);
    return this;
  }

  /**
   * Stops taking runs, waits up to `closeTimeout` for active ones, cancels the rest, then closes the
   * executors and the results. Idempotent; afterwards the process can exit by itself.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  async #close(): Promise<void> {
    this.#state = 'closing';
    // Recoveries and other store work in progress may still start runs: let them.
    await Promise.allSettled([...this.#chores]);
    // Runs parking now are about to be in the store only, and not active here.
    await Promise.all([...this.#runs.values()].filter((run) => run.status === FlowStatus.WAITING).map((run) => run.parked()));
    await Promise.allSettled([...this.#chores]);
    const active = [...this.#runs.values()];
    if (active.length > 0) {
      // A run's life here ends when it ends, or parks to wait for input.
      const ended = (): Promise<unknown> => Promise.allSettled([...this.#runs.values()].map((run) => run.leftContext()));
      let timer: ReturnType<typeof setTimer> | undefined;
      await Promise.race([ended(), new Promise<void>((resolve) => (timer = setTimer(resolve, this.#settings.closeTimeout, { unref: true })))]);
      clearTimer(timer);
      if (this.results.durable) {
        // A durable run is not cancelled by a shutdown: it stays running in the store, its lease released, for recover().
        const reason = new FlowError('the FlowContext was closed before the run ended; it stays running in the store, and recover() goes on with it', {
          code: ErrorCode.CONTEXT_CLOSED,
        });
        await Promise.all([...this.#runs.values()].map((run) => run.suspend(reason)));
      } else {
        for (const run of this.#runs.values()) run.cancel(new CancelledError('the FlowContext was closed'));
      }
      // A run settles once its end (or its suspension) is recorded.
      await ended();
    }
    // Runs waiting for input in a memory store (some parked just now) end with it: they are
    // cancelled, so their handles settle.
    await Promise.allSettled([...this.#chores]);
    if (!this.results.durable) await this.#cancelWaiting();
    clearTimer(this.#renewTimer);
    clearTimer(this.#recoverTimer);
    for (const timer of this.#waitTimers.values()) clearTimer(timer);
    this.#waitTimers.clear();
    this.#renewTimer = undefined;
    this.#queue.clear();
    const waiting = new FlowError('the FlowContext was closed while the run waited for input; it stays waiting in the store, and ctx.handle(runId) of a new context follows it', {
      code: ErrorCode.CONTEXT_CLOSED,
    });
    for (const parked of this.#parked.values()) parked.deref()?.contextClosed(waiting);
    this.#parked.clear();
    await Promise.all([...this.#executors.values()].map((executor) => executor.close()));
    await this.results.close();
    for (const launched of this.#launched.values()) launched.resolve();
    this.#launched.clear();
    this.#emitter.removeAllListeners();
    this.#state = 'closed';
  }

  async #cancelWaiting(): Promise<void> {
    // A store that fails (or was closed under the context) has nothing left to cancel.
    const page = await this.#store.listRuns({ status: FlowStatus.WAITING, limit: 10_000, now: now() }).catch(() => undefined);
    const runs = page?.runs ?? [];
    const reason = new CancelledError('the FlowContext was closed while the run waited for input');
    await Promise.allSettled(
      runs.map(async (run) => {
        const loaded = await this.#load(run.runId);
        await (await this.#continueWaiting(loaded, 'resumed', { cancelWith: reason }))?.result();
      }),
    );
  }

  /**
   * Delivers an event to listeners. An event published while listeners run (a listener that cancels a
   * run, say) waits its turn, so every listener sees each run's events in `seq` order.
   */
  readonly #emit = (event: WeirEvent): void => this.#backlog.push(event);

  #deliver(event: WeirEvent): void {
    // A listener's bug must not break the run that emitted the event.
    try {
      this.#emitter.emit(event.type, event);
      this.#emitter.emit('event', event);
    } catch (error) {
      process.emitWarning(`weir: a listener of "${event.type}" threw: ${String(error)}`, { code: WarningCode.LISTENER_ERROR });
    }
  }

  /** Reads (and a cancel) still work while the context closes; once closed, nothing does. */
  #assertNotClosed(action: string): void {
    if (this.#state === 'closed') {
      throw new FlowError(`cannot ${action}: the FlowContext is closed`, { code: ErrorCode.CONTEXT_CLOSED });
    }
  }

  #assertOpen(action: string): void {
    if (this.#state !== 'open') {
      throw new FlowError(`cannot ${action}: the FlowContext is ${this.#state}`, { code: ErrorCode.CONTEXT_CLOSED });
    }
  }

  // ---- durable runs -----------------------------------------------------------------------------

  /**
   * This context's live run of `runId`, at once (no await: an answer given from a listener must
   * reach the run in the same turn), or, for a run parking now, a promise of it once parked: it is
   * then in the store only, and `undefined` unless it already went on here.
   */
  #liveRun(runId: string): Run | undefined | Promise<Run | undefined> {
    const live = this.#runs.get(runId);
    if (live?.status !== FlowStatus.WAITING) return live;
    return live.parked().then(() => this.#runs.get(runId));
  }

  async #load(runId: string): Promise<LoadedRun> {
    const loaded = await this.#store.loadRun(runId);
    if (loaded === undefined) throw new FlowError(`there is no run "${runId}" in the store`, { code: ErrorCode.RUN_NOT_FOUND });
    return loaded;
  }

  /** Loads a run that no one runs: for resume, retry and skip. */
  async #loadEnded(runId: string, action: string, waitingToo = false): Promise<LoadedRun> {
    const found = this.#liveRun(runId);
    if ((found instanceof Promise ? await found : found) !== undefined) throw new FlowError(`cannot ${action} run "${runId}": it is running in this context`, { code: ErrorCode.RUN_STATE });
    const loaded = await this.#load(runId);
    const { run } = loaded;
    if (run.status === FlowStatus.RUNNING) {
      const stale = isStale(run, now(), HOST);
      throw new FlowError(
        `cannot ${action} run "${runId}": it is running${stale ? ' but its owner is gone; recover() takes it over' : ` in another context (${run.owner?.processId ?? '?'})`}`,
        { code: ErrorCode.RUN_STATE },
      );
    }
    if (run.status === FlowStatus.WAITING && !waitingToo) {
      throw new FlowError(`cannot ${action} run "${runId}": it waits for input; answer it (submitInput), skip the waiting step, or cancel it`, { code: ErrorCode.RUN_STATE });
    }
    return loaded;
  }

  /** The compiled graph of a stored run's flow, registered here by name. */
  #graphFor(run: RunRecord): CompiledGraph {
    const flow = this.#flowNamed(run.flow);
    if (flow === undefined) {
      throw new FlowError(`run "${run.runId}" is of flow "${run.flow}", which is not registered with this context (ctx.register(flow))`, {
        code: ErrorCode.FLOW_NOT_REGISTERED,
      });
    }
    return this.#graphOf(flow);
  }

  /** A flow registered here by name, or started here (a run of it parked here). */
  #flowNamed(name: string): AnyFlow | undefined {
    return this.#registry.get(name) ?? this.#started.get(name);
  }

  /** The graph of a stored run's flow (registered here, or `given`) when it is unchanged since the run started. */
  #graphMatching(run: RunRecord, given?: AnyFlow): CompiledGraph | undefined {
    for (const flow of [this.#flowNamed(run.flow), given]) {
      if (flow?.name !== run.flow) continue;
      const graph = this.#graphOf(flow);
      if (graph.fingerprint === run.fingerprint) return graph;
    }
    return undefined;
  }

  /**
   * Takes the lease of a run that has ended (nobody works on it), unless another context took it
   * since `run` was read.
   * @throws FlowError `WEIR_RUN_STATE` naming `action` when another context was first.
   */
  async #leaseEnded(run: RunRecord, action: string): Promise<number> {
    // An ended run holds no lease: only a free one is taken, and only if nobody took it since `run`
    // was read (each taking raises the token by one), so of two contexts exactly one goes on.
    const token = await this.#store.acquireLease(run.runId, this.#owner, this.#settings.leaseMs, now());
    if (token !== undefined && token !== run.leaseToken + 1) await this.#store.releaseLease(run.runId, this.#owner, token).catch(() => false);
    if (token === undefined || token !== run.leaseToken + 1) throw new FlowError(`cannot ${action}: another context took the run first`, { code: ErrorCode.RUN_STATE });
    return token;
  }

  /** Rebuilds a run from the journal and goes on with it. */
  async #restore(
    graph: CompiledGraph,
    loaded: LoadedRun,
    leaseToken: number,
    how: Pick<RestoredRun, 'reason' | 'from' | 'rerunEnded' | 'failWith' | 'fallback' | 'cancelWith'>,
    read?: ReadonlyMap<string, unknown>,
  ): Promise<Run> {
    const { run: record } = loaded;
    let outputs: ReadonlyMap<string, unknown>;
    let inputs: InputEntry[];
    try {
      [outputs, inputs] = await Promise.all([read ?? outputsOf(this.#store, loaded), this.#store.readInputs(record.runId)]);
      if (this.#state !== 'open' && !(this.#state === 'closing' && how.cancelWith !== undefined)) {
        throw new FlowError(`cannot go on with run "${record.runId}": the FlowContext is ${this.#state}`, { code: ErrorCode.CONTEXT_CLOSED });
      }
    } catch (error) {
      // The lease goes back, so another context can take the run at once.
      await this.#store.releaseLease(record.runId, this.#owner, leaseToken).catch(() => false);
      throw error;
    }
    const restore: RestoredRun = { record, leaseToken, steps: new Map(loaded.steps.map((s) => [s.step, s])), outputs, inputs, ...how };
    return this.#launch(graph, record.input, { runId: record.runId, mode: record.mode, humanInLoop: record.humanInLoop, timeout: undefined, signal: undefined, concurrency: Infinity, restore });
  }

  async #recover(): Promise<RunHandle[]> {
    const handles: RunHandle[] = [];
    let before: string | undefined;
    do {
      const at = now();
      const page = await this.#store.listRuns({ status: FlowStatus.RUNNING, limit: 500, ...(before === undefined ? {} : { before }), now: at });
      before = page.next;
      const taken = await Promise.allSettled(page.runs.map((run) => this.#takeOver(run, at)));
      for (const outcome of taken) {
        if (outcome.status === 'fulfilled') {
          if (outcome.value !== undefined) handles.push(outcome.value);
        } else if (!(outcome.reason instanceof FlowError && outcome.reason.code === ErrorCode.CONTEXT_CLOSED)) {
          process.emitWarning(`weir: a run could not be recovered: ${messageOf(outcome.reason)}`, { code: WarningCode.RECOVERY });
        }
      }
    } while (before !== undefined && this.#state === 'open');
    // Runs waiting for input: those whose wait ended go on; the others are looked at again when due.
    before = undefined;
    do {
      const page = await this.#store.listRuns({ status: FlowStatus.WAITING, limit: 500, ...(before === undefined ? {} : { before }), now: now() });
      before = page.next;
      const due = page.runs.filter((run) => this.#flowNamed(run.flow) !== undefined && !this.#waitTimers.has(run.runId) && !this.#runs.has(run.runId));
      await Promise.all(due.map((run) => this.#review(run.runId)));
      for (const run of due) {
        const live = this.#runs.get(run.runId);
        if (live !== undefined) handles.push(handleOf(live));
      }
    } while (before !== undefined && this.#state === 'open');
    return handles;
  }

  /** Takes over one stale run of a registered flow; `undefined` when it is not stale, not ours to run, or taken first. */
  async #takeOver(run: RunRecord, at: number): Promise<RunHandle | undefined> {
    if (this.#runs.has(run.runId) || this.#takingOver.has(run.runId) || !isStale(run, at, HOST) || this.#state !== 'open') return undefined;
    this.#takingOver.add(run.runId);
    try {
      return await this.#takeOverNow(run, at);
    } finally {
      this.#takingOver.delete(run.runId);
    }
  }

  async #takeOverNow(run: RunRecord, at: number): Promise<RunHandle | undefined> {
    const flow = this.#registry.get(run.flow);
    if (flow === undefined) return undefined;
    const graph = this.#graphOf(flow);
    // A live lease is taken only from an owner known to be dead, and only if nobody took it since.
    const token = await this.#store.acquireLease(run.runId, this.#owner, this.#settings.leaseMs, now(), {
      takeover: true,
      ...(run.leaseExpiresAt > at ? { fromToken: run.leaseToken } : {}),
    });
    if (token === undefined) return undefined;
    if (this.#runs.has(run.runId) || this.#state !== 'open') {
      await this.#store.releaseLease(run.runId, this.#owner, token).catch(() => false);
      return undefined;
    }
    let loaded: LoadedRun;
    let outputs: Map<string, unknown>;
    try {
      loaded = await this.#load(run.runId);
      // Outputs too: one that cannot be read fails this run, not the recovery of the others.
      outputs = await outputsOf(this.#store, loaded);
    } catch (error) {
      // A record that cannot be read fails its run, with the error naming it; other runs go on.
      const data = toErrorData(error);
      const at = now();
      await this.#store
        .commit({ runId: run.runId, leaseToken: token, run: { status: FlowStatus.FAILED, error: data, endedAt: at, updatedAt: at } })
        .catch((commitError: unknown) => process.emitWarning(`weir: run "${run.runId}" cannot be recovered (${data.message}) nor marked failed: ${messageOf(commitError)}`, { code: WarningCode.RECOVERY }));
      return undefined;
    }
    const recoveries = loaded.run.recoveries;
    const failWith =
      recoveries > this.#settings.maxRecoveries
        ? new FlowError(`run "${run.runId}" lost its owner ${recoveries} times, more than maxRecoveries (${this.#settings.maxRecoveries}); it is not taken over again`, {
            code: ErrorCode.RECOVERY_LIMIT,
          })
        : graph.fingerprint !== loaded.run.fingerprint && this.#settings.onFlowChange === 'fail'
          ? flowChanged(loaded.run)
          : undefined;
    return handleOf(await this.#restore(graph, loaded, token, { reason: 'recovered', failWith }, outputs));
  }

  /** Idempotent start: a run with this id exists in the store; same flow and input get its handle's result. */
  async #adopt(run: Run, error: FlowError): Promise<FlowResult> {
    const stored = await this.#store.loadRun(run.runId);
    if (stored === undefined) throw error;
    if (stored.run.flow !== run.graph.root.name || !isDeepStrictEqual(stored.run.input, run.input)) {
      throw conflictWith(run.runId, `exists with ${stored.run.flow === run.graph.root.name ? 'another input' : `flow "${stored.run.flow}"`}`);
    }
    return this.#storedHandle(run.runId).result();
  }

  #storedHandle<O>(runId: string, flow?: AnyFlow): RunHandle<O> {
    return storedHandleOf<O>(runId, {
      finished: async () => {
        const live = this.#runs.get(runId);
        if (live !== undefined) return live.result();
        const loaded = await this.#load(runId);
        if (!FINISHED.has(loaded.run.status)) return undefined;
        return storedResult(this.#store, loaded, this.#graphMatching(loaded.run, flow));
      },
      // Once this context closes, a follower of a run that goes on elsewhere ends quietly.
      readEvents: async (after) => {
        try {
          return await this.#store.readEvents(runId, after);
        } catch (error) {
          if (this.#state === 'open') throw error;
          return [];
        }
      },
      ended: async () => {
        if (this.#state !== 'open') return true;
        return FINISHED.has((await this.#load(runId)).run.status);
      },
      launched: () => {
        let launched = this.#launched.get(runId);
        if (launched === undefined) {
          let resolve!: () => void;
          const promise = new Promise<void>((r) => (resolve = r));
          launched = { promise, resolve };
          this.#launched.set(runId, launched);
        }
        return launched.promise;
      },
    });
  }

  /** Keeps renewing the leases of this context's runs while it has any: a heartbeat apart from step events. */
  #renewLater(): void {
    if (this.#renewTimer !== undefined) return;
    this.#renewTimer = setTimer(() => void this.#renew(), Math.max(10, Math.floor(this.#settings.leaseMs / 3)), { unref: true });
  }

  async #renew(): Promise<void> {
    this.#renewTimer = undefined;
    const runs = [...this.#runs.values()].filter((run) => run.status === FlowStatus.RUNNING);
    if (runs.length === 0) return;
    this.#renewLater();
    try {
      const { lost } = await this.#store.renewLeases(
        this.#owner,
        runs.map((run) => ({ runId: run.runId, leaseToken: run.leaseToken })),
        now() + this.#settings.leaseMs,
      );
      for (const runId of lost) {
        this.#runs.get(runId)?.leaseLost(new FlowError(`run "${runId}": its lease was taken over by another context`, { code: ErrorCode.LEASE_LOST }));
      }
    } catch (error) {
      // The next renewal tries again; a run whose lease runs out meanwhile may be taken over, and its commits are then refused.
      process.emitWarning(`weir: renewing run leases failed: ${messageOf(error)}`, { code: WarningCode.LEASE_RENEWAL });
    }
  }

  #scheduleRecovery(): void {
    if (this.#recoverScheduled) return;
    this.#recoverScheduled = true;
    // A real timer: flows registered right after construction are known by then.
    realSetImmediate(() => {
      this.#recoverScheduled = false;
      if (this.#state !== 'open') return;
      this.recover().catch((error: unknown) => {
        process.emitWarning(`weir: recovering runs failed: ${messageOf(error)}`, { code: WarningCode.RECOVERY });
      });
      // And again once a lease could have run out since: runs another process leaves behind later are taken too.
      clearTimer(this.#recoverTimer);
      this.#recoverTimer = setTimer(() => this.#scheduleRecovery(), this.#settings.leaseMs, { unref: true });
    });
  }

  /** Tracks store work done outside a run, so `close()` waits for it. */
  #chore<T>(work: Promise<T>): Promise<T> {
    this.#chores.add(work);
    const done = (): void => void this.#chores.delete(work);
    work.then(done, done);
    return work;
  }

  #graphOf(flow: AnyFlow): CompiledGraph {
    if (!(flow instanceof Flow)) {
      throw new FlowError(`expected a Flow, got ${flow === null ? 'null' : typeof flow}`, { code: ErrorCode.INVALID_OPTIONS });
    }
    const version = graphVersionOf(flow);
    const cached = this.#compiled.get(flow);
    if (cached?.version === version) return cached.graph;
    const graph = compileGraph(flow, {
      retry: this.#settings.retry,
      timeout: this.#settings.timeout,
      // FlowConfig allows only the types this map holds.
      checkLeaf: (leaf, processor) => this.#executors.get(leaf.type)!.prepare?.(processor, `flow "${leaf.name}"`),
    });
    this.#compiled.set(flow, { version, graph });
    return graph;
  }
}

/** `ctx.handle(runId, flow)`: the run must be of that flow, or its handle would be typed wrong. */
function assertRunOf(runId: string, runFlow: string, flow: AnyFlow): void {
  if (runFlow !== flow.name) {
    throw new FlowError(`ctx.handle: run "${runId}" is a run of flow "${runFlow}", not of "${flow.name}"`, { code: ErrorCode.RUN_CONFLICT });
  }
}

/** A promise that never settles: what a run asked for by a module a worker is importing waits on, so its top level goes no further. */
function never<T>(): Promise<T> {
  return new Promise<T>(() => {});
}

/** The handle of a run held in a worker: it never starts, so its result never comes and it has no events. */
function heldHandle<O>(options: RunOptions): RunHandle<O> {
  const runId = typeof (options as { runId?: unknown } | undefined)?.runId === 'string' ? (options.runId as string) : randomUUID();
  return {
    runId,
    result: never,
    events: () => ({ [Symbol.asyncIterator]: () => ({ next: never }) }),
  };
}

function conflictWith(runId: string, how: string): FlowError {
  return new FlowError(`run "${runId}" ${how}; an idempotent start needs the same flow and input`, { code: ErrorCode.RUN_CONFLICT });
}

/** How a parked run goes on. */
interface ContinueHow {
  readonly fallback?: 'fail' | 'default' | 'batch' | undefined;
  readonly patch?: RunPatch | undefined;
  readonly cancelWith?: CancelledError | undefined;
  /** Writes a change under the lease before the run is read again (a skip). */
  readonly apply?: ((token: number, loaded: LoadedRun) => Promise<void>) | undefined;
}

function warnInput(runId: string, error: unknown): void {
  process.emitWarning(`weir: run "${runId}" waits for input and could not go on yet: ${messageOf(error)}; recover() tries again`, { code: WarningCode.INPUT });
}

/** @throws FlowError `WEIR_RUN_STATE` unless the run is hybrid. */
function notHybrid(runId: string, mode: RunMode): void {
  if (mode !== RunMode.HYBRID) {
    throw new FlowError(`cannot set human in the loop of run "${runId}": it is a ${mode} run; only a hybrid run's person in the loop can be turned on or off`, { code: ErrorCode.RUN_STATE });
  }
}

function flowChanged(run: RunRecord): FlowError {
  return new FlowError(
    `run "${run.runId}": the graph of flow "${run.flow}" changed since the run started (names, types or edges); pass onFlowChange: 'continue' to go on with the new graph`,
    { code: ErrorCode.FLOW_CHANGED },
  );
}

/** A step of a run's graph by name. */
function stepOf(graph: CompiledGraph, runId: string, name: string): GraphNode {
  const node = graph.byName.get(name);
  if (node === undefined || (node.index === 0 && node.processor === undefined)) {
    const known = graph.nodes.filter((n) => n.index !== 0 || n.processor !== undefined).map((n) => `"${n.name}"`).join(', ');
    throw new FlowError(`run "${runId}" has no step "${name}" (its steps: ${known})`, { code: ErrorCode.INVALID_OPTIONS });
  }
  return node;
}

setDefaultRunner((flow, input, options) => FlowContext.getInstance().run(flow, input, options));
