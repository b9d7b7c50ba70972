/**
 * `FlowContext`: the public face of weir's runtime, and its lifecycle (`open`, `closing`, `closed`).
 * It holds its parts and hands each call to the one that owns it: the flow registry, the live runs,
 * durability (recovery, manual control, history, leases), human input (answers) and the event bus.
 * Over 450 lines for one reason: the TSDoc of the public API; each method is a short delegation,
 * and the test kit's seams (`[INSPECT]`, `[FLUSH]`, `[HALT]`) sit here because they reach the
 * context's private parts, as `close()` does.
 */
import { randomUUID } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import { Answers } from '../human/answers.js';
import { CancelledError, ErrorCode, FlowError, WarningCode } from '../errors/errors.js';
import type { Executor } from '../executors/executor.js';
import { InlineExecutor } from '../executors/inline.js';
import { ProcessExecutor } from '../executors/process.js';
import { ThreadExecutor } from '../executors/thread.js';
import { History, type RunInfo, type RunList } from '../durability/history.js';
import { LeaseRenewal } from '../durability/leases.js';
import { ManualControl } from '../durability/manual-control.js';
import { Recovery } from '../durability/recovery.js';
import { WorkSharing } from '../durability/work-sharing.js';
import type { WeirEvent, WeirEventMap } from '../model/events.js';
import { Flow, type AnyFlow } from '../model/flow.js';
import type { FlowResult } from '../model/result.js';
import {
  enqueueOptionsSchema,
  listRunsSchema,
  pruneSchema,
  resumeOptionsSchema,
  runOptionsSchema,
  type EnqueueOptions,
  type ListRunsOptions,
  type PruneRunsOptions,
  type ResumeOptions,
  type RunOptions,
} from '../model/run-options.js';
import { FlowStatus, RunMode } from '../model/status.js';
import { runStoreOf, type ResultsManager } from '../results/results-manager.js';
import type { EventsOptions, RunHandle } from '../run/handle.js';
import type { ListRunsQuery } from '../storage/journal/run-store.js';
import { clearTimer, setTimer } from '../util/clock.js';
import { messageOf } from '../util/message-of.js';
import { describeValue, parseOptions } from '../util/parse.js';
import { stripUndefined } from '../util/types.js';
import { workerLoading } from '../util/worker-loading.js';
import { ContextCore, type ContextState } from './context-core.js';
import { healthOf, type ContextHealth } from './health.js';
import { FLUSH, HALT, INSPECT, type ContextInspection } from './test-hooks.js';
import { EventBus } from './event-bus.js';
import { FlowRegistry } from './flow-registry.js';
import { conflictWith, LiveRuns } from './live-runs.js';
import { contextSettings, type FlowContextOptions } from './options.js';
import { cancelArgs, eventTypeArgs, hookArgs, humanInLoopArgs, listenArgs, runArgs, skipArgs, submitArgs } from './arguments.js';
import { Slots } from '../util/slots.js';

export type { ContextState } from './context-core.js';

let defaultInstance: FlowContext | undefined;

/**
 * The registry and the runtime: validates flow graphs, runs them, stores their results and emits
 * their events. `close()` releases everything it holds. Every call checks its arguments first: a
 * run id that is not one (1 to 200 characters, no `/` or control characters), a step, key or
 * listener of the wrong type, an unknown event type: a `ValidationError` `WEIR_INVALID_OPTIONS`
 * naming it (rejected by the calls that return a promise).
 *
 * @example
 * const ctx = new FlowContext({ results: ResultsManager.sqlite('.weir/runs.db') });
 * const result = await ctx.run(pipeline, { text: 'a b c' });
 * await ctx.close();
 */
export class FlowContext {
  /** Where this context stores step outputs. */
  readonly results: ResultsManager;
  readonly #core: ContextCore;
  readonly #bus = new EventBus();
  readonly #queue: Slots;
  readonly #executors: ReadonlyMap<string, Executor>;
  readonly #leases: LeaseRenewal;
  readonly #answers: Answers;
  readonly #control: ManualControl;
  readonly #recovery: Recovery;
  readonly #sharing: WorkSharing;
  readonly #history: History;
  #closing: Promise<void> | undefined;
  readonly #closeHooks = new Set<() => unknown>();

