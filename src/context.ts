/**
 * `FlowContext`: the registry of flows and the runtime that runs them, with its executors,
 * its results, its concurrency limit and its events.
 */
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { EventEmitter } from 'eventemitter3';
import PQueue from 'p-queue';
import { z } from 'zod';
import { CancelledError, ErrorCode, FlowError } from './errors.js';
import type { WeirEvent, WeirEventMap } from './events.js';
import type { Executor } from './executors/executor.js';
import { InlineExecutor } from './executors/inline.js';
import {
  processPoolSchema,
  processSettings,
  threadPoolSchema,
  threadSettings,
  type ProcessPoolOptions,
  type ThreadPoolOptions,
} from './executors/pool-options.js';
import { ProcessExecutor } from './executors/process.js';
import { ThreadExecutor } from './executors/thread.js';
import { setDefaultRunner, graphVersionOf, Flow, type AnyFlow } from './flow.js';
import { compileGraph, type CompiledGraph } from './graph/compile.js';
import { ResultsManager } from './results/results-manager.js';
import type { FlowResult } from './result.js';
import { handleOf, type EventsOptions, type RunHandle } from './run/handle.js';
import { DEFAULT_RETRY_POLICY, mergeRetry, retryOptionSchema, type RetryOption, type RetryPolicy } from './run/retry.js';
import { runOptionsSchema, type RunOptions } from './run/run-options.js';
import { Run } from './run/run.js';
import { RunMode } from './status.js';
import { clearTimer, setTimer } from './util/clock.js';
import { DrainQueue } from './util/drain-queue.js';
import { parseOptions } from './util/parse.js';

/** Options of `new FlowContext()`. */
export interface FlowContextOptions {
  /** Where step outputs are stored. @default ResultsManager.memory() */
  readonly results?: ResultsManager | undefined;
  /** The most steps that run at once across all runs of this context. @default 100 */
  readonly concurrency?: number | undefined;
  /** The retry policy under every flow's and composite's. @default 0 (a single attempt) */
  readonly retry?: RetryOption | undefined;
  /** The default timeout of one step attempt, in milliseconds. @default none */
  readonly timeout?: number | undefined;
  /** How long `close()` waits for active runs before cancelling them, in milliseconds. @default 10000 */
  readonly closeTimeout?: number | undefined;
  /** The pool of worker threads behind `type: 'thread'` flows, made on first use. @default see `ThreadPoolOptions` */
  readonly threads?: ThreadPoolOptions | undefined;
  /** The pool of child processes behind `type: 'process'` flows, made on first use. @default see `ProcessPoolOptions` */
  readonly processes?: ProcessPoolOptions | undefined;
}

const contextOptionsSchema = z.strictObject({
  results: z.custom<ResultsManager>((v) => v instanceof ResultsManager, 'expected a ResultsManager').optional(),
  concurrency: z.number().int().positive().or(z.literal(Infinity)).optional(),
  retry: retryOptionSchema.optional(),
  timeout: z.number().int().positive().optional(),
  closeTimeout: z.number().int().nonnegative().optional(),
  threads: threadPoolSchema.optional(),
  processes: processPoolSchema.optional(),
});

/** The lifecycle of a context. */
export type ContextState = 'open' | 'closing' | 'closed';

