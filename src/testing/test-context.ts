/**
 * `createTestContext`: a `FlowContext` on a virtual clock, with step doubles, injected crashes and
 * store faults, for unit tests of flows that run in milliseconds whatever their backoffs, timeouts
 * and deadlines. It depends on no test runner: a failed expectation throws an `Error`.
 *
 * Its parts live beside it (the clock driver, doubles, the faulty store, runStep's harness, the test
 * step, expectations); what is left here passes 450 lines for one reason: the TSDoc of the kit's
 * public methods, each a short delegation.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
// Built, `weir/testing` shares its chunks with `weir` (tsup splitting), so a test context's
// FlowContext and errors are the very classes users import from `weir`.
import { FlowContext } from '../context/flow-context.js';
import type { FlowContextOptions } from '../context/options.js';
import { FLUSH, HALT, INSPECT, TEST_HOOKS, type ContextInspection, type TestHooks } from '../context/test-hooks.js';
import { ErrorCode, FlowError } from '../errors/errors.js';
import type { WeirEvent } from '../model/events.js';
import { Flow, type AnyFlow } from '../model/flow.js';
import type { Step } from '../model/processor.js';
import type { FlowResult } from '../model/result.js';
import type { RunOptions } from '../model/run-options.js';
import type { WaitInfo } from '../model/waits.js';
import { ResultsManager } from '../results/results-manager.js';
import type { RunHandle } from '../run/handle.js';
import type { RunStore } from '../storage/journal/run-store.js';
import { describeValue, invalidOptions, parseOptions, type OptionsOf } from '../util/parse.js';
import { runArgs } from '../context/arguments.js';
import { nameOf, StepDoubleRegistry, toDouble, type StepRef } from './doubles.js';
import { durationSchema, toMs, type Duration } from './durations.js';
import { eventLine, StepExpectations, summaryOf, type RunSummaryForTest } from './expect-steps.js';
import { StoreFaults, type FailStoreOptions } from './faulty-store.js';
import { stepHarness } from './run-step.js';
import { TestStep, type TestStepOptions } from './test-step.js';
import { ClockDriver } from './clock-driver.js';
import { ClockScope, VirtualClock } from './virtual-clock.js';

/** Where the virtual clock starts by default: a fixed time, so times in results and events are the same on every run. */
const START = Date.UTC(2030, 0, 1);

const testShape = {
  /** Where runs are stored: a memory store, or a SQLite file in a new temporary directory (removed by `close()`). @default 'memory' */
  store: z.enum(['memory', 'sqlite']).optional(),
  /** The virtual time the clock starts at, in ms since the epoch or as a Date. @default 2030-01-01T00:00:00Z */
  startTime: z.union([z.number().nonnegative(), z.date()]).optional(),
  /**
   * How long, in real time, the clock waits for steps at work that give no news (no event, no timer
   * set) before it takes them as waiting on time and moves on: milliseconds, or `'2s'`. @default '2s'
   */
  stepWait: durationSchema.optional(),
};

const times = z.number().int().min(1).optional();
const failSchema = z.strictObject({ times });
const restartSchema = z.strictObject({ downtime: durationSchema.optional() });
const failStoreSchema = z.strictObject({
  on: z.enum(['create', 'commit', 'input', 'lease', 'write']),
  times,
  step: z.string().min(1).optional(),
  error: z.unknown().optional(),
});
const runStepSchema = z.looseObject({ deps: z.record(z.string(), z.unknown()).optional() });
// What expectations read of a FlowResult: the rest of it is let through as it is.
const resultSchema = z.looseObject({
  runId: z.string(),
  status: z.string(),
  steps: z.record(z.string(), z.looseObject({ name: z.string(), status: z.string(), attempts: z.array(z.unknown()) })),
});

/** Options of `createTestContext`: those of `new FlowContext()` (but `results`), and the test's own. */
export type TestContextOptions = Omit<FlowContextOptions, 'results'> & OptionsOf<typeof testShape>;

/** What `t.fail` takes: how many of the step's next attempts fail. */
export interface FailOptions {
  /** @default 1 */
  readonly times?: number;
}