  /**
   * Makes an isolated context.
   * @throws ValidationError `WEIR_INVALID_OPTIONS` naming the bad option.
   */
  constructor(options: FlowContextOptions = {}) {
    const settings = contextSettings(options);
    this.results = settings.results;
    this.#queue = new Slots(settings.concurrency);
    this.#executors = new Map<string, Executor>([
      ['inline', new InlineExecutor()],
      ['thread', new ThreadExecutor(settings.threads)],
      ['process', new ProcessExecutor(settings.processes)],
    ]);
    const store = runStoreOf(this.results);
    const core = new ContextCore(settings, settings.wrapStore?.(store) ?? store, new FlowRegistry(settings, this.#executors), this.#executors, this.#queue, this.#bus.publish);
    this.#core = core;
    this.#leases = new LeaseRenewal(core);
    this.#answers = new Answers(core);
    core.runs = new LiveRuns(core, { parked: (runId) => this.#answers.review(runId), launched: () => this.#leases.start() });
    this.#control = new ManualControl(core, this.#answers);
    // A claimed run taken over goes on through the recovery, made right after.
    this.#sharing = new WorkSharing(core, this.#answers, (run, token) => this.#recovery.goOn(run, token));
    this.#recovery = new Recovery(core, this.#answers, this.#sharing);
    this.#history = new History(core);
    if (this.#recovers) {
      this.#recovery.schedule();
      this.#sharing.start();
    }
  }

  /**
   * Whether this context recovers runs by itself (`recover: true`): never in a weir worker, where a
   * context made by a module the worker imported must not take over the main process's runs.
   */
  get #recovers(): boolean {
    return this.#core.settings.recover && workerLoading() === undefined;
  }

  /** The process-wide default context (memory results), made on first use and again after it is closed. */
  static getInstance(): FlowContext {
    if (defaultInstance === undefined || defaultInstance.state !== 'open') defaultInstance = new FlowContext();
    return defaultInstance;
  }

  /** `open`, `closing` or `closed`. */
  get state(): ContextState {
    return this.#core.state;
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
    return this.#core.runs.size;
  }

  /**
   * Whether the context can do its work, and what it holds: its store reachable (one read now) and
   * the latency of its last commit, its pools, whether its leases are renewed on time, its active
   * runs, the runs waiting for input and the one that has waited longest. `ok` sums it up. Never
   * throws: a store that fails is reported as not reachable, with the error's code.
   */
  async health(): Promise<ContextHealth> {
    return healthOf(this.#core, this.#leases, this.workers);
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
    this.#core.assertOpen('get ready');
    await this.#core.chore(this.results.ready());
    return this;
  }

  /**
   * Validates a flow graph and records it by name, so runs can be found by flow name later.
   * @throws DependencyError `WEIR_DEPENDENCY` for a required dependency that is not registered.
   * @throws FlowError `WEIR_DUPLICATE_NAME` when the name is taken by another flow, or repeats in the graph.
   * @throws FlowError `WEIR_CONTEXT_CLOSED` after `close()`; `WEIR_INVALID_OPTIONS` when `flow` is not a Flow.
   */
  register(flow: AnyFlow): this {
    this.#core.assertOpen('register');
    this.#core.registry.register(flow);
    if (this.#recovers) {
      this.#sharing.announce();
      this.#recovery.schedule();
    }
    return this;
  }

  /** The flows registered with this context, in the order they were registered. */
  get flows(): readonly AnyFlow[] {
    return this.#core.registry.registeredFlows;
  }

  /**
   * Calls `fn` when the context starts closing, before it waits for its runs: to stop taking work
   * from outside (a server, say). What `fn` throws or rejects with is warned about, not thrown.
   * @returns a function that removes `fn`.
   */
  beforeClose(fn: () => unknown): () => void {
    parseOptions(hookArgs, { fn }, 'ctx.beforeClose()');
    this.#closeHooks.add(fn);
    return () => this.#closeHooks.delete(fn);
  }

  /** The flow registered under `name`, if any. */
  getFlow(name: string): AnyFlow | undefined {
    return this.#core.registry.registered(name);
  }

  /**
   * Starts a run and returns its handle at once. In a weir worker, a run asked for by the top level of
   * the module the worker is importing never starts, and its result never comes (see docs/executors.md).
   * @throws FlowError `WEIR_CONTEXT_CLOSED` after `close()`; `WEIR_RUN_CONFLICT` when `runId` is running.
   * @throws ValidationError `WEIR_INVALID_OPTIONS` for bad options; a bad *input* fails the run instead.
   * @throws CancelledError `WEIR_CANCELLED` when `options.signal` is already aborted (nothing is started).
   * @throws DependencyError, FlowError as `register` does, when the flow's graph is invalid.
   */
  start<I, O>(flow: Flow<I, O>, input: I, options?: RunOptions): RunHandle<O> {
    // A worker importing this module as a processor module: the run is the main thread's, not a nested one here.
    if (workerLoading()?.holdRun() === true) return heldHandle(options ?? NO_OPTIONS);
    const core = this.#core;
    core.assertOpen('start a run');
    // No options, the usual call, need no parse (the schema has no defaults to fill in).
    const parsed = options === undefined ? NO_OPTIONS : parseOptions(runOptionsSchema, options, 'run options');
    const graph = core.registry.graphOf(flow);
    if (parsed.signal?.aborted === true) {
      const reason: unknown = parsed.signal.reason;
      throw reason instanceof CancelledError ? reason : new CancelledError(`the run of "${flow.name}" was not started: its signal is already aborted`, { cause: reason });
    }
    const runId = parsed.runId ?? randomUUID();
    const live = core.runs.get(runId);
    if (live !== undefined) {
      // Idempotent start: the same flow and input get the run that exists.
      if (live.graph.root.flow === flow && isDeepStrictEqual(live.input, input)) return core.runs.handle<O>(live);
      throw conflictWith(runId, 'is running in this context');
    }
    const run = core.runs.launch(graph, input, {
      runId,
      ...modeOf(parsed, 'run options'),
      timeout: parsed.timeout,
      signal: parsed.signal,
      concurrency: parsed.concurrency ?? Infinity,
    });
    return core.runs.handle<O>(run);
  }

  /**
   * Stores a run for a worker to take: any context on the same store with `recover: true` that
   * registered the flow (at the version the run records), this one included. Higher `priority`
   * goes first; the flow's `concurrency` and `keyConcurrency` limit how many run at once (across
   * every host on a Postgres store). Resolves once the run is stored, to a handle that follows it
   * wherever it runs. `ctx.start` runs a run here instead.
   * @throws FlowError `WEIR_CONTEXT_CLOSED` after `close()`; `WEIR_RUN_CONFLICT` when `runId` exists;
   * `WEIR_SERIALIZATION` for an input the store cannot keep; `WEIR_STORE` when the store fails.
   * @throws ValidationError `WEIR_INVALID_OPTIONS` for bad options. A bad *input* fails the run when it starts.
   * @example
   * const handle = await ctx.enqueue(report, { month: '2026-11' }, { priority: 10, concurrencyKey: customerId });
   * const result = await handle.result();
   */
  async enqueue<I, O>(flow: Flow<I, O>, input: I, options: EnqueueOptions = {}): Promise<RunHandle<O>> {
    const core = this.#core;
    core.assertOpen('enqueue a run');
    const parsed = parseOptions(enqueueOptionsSchema, options, 'enqueue options');
    const how = modeOf(parsed, 'enqueue options');
    const runId = parsed.runId ?? randomUUID();
    await core.chore(
      this.#sharing.enqueue(flow, input, {
        runId,
        ...how,
        priority: parsed.priority ?? 0,
        concurrencyKey: parsed.concurrencyKey,
      }),
    );
    return core.runs.stored<O>(runId, flow);
  }

  /**
   * Runs a flow to its end; resolves to its `FlowResult` (a failed step fails the result, it does not reject).
   * @throws FlowError rejects with what `start` throws: a closed context, bad options, an aborted signal, an invalid graph.
   */
  async run<I, O>(flow: Flow<I, O>, input: I, options?: RunOptions): Promise<FlowResult<O>> {
    return this.start(flow, input, options).result();
  }

  /**
   * Cancels a run of this context: running steps see `step.signal` abort, pending ones never start.
   * Resolves once the run has ended as `cancelled`.
   * @throws FlowError `WEIR_RUN_NOT_FOUND` when no such run exists; `WEIR_RUN_STATE` when it has
   * ended, or another context runs it; `WEIR_CONTEXT_CLOSED` once the context is closed.
   */
  async cancel(runId: string, reason?: string): Promise<void> {
    this.#core.assertNotClosed('cancel a run');
    parseOptions(cancelArgs, { runId, reason }, 'ctx.cancel()');
    return this.#control.cancel(runId, reason);
  }

  /**
   * The events of a run from `after` on, then live until it ends: from memory for a run of this
   * context, from the store for any other.
   * @throws FlowError `WEIR_RUN_NOT_FOUND` (when iterated) when no such run exists; `WEIR_CONTEXT_CLOSED` once the context is closed.
   * @throws ValidationError `WEIR_INVALID_OPTIONS` when `after` is not a whole number >= 0.
   */
  events(runId: string, options: EventsOptions = {}): AsyncIterable<WeirEvent> {
    const core = this.#core;
    core.assertNotClosed('read the events of a run');
    parseOptions(runArgs, { runId }, 'ctx.events()');
    const run = core.runs.get(runId);
    if (run !== undefined) return core.runs.handle(run).events(options);
    const events = core.runs.stored(runId).events(options);
    return {
      async *[Symbol.asyncIterator]() {
        await core.load(runId);
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
    const core = this.#core;
    core.assertNotClosed('get the handle of a run');
    parseOptions(runArgs, { runId }, 'ctx.handle()');
    if (flow !== undefined && !(flow instanceof Flow)) {
      throw new FlowError(`ctx.handle(): flow: expected a Flow, got ${describeValue(flow)}`, { code: ErrorCode.INVALID_OPTIONS });
    }
    if (flow !== undefined) core.registry.graphOf(flow);
    const run = core.runs.get(runId);
    if (run !== undefined) {
      if (flow !== undefined) assertRunOf(runId, run.graph.root.name, flow);
      return core.runs.handle<O>(run);
    }
    const loaded = await core.load(runId);
    if (flow !== undefined) assertRunOf(runId, loaded.run.flow, flow);
    return core.runs.stored<O>(runId, flow);
  }

  /**
   * Takes over the stale runs of registered flows (their lease ran out, or their process on this
   * host is gone) and goes on with them from their last completed steps.
   * @returns the handles of the runs taken over. A run another context takes first is left to it.
   */
  async recover(): Promise<RunHandle[]> {
    if (workerLoading()?.holdRun() === true) return never();
    this.#core.assertOpen('recover runs');
    const runs = await this.#core.chore(this.#recovery.recover());
    return runs.map((run) => this.#core.runs.handle(run));
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
    this.#core.assertOpen('resume a run');
    parseOptions(runArgs, { runId }, 'ctx.resume()');
    const { from } = parseOptions(resumeOptionsSchema, options, 'resume options');
    return this.#core.runs.handle<O>(await this.#core.chore(this.#control.resume(runId, from)));
  }

  /**
   * Starts a new run of an ended run's flow with the same input; each run records the other
   * (`retryOf`, `retriedBy`).
   * @throws FlowError as `resume` does, for a missing, running or unregistered run.
   */
  async retry<O = unknown>(runId: string): Promise<RunHandle<O>> {
    if (workerLoading()?.holdRun() === true) return never();
    this.#core.assertOpen('retry a run');
    parseOptions(runArgs, { runId }, 'ctx.retry()');
    return this.#core.runs.handle<O>(await this.#core.chore(this.#control.retry(runId)));
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
    this.#core.assertOpen('skip a step');
    parseOptions(skipArgs, { runId, step, output }, 'ctx.skip()');
    return this.#control.skip(runId, step, output);
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
    this.#core.assertOpen('submit input');
    parseOptions(submitArgs, { runId, key, value }, 'ctx.submitInput()');
    return this.#answers.submit(runId, key, value);
  }

  /**
   * Turns the person in the loop of a `hybrid` run on or off, recorded with the run, at once. Off:
   * steps waiting now run again and take their defaults (or fail), and later asks do not wait. On:
   * later asks wait.
   * @throws FlowError `WEIR_RUN_NOT_FOUND`; `WEIR_RUN_STATE` for a run that is not hybrid, has ended,
   * or runs in another context.
   */
  async setHumanInLoop(runId: string, on: boolean): Promise<void> {
    this.#core.assertOpen('set human in the loop');
    parseOptions(humanInLoopArgs, { runId, on }, 'ctx.setHumanInLoop()');
    return this.#answers.setHumanInLoop(runId, on);
  }

  /**
   * A run in detail: status, running steps, progress (done/total), last update, and every step's attempts.
   * @throws FlowError `WEIR_RUN_NOT_FOUND`; `WEIR_CORRUPT_RECORD` naming a record that cannot be read;
   * `WEIR_CONTEXT_CLOSED` once the context is closed (it still reads while closing).
   */
  async getRun(runId: string): Promise<RunInfo> {
    this.#core.assertNotClosed('read a run');
    parseOptions(runArgs, { runId }, 'ctx.getRun()');
    return this.#history.getRun(runId);
  }

  /**
   * Active and recent runs, newest first, one page at a time (`next` is the cursor for `before`).
   * @throws ValidationError `WEIR_INVALID_OPTIONS` for a bad query; FlowError `WEIR_UNSUPPORTED` for a
   * Keyv store that cannot be iterated; `WEIR_CONTEXT_CLOSED` once the context is closed.
   */
  async listRuns(query: ListRunsOptions = {}): Promise<RunList> {
    this.#core.assertNotClosed('list runs');
    const parsed = stripUndefined(parseOptions(listRunsSchema, query, 'listRuns options')) as Omit<ListRunsQuery, 'now'>;
    return this.#history.listRuns(parsed);
  }

  /**
   * Deletes finished runs (completed, failed, cancelled) that ended before the cutoff, with their
   * steps, outputs and events; never a running or waiting one.
   * @returns how many runs were deleted.
   * @throws ValidationError `WEIR_INVALID_OPTIONS` for a negative age or an invalid Date; FlowError
   * `WEIR_CONTEXT_CLOSED` after `close()`.
   */
  async prune(options: PruneRunsOptions): Promise<number> {
    this.#core.assertOpen('prune runs');
    const { olderThan } = parseOptions(pruneSchema, options, 'prune options');
    return this.#core.store.prune({ olderThan: olderThan instanceof Date ? olderThan.getTime() : this.#core.clock.now() - olderThan });
  }

  /** Listens to one event type of every run, or to all of them with `'event'`. */
  on<T extends keyof WeirEventMap>(type: T, listener: WeirEventMap[T]): this {
    this.#core.assertNotClosed('listen to events');
    parseOptions(listenArgs, { type, listener }, 'ctx.on()');
    this.#bus.on(type, listener);
    return this;
  }

  /** Like `on`, for the next event only. */
  once<T extends keyof WeirEventMap>(type: T, listener: WeirEventMap[T]): this {
    this.#core.assertNotClosed('listen to events');
    parseOptions(listenArgs, { type, listener }, 'ctx.once()');
    this.#bus.once(type, listener);
    return this;
  }

  /** How many listeners of `type` (`'event'`: of every event) are added. */
  listenerCount(type: keyof WeirEventMap): number {
    parseOptions(eventTypeArgs, { type }, 'ctx.listenerCount()');
    return this.#bus.listenerCount(type);
  }

  /** Removes a listener added with `on` or `once`. */
  off<T extends keyof WeirEventMap>(type: T, listener: WeirEventMap[T]): this {
    parseOptions(listenArgs, { type, listener }, 'ctx.off()');
    this.#bus.off(type, listener);
    return this;
  }

  /** What a test kit may see of this context (`weir/testing`). @internal */
  [INSPECT](): ContextInspection {
    const queue = this.#queue;
    let working = this.#core.choring;
    let running = 0;
    let waitingForSlot = 0;
    for (const run of this.#core.runs.values()) {
      const activity = run.activity;
      working ||= activity.working;
      running += activity.running;
      waitingForSlot += activity.waitingForSlot;
    }
    // A leaf waiting in the queue starts by itself while a slot is free; else it waits on what holds the slots.
    working ||= waitingForSlot > 0 && queue.pending < queue.concurrency;
    return { working, running, flows: this.#core.registry.known, leaseTimeout: this.#core.settings.leaseMs };
  }

  /** Stops lease renewal, recovery, the reviews of waiting runs, and the queue: no timer of the context is left. */
  #stopHousekeeping(): void {
    void this.#sharing.stop(false);
    this.#leases.stop();
    this.#recovery.stop();
    this.#answers.stop();
    this.#queue.clear();
  }

  /** Commits what every live run recorded now (`weir/testing`; see `FLUSH`). @internal */
  async [FLUSH](): Promise<void> {
    await Promise.all([...this.#core.runs.values()].map((run) => run.flushed()));
  }

  /** Stops as a kill -9 of the process would (`weir/testing`; see `HALT`). @internal */
  async [HALT](reason: FlowError): Promise<void> {
    const core = this.#core;
    if (core.state === 'closed') return;
    core.state = 'closed';
    this.#closing ??= Promise.resolve();
    this.#bus.clear();
    this.#stopHousekeeping();
    for (const run of [...core.runs.values()]) run.halt(reason);
    core.runs.closing(reason);
    core.runs.closed();
    await Promise.all([...this.#executors.values()].map((executor) => executor.close()));
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
    const core = this.#core;
    const runs = core.runs;
    core.state = 'closing';
    await Promise.all(
      [...this.#closeHooks].map(async (fn) => {
        try {
          await fn();
        } catch (error) {
          process.emitWarning(`weir: a beforeClose hook failed: ${messageOf(error)}`, { code: WarningCode.CLOSE_HOOK });
        }
      }),
    );
    this.#closeHooks.clear();
    // No more runs from the queue or other hosts; this worker leaves the register.
    await this.#sharing.stop(true);
    // Recoveries and other store work in progress may still start runs: let them.
    await core.choresDone();
    // Runs parking now are about to be in the store only, and not active here.
    await Promise.all([...runs.values()].filter((run) => run.status === FlowStatus.WAITING).map((run) => run.parked()));
    await core.choresDone();
    if (runs.size > 0) {
      // A run's life here ends when it ends, or parks to wait for input.
      const ended = (): Promise<unknown> => Promise.allSettled([...runs.values()].map((run) => run.leftContext()));
      let timer: ReturnType<typeof setTimer> | undefined;
      // Not unref'd: whoever awaits close() is owed its end, even when nothing else holds the process open.
      await Promise.race([ended(), new Promise<void>((resolve) => (timer = setTimer(resolve, core.settings.closeTimeout)))]);
      clearTimer(timer);
      if (this.results.durable) {
        // A durable run is not cancelled by a shutdown: it stays running in the store, its lease released, for recover().
        const reason = new FlowError('the FlowContext was closed before the run ended; it stays running in the store, and recover() goes on with it', {
          code: ErrorCode.CONTEXT_CLOSED,
        });
        await Promise.all([...runs.values()].map((run) => run.suspend(reason)));
      } else {
        for (const run of runs.values()) run.cancel(new CancelledError('the FlowContext was closed'));
      }
      // A run settles once its end (or its suspension) is recorded.
      await ended();
    }
    // Runs waiting for input in a memory store (some parked just now) end with it: they are
    // cancelled, so their handles settle.
    await core.choresDone();
    if (!this.results.durable) await this.#answers.cancelAll(new CancelledError('the FlowContext was closed while the run waited for input'));
    this.#stopHousekeeping();
    runs.closing(
      new FlowError('the FlowContext was closed while the run waited for input; it stays waiting in the store, and ctx.handle(runId) of a new context follows it', {
        code: ErrorCode.CONTEXT_CLOSED,
      }),
    );
    await Promise.all([...this.#executors.values()].map((executor) => executor.close()));
    await this.results.close();
    runs.closed();
    this.#bus.clear();
    core.state = 'closed';
  }
}

/** `ctx.handle(runId, flow)`: the run must be of that flow, or its handle would be typed wrong. */
function assertRunOf(runId: string, runFlow: string, flow: AnyFlow): void {
  if (runFlow !== flow.name) {
    throw new FlowError(`ctx.handle: run "${runId}" is a run of flow "${runFlow}", not of "${flow.name}"`, { code: ErrorCode.RUN_CONFLICT });
  }
}

/** The options of a run started without any. */
const NO_OPTIONS: RunOptions = Object.freeze({});

/**
 * A run's mode and whether a person is in its loop, from its options: interactive always,
 * hybrid unless `humanInLoop: false`, batch never.
 * @throws FlowError `WEIR_INVALID_OPTIONS` for `humanInLoop` with a mode other than hybrid.
 */
function modeOf(options: { readonly mode?: RunMode | undefined; readonly humanInLoop?: boolean | undefined }, what: string): { mode: RunMode; humanInLoop: boolean } {
  const mode = options.mode ?? RunMode.BATCH;
  if (options.humanInLoop !== undefined && mode !== RunMode.HYBRID) {
    throw new FlowError(`${what}: humanInLoop is for mode 'hybrid' only (mode is '${mode}')`, { code: ErrorCode.INVALID_OPTIONS });
  }
  return { mode, humanInLoop: mode === RunMode.INTERACTIVE || (mode === RunMode.HYBRID && (options.humanInLoop ?? true)) };
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

