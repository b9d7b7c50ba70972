/**
 * `createTestContext`: a `FlowContext` on a virtual clock, with step doubles, for unit tests of
 * flows that run in milliseconds whatever their backoffs, timeouts and deadlines. It depends on no
 * test runner: a failed expectation throws an `Error`.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
// Built, `weir/testing` shares its chunks with `weir` (tsup splitting), so a test context's
// FlowContext and errors are the very classes users import from `weir`.
import { FlowContext } from '../context/flow-context.js';
import type { FlowContextOptions } from '../context/options.js';
import { ErrorCode, FlowError } from '../errors/errors.js';
import { Flow } from '../model/flow.js';
import type { Step } from '../model/processor.js';
import type { FlowResult } from '../model/result.js';
import type { RunOptions } from '../model/run-options.js';
import type { WaitInfo } from '../model/waits.js';
import type { WeirEvent } from '../model/events.js';
import { ResultsManager } from '../results/results-manager.js';
import type { RunHandle } from '../run/handle.js';
import { INSPECT } from '../context/inspect.js';
import type { AnyFlow } from '../model/flow.js';
import { DOUBLES, type ProcessDouble, type StepDoubles } from '../run/environment.js';
import { CLOCK, setRealImmediate, setRealTimer } from '../util/clock.js';
import { describeValue, parseOptions, type OptionsOf } from '../util/parse.js';
import { toMs, type Duration } from './durations.js';
import { VirtualClock } from './virtual-clock.js';

/** Where the virtual clock starts by default: a fixed time, so times in results and events are the same on every run. */
const START = Date.UTC(2030, 0, 1);
/** The most timers `runUntilIdle` fires before it decides the flow never settles. */
const MAX_TIMERS = 10_000;
/** How long `runUntilIdle` lets running steps go without news before it stops waiting for them, in real ms. */
const STEP_WAIT_MS = 1000;

const testShape = {
  /** Where runs are stored: a memory store, or a SQLite file in a new temporary directory (removed by `close()`). @default 'memory' */
  store: z.enum(['memory', 'sqlite']).optional(),
  /** The virtual time the clock starts at, in ms since the epoch or as a Date. @default 2030-01-01T00:00:00Z */
  startTime: z.union([z.number().nonnegative(), z.date()]).optional(),
};

/** Options of `createTestContext`: those of `new FlowContext()` (but `results`), and the test's own. */
export type TestContextOptions = Omit<FlowContextOptions, 'results'> & OptionsOf<typeof testShape>;

/** A flow, or the name of a step. */
export type StepRef = AnyFlow | string;

/** What `t.fail` takes: how many of the step's next attempts fail. */
export interface FailOptions {
  /** @default 1 */
  readonly times?: number;
}

/** The doubles of one step: a stand-in for its processor, and failures to throw first. */
interface Doubles {
  mock: ProcessDouble | undefined;
  readonly failures: { error: unknown; left: number }[];
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
  const { store, startTime, ...rest } = options;
  const parsed = parseOptions(z.strictObject(testShape), { store, startTime }, 'createTestContext()');
  return new TestContext(rest, parsed.store ?? 'memory', parsed.startTime === undefined ? START : new Date(parsed.startTime).getTime());
}

/** A `FlowContext` on a virtual clock, with step doubles and a few expectations. */
export class TestContext {
  /** The context under test: use it as in production (`register`, `start`, `getRun`, `on`...). */
  readonly ctx: FlowContext;
  /** The virtual clock the context runs on. */
  readonly clock: VirtualClock;
  readonly #doubles = new Map<string, Doubles>();
  readonly #dir: string | undefined;
  /** Every event of every run, in order. */
  readonly #events: WeirEvent[] = [];