/** Options of `t.restart()`. */
export interface RestartOptions {
  /**
   * How long the process stays down: the virtual clock moves this far before the new context
   * recovers. @default the lease timeout, and 1 ms (the dead context's leases have run out)
   */
  readonly downtime?: Duration;
}

/** Options of `t.runStep()`: a run's options, and the outputs of the flow's dependencies. */
export interface RunStepOptions extends RunOptions {
  /** The output of each dependency the flow reads, by name: every required one, and the optional ones that completed. @default {} */
  readonly deps?: Readonly<Record<string, unknown>>;
}

/**
 * Makes a test context: a `FlowContext` whose clock is virtual. Backoffs, step and run timeouts,
 * heartbeat timeouts, leases and `waitForInput` deadlines follow it; `advance` and `runUntilIdle`
 * move it. Close it after the test (`await t.close()`, or `await using t = createTestContext()`).
 * @throws ValidationError `WEIR_INVALID_OPTIONS` for a bad option (of the test's, or the context's).
 * @example
 * const t = createTestContext();
 * t.fail('charge', new RetryableError('gateway down'), { times: 2 });
 * const result = await t.run(checkout, order);   // three attempts, ten minutes apart: milliseconds
 * expect(result.status).toBe('completed');
 * await t.close();
 */
export function createTestContext(options: TestContextOptions = {}): TestContext {
  // The test's own options are taken out here; the rest is the context's, which new FlowContext() checks.
  const { store, startTime, stepWait, ...rest } = parseOptions(z.looseObject(testShape), options, 'createTestContext()');
  const parsed = { store, startTime, stepWait };
  return new TestContext(rest, {
    store: parsed.store ?? 'memory',
    start: parsed.startTime === undefined ? START : new Date(parsed.startTime).getTime(),
    stepWait: parsed.stepWait === undefined ? 2000 : toMs(parsed.stepWait, 'createTestContext(): stepWait'),
  });
}

/** A `FlowContext` on a virtual clock, with step doubles, crashes, store faults and expectations. */
export class TestContext {
  /** The virtual clock the context runs on (and the contexts `restart` makes after it). */
  readonly #clock: VirtualClock;
  /** Moves the clock once what the current context does in real time has settled. */
  readonly #driver: ClockDriver;
  readonly #options: Omit<FlowContextOptions, 'results'>;
  readonly #doubles: StepDoubleRegistry;
  readonly #faults = new StoreFaults();
  readonly #file: string | undefined;
  readonly #dir: string | undefined;
  /** Every event of every run, in order (across restarts). */
  readonly #events: WeirEvent[] = [];
  #ctx: FlowContext;
  #scope: ClockScope;
  #results: ResultsManager;
  /** The run store under the faults: what is durable. */
  #store: RunStore | undefined;
  #runs = 0;
  /** The flows started through the kit: a restarted context registers them, so it recovers their runs. */
  readonly #flows = new Set<AnyFlow>();
  /** Set once the context was stopped as a crash would (`crashAfter`, `crashBefore`, `restart`). */
  #halted: Promise<void> | undefined;