const PROCESS_ID = `${hostname()}:${process.pid}`;
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
  readonly #retry: RetryPolicy;
  readonly #timeout: number | undefined;
  readonly #closeTimeout: number;
  readonly #registry = new Map<string, AnyFlow>();
  readonly #compiled = new WeakMap<AnyFlow, { version: number; graph: CompiledGraph }>();
  readonly #runs = new Map<string, Run>();
  #state: ContextState = 'open';
  readonly #backlog = new DrainQueue<WeirEvent>((event) => this.#deliver(event));
  #closing: Promise<void> | undefined;

  /**
   * Makes an isolated context.
   * @throws ValidationError `WEIR_INVALID_OPTIONS` naming the bad option.
   */
  constructor(options: FlowContextOptions = {}) {
    const parsed = parseOptions(contextOptionsSchema, options, 'new FlowContext()');
    this.results = parsed.results ?? ResultsManager.memory();
    this.#queue = new PQueue({ concurrency: parsed.concurrency ?? 100 });
    this.#executors = new Map<string, Executor>([
      ['inline', new InlineExecutor()],
      ['thread', new ThreadExecutor(threadSettings(parsed.threads))],
      ['process', new ProcessExecutor(processSettings(parsed.processes))],
    ]);
    this.#retry = mergeRetry(DEFAULT_RETRY_POLICY, parsed.retry);
    this.#timeout = parsed.timeout;
    this.#closeTimeout = parsed.closeTimeout ?? 10_000;
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
    return this;
  }

  /** The flow registered under `name`, if any. */
  getFlow(name: string): AnyFlow | undefined {
    return this.#registry.get(name);
  }

  /**
   * Starts a run and returns its handle at once.
   * @throws FlowError `WEIR_CONTEXT_CLOSED` after `close()`; `WEIR_RUN_CONFLICT` when `runId` is running.
   * @throws ValidationError `WEIR_INVALID_OPTIONS` for bad options; a bad *input* fails the run instead.
   * @throws CancelledError `WEIR_CANCELLED` when `options.signal` is already aborted (nothing is started).
   * @throws DependencyError, FlowError as `register` does, when the flow's graph is invalid.
   */
  start<I, O>(flow: Flow<I, O>, input: I, options: RunOptions = {}): RunHandle<O> {
    this.#assertOpen('start a run');
    const parsed = parseOptions(runOptionsSchema, options, 'run options');
    const graph = this.#graphOf(flow);
    if (parsed.signal?.aborted === true) {
      const reason: unknown = parsed.signal.reason;
      throw reason instanceof CancelledError ? reason : new CancelledError(`the run of "${flow.name}" was not started: its signal is already aborted`, { cause: reason });
    }
    const runId = parsed.runId ?? randomUUID();
    if (this.#runs.has(runId)) {
      throw new FlowError(`run "${runId}" is already running in this context`, { code: ErrorCode.RUN_CONFLICT });
    }
    const run = new Run(
      graph,
      input,
      {
        runId,
        mode: parsed.mode ?? RunMode.BATCH,
        timeout: parsed.timeout,
        signal: parsed.signal,
        concurrency: parsed.concurrency ?? Infinity,
      },
      {
        results: this.results,
        executors: this.#executors,
        queue: this.#queue,
        processId: PROCESS_ID,
        emit: this.#emit,
        finished: (r) => this.#runs.delete(r.runId),
      },
    );
    this.#runs.set(runId, run);
    run.start();
    return handleOf<O>(run);
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
   * @throws FlowError `WEIR_RUN_NOT_FOUND` when no such run is in progress here.
   */
  async cancel(runId: string, reason?: string): Promise<void> {
    const run = this.#runs.get(runId);
    if (run === undefined) throw new FlowError(`run "${runId}" is not in progress in this context`, { code: ErrorCode.RUN_NOT_FOUND });
    run.cancel(new CancelledError(reason ?? `run "${runId}" was cancelled`));
    await run.result();
  }

  /**
   * The events of a run in progress here, from `after` on, then live until it ends.
   * @throws FlowError `WEIR_RUN_NOT_FOUND` when no such run is in progress here.
   * @throws ValidationError `WEIR_INVALID_OPTIONS` when `after` is not a whole number >= 0.
   */
  events(runId: string, options: EventsOptions = {}): AsyncIterable<WeirEvent> {
    const run = this.#runs.get(runId);
    if (run === undefined) throw new FlowError(`run "${runId}" is not in progress in this context`, { code: ErrorCode.RUN_NOT_FOUND });
    return handleOf(run).events(options);
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
    const active = [...this.#runs.values()];
    if (active.length > 0) {
      let timer: ReturnType<typeof setTimer> | undefined;
      await Promise.race([
        Promise.all(active.map((run) => run.result())),
        new Promise<void>((resolve) => (timer = setTimer(resolve, this.#closeTimeout, { unref: true }))),
      ]);
      clearTimer(timer);
      for (const run of this.#runs.values()) run.cancel(new CancelledError('the FlowContext was closed'));
    }
    this.#queue.clear();
    await Promise.all([...this.#executors.values()].map((executor) => executor.close()));
    await this.results.close();
    this.#emitter.removeAllListeners();
    this.#state = 'closed';
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
      process.emitWarning(`weir: a listener of "${event.type}" threw: ${String(error)}`, { code: 'WEIR_LISTENER_ERROR' });
    }
  }

  #assertOpen(action: string): void {
    if (this.#state !== 'open') {
      throw new FlowError(`cannot ${action}: the FlowContext is ${this.#state}`, { code: ErrorCode.CONTEXT_CLOSED });
    }
  }

  #graphOf(flow: AnyFlow): CompiledGraph {
    if (!(flow instanceof Flow)) {
      throw new FlowError(`expected a Flow, got ${flow === null ? 'null' : typeof flow}`, { code: ErrorCode.INVALID_OPTIONS });
    }
    const version = graphVersionOf(flow);
    const cached = this.#compiled.get(flow);
    if (cached?.version === version) return cached.graph;
    const graph = compileGraph(flow, {
      retry: this.#retry,
      timeout: this.#timeout,
      // FlowConfig allows only the types this map holds.
      checkLeaf: (leaf, processor) => this.#executors.get(leaf.type)!.prepare?.(processor, `flow "${leaf.name}"`),
    });
    this.#compiled.set(flow, { version, graph });
    return graph;
  }
}

setDefaultRunner((flow, input, options) => FlowContext.getInstance().run(flow, input, options));