  /** @internal use `createTestContext`. */
  constructor(options: Omit<FlowContextOptions, 'results'>, store: 'memory' | 'sqlite', start: number) {
    this.clock = new VirtualClock(start);
    this.#dir = store === 'sqlite' ? mkdtempSync(join(tmpdir(), 'weir-test-')) : undefined;
    const results = this.#dir === undefined ? ResultsManager.memory() : ResultsManager.sqlite(join(this.#dir, 'runs.db'));
    const doubles: StepDoubles = { take: (name, attempt) => this.#take(name, attempt) };
    try {
      this.ctx = new FlowContext({ ...options, results, [CLOCK]: this.clock, [DOUBLES]: doubles } as FlowContextOptions);
    } catch (error) {
      this.#removeDir();
      throw error;
    }
    this.ctx.on('event', (event) => this.#events.push(event));
  }

  /** The virtual time now, in ms since the epoch. */
  now(): number {
    return this.clock.now();
  }

  /** Every event of every run so far, or of one run, in order. */
  events(runId?: string): readonly WeirEvent[] {
    return runId === undefined ? [...this.#events] : this.#events.filter((e) => e.runId === runId);
  }

  /**
   * Moves the virtual clock forward by `duration`, firing each timer due on the way in order, and
   * letting what it sets going settle before the next.
   * @throws ValidationError `WEIR_INVALID_OPTIONS` for a bad duration.
   */
  async advance(duration: Duration): Promise<void> {
    const to = this.clock.now() + toMs(duration, 't.advance(duration)');
    await this.#settle();
    while (this.clock.step(to)) await this.#settle();
    await this.#settle();
  }

  /**
   * Moves the virtual clock from timer to timer until none is left but the context's housekeeping
   * (lease renewal, recovery): every backoff, timeout and deadline of the runs has fired. Time does
   * not jump while a step is at work (in a worker, say); when running steps give no news for a
   * second of real time, it stops there: a step that only waits on its timeout stays running (move
   * the clock past it with `advance`).
   * @throws FlowError `WEIR_RUN_STATE` when over 10,000 timers fire (a flow that never settles).
   */
  async runUntilIdle(): Promise<void> {
    for (let fired = 0; ; ) {
      await this.#settle();
      // Time does not jump while a step is at work; one that only waits (on its timeout) is left be.
      if (await this.#awaitSteps()) return;
      const next = this.clock.next(true);
      if (next === undefined) return;
      while (this.clock.step(next)) {
        await this.#settle();
        if (++fired > MAX_TIMERS) {
          throw new FlowError(`t.runUntilIdle(): over ${MAX_TIMERS} timers fired and the runs still have more; a flow that never settles? Move the clock with t.advance()`, {
            code: ErrorCode.RUN_STATE,
          });
        }
      }
    }
  }

  /** Starts a run as `ctx.start` does; the clock does not move until `advance` or `runUntilIdle`. */
  start<I, O>(flow: Flow<I, O>, input: I, options?: RunOptions): RunHandle<O> {
    return this.ctx.start(flow, input, options);
  }

  /**
   * Runs a flow to its end on the virtual clock: starts it and runs until idle.
   * @throws FlowError `WEIR_RUN_STATE` when the run has not ended by then (it waits for input, or a
   * step never ends), saying which; what `ctx.start` throws.
   */
  async run<I, O>(flow: Flow<I, O>, input: I, options?: RunOptions): Promise<FlowResult<O>> {
    const handle = this.ctx.start(flow, input, options);
    return this.#drive(handle);
  }

  /**
   * Answers a wait (as `ctx.submitInput`), then runs until idle; resolves to the run's result if it
   * ended, else `undefined` (it waits again, say).
   */
  async answer(runId: string, key: string, value: unknown): Promise<FlowResult | undefined> {
    await this.ctx.submitInput(runId, key, value);
    const handle = await this.ctx.handle(runId);
    return this.#drive(handle, false);
  }

  /**
   * Checks that a run waits for input on `key` (on anything, without a key), and returns what it waits on.
   * @throws Error saying what the run does instead.
   */
  async expectWaiting(runId: string, key?: string): Promise<WaitInfo> {
    await this.#settle();
    const info = await this.ctx.getRun(runId);
    const waits = info.waitingFor ?? [];
    const wait = key === undefined ? waits[0] : waits.find((w) => w.key === key);
    if (info.status !== 'waiting' || wait === undefined) {
      const what = info.status === 'waiting' ? `it waits on ${waits.map((w) => `"${w.key}"`).join(', ')}` : `it is ${info.status}`;
      throw new Error(`expected run "${runId}" to wait for input${key === undefined ? '' : ` "${key}"`}, but ${what}`);
    }
    return wait;
  }

  /**
   * Replaces a step's processor in this context only: `output` is what every attempt returns, or a
   * function of the validated input and the step. The output still passes the processor's output
   * schema, so a wrong double fails the step (and the test) as a wrong processor would.
   * @throws ValidationError `WEIR_INVALID_OPTIONS` for a step that is neither a Flow nor a name.
   */
  mock<O>(step: Flow<any, O> | string, output: O | ((input: any, step: Step) => O | Promise<O>)): this {
    const double: ProcessDouble = typeof output === 'function' ? (output as ProcessDouble) : () => output;
    this.#entry(step, 't.mock').mock = double;
    return this;
  }

  /**
   * Makes the step's next attempts fail with `error` (`times` of them), before its processor (or its
   * mock) runs again: its retry policy decides what follows, as for a real failure.
   * @throws ValidationError `WEIR_INVALID_OPTIONS` for a bad step or `times`.
   */
  fail(step: StepRef, error: unknown, options: FailOptions = {}): this {
    const times = options.times ?? 1;
    if (!Number.isInteger(times) || times < 1) {
      throw new FlowError(`t.fail: times: expected a whole number >= 1, got ${describeValue(times)}`, { code: ErrorCode.INVALID_OPTIONS });
    }
    this.#entry(step, 't.fail').failures.push({ error, left: times });
    return this;
  }

  /** Closes the context (and removes a SQLite test store's directory). Idempotent. */
  async close(): Promise<void> {
    try {
      await this.ctx.close();
    } finally {
      this.clock.clear();
      this.#removeDir();
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #entry(step: unknown, where: string): Doubles {
    const name = step instanceof Flow ? step.name : step;
    if (typeof name !== 'string' || name.length === 0) {
      throw new FlowError(`${where}: expected a Flow or a step name, got ${describeValue(step)}`, { code: ErrorCode.INVALID_OPTIONS });
    }
    let entry = this.#doubles.get(name);
    if (entry === undefined) this.#doubles.set(name, (entry = { mock: undefined, failures: [] }));
    return entry;
  }

  #take(name: string, _attempt: number): ProcessDouble | undefined {
    const entry = this.#doubles.get(name);
    if (entry === undefined) return undefined;
    const failure = entry.failures[0];
    if (failure !== undefined) {
      if (--failure.left === 0) entry.failures.shift();
      return () => {
        throw failure.error;
      };
    }
    return entry.mock;
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
    const info = await this.ctx.getRun(handle.runId);
    const why =
      info.status === 'waiting'
        ? `it waits for input (${(info.waitingFor ?? []).map((w) => `"${w.key}" of "${w.step}"`).join(', ')}): answer it with t.answer(runId, key, value), or start it with t.start and use t.expectWaiting`
        : `it is ${info.status}${info.running.length > 0 ? ` with ${info.running.map((s) => `"${s}"`).join(', ')} still running (a step that never ends: move the clock past its timeout with t.advance)` : ''}`;
    throw new FlowError(`t.run: run "${handle.runId}" of "${info.flow}" has not ended: ${why}`, { code: ErrorCode.RUN_STATE });
  }

  /**
   * Lets what runs in real time catch up (the store opening, commits, promise chains): until nothing
   * that ends by itself is under way and a few event-loop turns pass with no new event or timer.
   * Running steps are not waited for (one may wait on a timeout); see `#awaitSteps`.
   */
  async #settle(): Promise<void> {
    let quiet = 0;
    let last = -1;
    for (let turns = 0; quiet < 3; turns++) {
      const { working } = this.#inspect();
      // Store work that takes real time (opening a file, a worker's reply): wait for it without spinning.
      await new Promise<void>((resolve) => (working && turns > 20 ? setRealTimer(resolve, 1) : setRealImmediate(resolve)));
      const activity = this.#activity();
      quiet = activity === last && !working ? quiet + 1 : 0;
      last = activity;
    }
  }

  /**
   * Waits while steps run and something still happens, up to `STEP_WAIT_MS` of real time without
   * news: a step at work (in a worker, on I/O) is let finish before time jumps past its timeout.
   * @returns whether steps still run (stuck, or waiting on the clock).
   */
  async #awaitSteps(): Promise<boolean> {
    let last = this.#activity();
    let since = performance.now();
    while (this.#inspect().running > 0) {
      await new Promise<void>((resolve) => setRealTimer(resolve, 2));
      const activity = this.#activity();
      if (activity !== last) {
        last = activity;
        since = performance.now();
        await this.#settle();
      } else if (performance.now() - since > STEP_WAIT_MS) {
        return true;
      }
    }
    return false;
  }

  #inspect(): { working: boolean; running: number } {
    return this.ctx.state === 'open' ? this.ctx[INSPECT]() : { working: false, running: 0 };
  }

  #activity(): number {
    return this.#events.length + this.clock.timersSet;
  }

  #removeDir(): void {
    if (this.#dir !== undefined) rmSync(this.#dir, { recursive: true, force: true });
  }
}