  /** @internal use `createTestContext`. */
  constructor(options: Omit<FlowContextOptions, 'results'>, own: { readonly store: 'memory' | 'sqlite'; readonly start: number; readonly stepWait: number }) {
    const { store, start } = own;
    this.#clock = new VirtualClock(start);
    this.#driver = new ClockDriver(this.#clock, own.stepWait, {
      inspect: () => this.#inspect(),
      flush: () => (this.#ctx.state === 'open' ? this.#ctx[FLUSH]() : Promise.resolve()),
      events: () => this.#events.length,
    });
    // Closing does not wait (in real time) for runs that wait on the virtual clock.
    this.#options = { closeTimeout: 0, ...options };
    this.#doubles = new StepDoubleRegistry((step) => void this.#crash(`before step "${step}" ran`));
    this.#dir = store === 'sqlite' ? mkdtempSync(join(tmpdir(), 'weir-test-')) : undefined;
    this.#file = this.#dir === undefined ? undefined : join(this.#dir, 'runs.db');
    try {
      this.#results = this.#file === undefined ? ResultsManager.memory() : ResultsManager.sqlite(this.#file);
      this.#scope = new ClockScope(this.#clock);
      this.#ctx = this.#context();
    } catch (error) {
      this.#removeDir();
      throw error;
    }
  }

  /** The context under test: use it as in production (`register`, `start`, `getRun`, `on`...). After `restart()`, the new one. */
  get ctx(): FlowContext {
    return this.#ctx;
  }

  /** The virtual time now, in ms since the epoch. */
  now(): number {
    return this.#clock.now();
  }

  /** Every event of every run so far (across restarts), or of one run, in order. */
  events(runId?: string): readonly WeirEvent[] {
    return runId === undefined ? [...this.#events] : this.#events.filter((e) => e.runId === runId);
  }

  /**
   * A run's events as the store has them, as short lines for an expectation or a snapshot:
   * `'step_start charge#1'`, `'step_retry charge#1 in 60000 ms WEIR_RETRYABLE'`,
   * `'input_required review#1 "approval"'`... (no ids, no times). After a crash, the events a
   * listener saw but the store never got are not among them.
   */
  async eventLog(runId: string): Promise<string[]> {
    parseOptions(runArgs, { runId }, 't.eventLog()');
    await this.#driver.settle();
    return (await this.#store!.readEvents(runId)).map(eventLine);
  }

  /**
   * Moves the virtual clock forward by `duration`, firing each timer due on the way in order, and
   * letting what it sets going settle before the next.
   * @throws ValidationError `WEIR_INVALID_OPTIONS` for a bad duration.
   */
  async advance(duration: Duration): Promise<void> {
    await this.#driver.advanceTo(this.#clock.now() + toMs(duration, 't.advance(duration)'));
  }

  /**
   * Moves the virtual clock from timer to timer until none is left but the context's housekeeping
   * (lease renewal, recovery): every backoff, timeout and deadline of the runs has fired. Time does
   * not jump while steps are at work and give news (an event, a timer set); steps that give none for
   * `stepWait` of real time are taken as waiting on time (their timeout, say), and the clock moves
   * on. When nothing on the clock could end them, it waits on for them, up to a minute without news.
   * @throws FlowError `WEIR_RUN_STATE` when over 10,000 timers of the runs fire (a flow that never settles).
   */
  async runUntilIdle(): Promise<void> {
    await this.#driver.runUntilIdle();
  }

  /**
   * Starts a run as `ctx.start` does, with run id `run-1`, `run-2`... unless `options.runId` is
   * given (so ids are the same on every test run); the clock does not move until `advance` or `runUntilIdle`.
   */
  start<I, O>(flow: Flow<I, O>, input: I, options?: RunOptions): RunHandle<O> {
    // Options that are not an object go to ctx.start as they are, which says what is wrong with them.
    const auto = options === undefined || (isObject(options) && options.runId === undefined);
    const handle = this.#ctx.start(flow, input, auto ? { ...options, runId: `run-${this.#runs + 1}` } : options);
    // Only a run that started counts: a refused call uses no id, and leaves no flow for restart() to register.
    if (auto) this.#runs++;
    this.#flows.add(flow);
    return handle;
  }

  /**
   * Runs a flow to its end on the virtual clock: starts it (as `t.start`) and runs until idle.
   * @throws FlowError `WEIR_RUN_STATE` when the run has not ended by then (it waits for input, or a
   * step never ends), saying which; what `ctx.start` throws.
   */
  async run<I, O>(flow: Flow<I, O>, input: I, options?: RunOptions): Promise<FlowResult<O>> {
    return this.#drive(this.start(flow, input, options));
  }

  /**
   * Runs one flow of a tree alone, with the outputs of its dependencies given (`deps`): a copy of
   * it, in a composite of its own after a stub step per dependency, so its processor, retries,
   * timeouts and executor are those of the real run. The result is the flow's own (its output,
   * attempts and steps; the stubs left out). A stub's output is checked by the real dependency's
   * output schema, where the flow's composite has a leaf of that name.
   * @throws FlowError `WEIR_INVALID_OPTIONS` for a missing required dependency, or one the flow does
   * not have; `WEIR_RUN_STATE` as `t.run`.
   * @example
   * const result = await t.runStep(enrich, { id: 7 }, { deps: { fetch: { name: 'Ada' } } });
   */
  async runStep<I, O>(flow: Flow<I, O>, input: I, options: RunStepOptions = {}): Promise<FlowResult<O>> {
    const { deps, ...runOptions } = parseOptions(runStepSchema, options, 't.runStep() options') as RunStepOptions;
    if (!(flow instanceof Flow)) throw invalidOptions('t.runStep()', [{ path: ['flow'], expected: 'a Flow', got: describeValue(flow) }]);
    const harness = stepHarness(flow, input, deps ?? {});
    const result = await this.#drive(this.start(harness.flow, input, runOptions));
    return harness.resultOf(result);
  }

  /**
   * A `Step` for calling a processor's `process()` directly: `await processor.process(input, t.step({ deps }))`.
   * It keeps what the processor reported (`progressReports`, `heartbeats`, `asks`).
   */
  step(options: TestStepOptions = {}): TestStep {
    return new TestStep(options);
  }

  /**
   * Runs the clock until a run ends, and resolves to its result (a run started earlier, one
   * answered, or one `restart` recovered).
   * @throws FlowError `WEIR_RUN_STATE` when it has not ended by then, saying why; `WEIR_RUN_NOT_FOUND` for an unknown run.
   */
  async result<O = unknown>(run: string | RunHandle<O>): Promise<FlowResult<O>> {
    // By id, in the current context: a handle from before a restart follows the run in the new one.
    return this.#drive(await this.#ctx.handle<O>(runIdOf(run)));
  }

  /**
   * Answers a wait (as `ctx.submitInput`), then runs until idle; resolves to the run's result if it
   * ended, else `undefined` (it waits again, say). Given the run's handle, the result is typed.
   */
  async answer<O = unknown>(run: string | RunHandle<O>, key: string, value: unknown): Promise<FlowResult<O> | undefined> {
    const runId = runIdOf(run);
    await this.#ctx.submitInput(runId, key, value);
    return this.#drive(await this.#ctx.handle<O>(runId), false);
  }

  /**
   * Checks that a run waits for input on `key` (on anything, without a key), and returns what it waits on.
   * @throws Error saying what the run does instead.
   */
  async expectWaiting(runId: string, key?: string): Promise<WaitInfo> {
    await this.#driver.settle();
    const info = await this.#ctx.getRun(runId);
    const waits = info.waitingFor ?? [];
    const wait = key === undefined ? waits[0] : waits.find((w) => w.key === key);
    if (info.status !== 'waiting' || wait === undefined) {
      const what = info.status === 'waiting' ? `it waits on ${waits.map((w) => `"${w.key}"`).join(', ')}` : `it is ${info.status}`;
      throw new Error(`expected run "${runId}" to wait for input${key === undefined ? '' : ` "${key}"`}, but ${what}`);
    }
    return wait;
  }

  /**
   * Expectations on a run's steps that read well:
   * `t.expectSteps(result).toHaveRun(['a', 'b']).toHaveSkipped(['c']).toHaveAttempts({ a: 3 })`.
   * A failed one throws node's `AssertionError` (every runner shows its diff).
   */
  expectSteps(result: FlowResult): StepExpectations {
    parseOptions(resultSchema, result, 't.expectSteps()');
    return new StepExpectations(result);
  }

  /** A run's result as a test compares it or snapshots it: status, output, error, and each step's status and attempts; no ids, processes or times. */
  summary(result: FlowResult): RunSummaryForTest {
    parseOptions(resultSchema, result, 't.summary()');
    return summaryOf(result);
  }

  /**
   * Replaces the processor of the steps named so in this test context's runs (and after `restart`):
   * `output` is what every attempt returns, or a
   * function of the validated input and the step. The output still passes the processor's output
   * schema, so a wrong double fails the step (and the test) as a wrong processor would.
   * @throws FlowError `WEIR_INVALID_OPTIONS` for a step that is neither a Flow nor a name.
   */
  mock<O>(step: Flow<any, O> | string, output: O | ((input: any, step: Step) => O | Promise<O>)): this {
    this.#doubles.mock(step, toDouble(output), 't.mock');
    return this;
  }

  /**
   * Makes the step's next attempts fail with `error` (`times` of them), before its processor (or its
   * mock) runs again: its retry policy decides what follows, as for a real failure.
   * @throws FlowError `WEIR_INVALID_OPTIONS` for a bad step or `times`.
   */
  fail(step: StepRef, error: unknown, options: FailOptions = {}): this {
    const parsed = parseOptions(failSchema, options, 't.fail() options');
    this.#doubles.fail(step, error, parsed.times ?? 1, 't.fail');
    return this;
  }

  /**
   * Stops the context as a kill -9 of its process would, right after the step's end (its output,
   * record and event) is committed: nothing after it is written, no timer of it fires, its runs'
   * handles settle as the store has the runs (`running`, or `waiting` for one that waited for
   * input). `restart()` then recovers the runs. Once.
   * @throws FlowError `WEIR_INVALID_OPTIONS` for a step that is neither a Flow nor a name.
   */
  crashAfter(step: StepRef): this {
    this.#faults.crashAfter(nameOf(step, 't.crashAfter'));
    return this;
  }

  /**
   * Stops the context as a kill -9 would, just before the step's next attempt runs its processor
   * (its start is not committed): the step runs again after `restart()`. Once.
   * @throws FlowError `WEIR_INVALID_OPTIONS` for a step that is neither a Flow nor a name.
   */
  crashBefore(step: StepRef): this {
    this.#doubles.crashBefore(step, 't.crashBefore');
    return this;
  }

  /**
   * Makes the store refuse writes: the next `times` writes of the kind `on` throw (a retryable
   * `FlowError` with code `WEIR_STORE`, as a failing backend gives, unless `error` says otherwise).
   * @throws FlowError `WEIR_INVALID_OPTIONS` for a bad option.
   * @example
   * t.failStore({ on: 'commit', step: 'charge' });   // the commit of charge's output fails once
   */
  failStore(options: FailStoreOptions): this {
    const parsed = parseOptions(failStoreSchema, options, 't.failStore()');
    if (parsed.step !== undefined && parsed.on !== 'commit') {
      throw new FlowError(`t.failStore(): step: only with on: 'commit' (got on: '${parsed.on}')`, { code: ErrorCode.INVALID_OPTIONS });
    }
    this.#faults.fail(parsed.on, parsed.step, parsed.error, parsed.times ?? 1);
    return this;
  }

  /**
   * Starts a fresh context on the same store, as a restarted process would, and recovers the runs
   * the old one left: the old one is stopped as a kill -9 would (unless a crash stopped it
   * already), the clock moves past its leases (`downtime`), the flows it knew are registered with
   * the new one, and `ctx.recover()` takes the runs over. Doubles and faults not used yet stay armed.
   * @returns the handles of the runs the new context goes on with (`t.result(handle)` runs one to its end).
   */
  async restart(options: RestartOptions = {}): Promise<RunHandle[]> {
    const parsed = parseOptions(restartSchema, options, 't.restart()');
    const known = this.#ctx[INSPECT]();
    const downtime = parsed.downtime === undefined ? known.leaseTimeout + 1 : toMs(parsed.downtime, 't.restart(): downtime');
    // By name, the last one run wins: a restarted process has one flow of each name.
    const flows = new Map([...known.flows, ...this.#flows].map((flow) => [flow.name, flow]));
    await this.#crash('by t.restart()');
    await this.#halted;
    if (this.#file !== undefined) {
      // A new process opens the file anew.
      await this.#results.close();
      this.#results = ResultsManager.sqlite(this.#file);
    }
    this.#scope = new ClockScope(this.#clock);
    this.#ctx = this.#context();
    this.#halted = undefined;
    for (const flow of flows.values()) this.#ctx.register(flow);
    await this.advance(downtime);
    const handles = await this.#ctx.recover();
    await this.#driver.settle();
    return handles;
  }

  /** Closes the context (and removes a SQLite test store's directory). Idempotent. */
  async close(): Promise<void> {
    try {
      await this.#halted;
      if (this.#halted === undefined) await this.#ctx.close();
      else await this.#results.close();
    } finally {
      this.#scope.clear();
      this.#clock.clear();
      this.#removeDir();
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /** A new context on the current store and clock scope, its events collected, its store writes passing the faults. */
  #context(): FlowContext {
    const hooks: TestHooks = {
      clock: this.#scope,
      doubles: this.#doubles,
      wrapStore: (store) => {
        this.#store = store;
        return this.#faults.wrap(store, (step) => void this.#crash(`after step "${step}" ended`));
      },
    };
    const ctx = new FlowContext({ ...this.#options, results: this.#results, [TEST_HOOKS]: hooks } as FlowContextOptions);
    ctx.on('event', (event) => this.#events.push(event));
    return ctx;
  }

  /** Stops the context now, as a kill -9 would (see `HALT`); its timers never fire. */
  #crash(where: string): Promise<void> {
    if (this.#halted !== undefined) return this.#halted;
    const reason = new FlowError(`the process was stopped ${where} (weir/testing); the run stays as the store has it, and t.restart() recovers it`, {
      code: ErrorCode.CONTEXT_CLOSED,
    });
    this.#scope.clear();
    this.#halted = this.#ctx[HALT](reason);
    return this.#halted;
  }

  /** Drives the clock until the run ends or nothing is left to do; with `strict`, a run that has not ended is an error. */
  async #drive<O>(handle: RunHandle<O>, strict?: true): Promise<FlowResult<O>>;
  async #drive<O>(handle: RunHandle<O>, strict: false): Promise<FlowResult<O> | undefined>;
  async #drive<O>(handle: RunHandle<O>, strict = true): Promise<FlowResult<O> | undefined> {
    let result: FlowResult<O> | undefined;
    let failure: unknown;
    let settled = false;
    handle.result().then(
      (r) => {
        result = r;
        settled = true;
      },
      (error: unknown) => {
        failure = error;
        settled = true;
      },
    );
    await this.runUntilIdle();
    if (settled) {
      if (failure !== undefined) throw failure as Error;
      return result;
    }
    if (!strict) return undefined;
    const info = await this.#ctx.getRun(handle.runId);
    const why =
      info.status === 'waiting'
        ? `it waits for input (${(info.waitingFor ?? []).map((w) => `"${w.key}" of "${w.step}"`).join(', ')}): answer it with t.answer(runId, key, value), or start it with t.start and use t.expectWaiting`
        : `it is ${info.status}${info.running.length > 0 ? ` with ${info.running.map((s) => `"${s}"`).join(', ')} still running (a step that never ends: move the clock past its timeout with t.advance)` : ''}`;
    throw new FlowError(`t.run: run "${handle.runId}" of "${info.flow}" has not ended: ${why}`, { code: ErrorCode.RUN_STATE });
  }

  #inspect(): ContextInspection {
    return this.#ctx.state === 'open' ? this.#ctx[INSPECT]() : { working: false, running: 0, flows: [], leaseTimeout: 0 };
  }

  #removeDir(): void {
    if (this.#dir !== undefined) rmSync(this.#dir, { recursive: true, force: true });
  }
}

/** A plain object: what run options are; anything else goes to the context to be refused. */
function isObject(value: unknown): value is Readonly<Record<string, unknown>> & RunOptions {
  if (typeof value !== 'object' || value === null) return false;
  const proto = Object.getPrototypeOf(value) as unknown;
  return proto === Object.prototype || proto === null;
}

/** The run id of a run given by id or by handle; anything else is passed on for the context to refuse. */
function runIdOf(run: unknown): string {
  return (isObject(run) ? run.runId : run) as string;
}
