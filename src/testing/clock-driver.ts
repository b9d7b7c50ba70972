/**
 * Driving a virtual clock against a context: letting what runs in real time (store work, commits,
 * workers) catch up before time moves, waiting for steps at work, and moving from timer to timer.
 */
import type { ContextInspection } from '../context/test-hooks.js';
import { ErrorCode, FlowError } from '../errors/errors.js';
import { setRealImmediate, setRealTimer } from '../util/clock.js';
import type { VirtualClock } from './virtual-clock.js';

/** The most timers of the runs (housekeeping left out) `runUntilIdle` fires before it decides the flow never settles. */
const MAX_TIMERS = 10_000;
/** How long, in real ms, `runUntilIdle` waits for steps that give no news when nothing on the clock could end them. */
const MAX_STEP_WAIT_MS = 60_000;

/** What the driver sees of the context it drives (whichever one is current, across restarts). */
export interface DrivenContext {
  /** What is under way in the context (see `ContextInspection`). */
  inspect(): ContextInspection;
  /** Commits what its runs recorded now. */
  flush(): Promise<void>;
  /** How many events it has published so far. */
  events(): number;
}

/** Moves a virtual clock only when what the context does in real time has settled. */
export class ClockDriver {
  readonly #clock: VirtualClock;
  /** Real ms the driver waits for steps at work that give no news. */
  readonly #stepWait: number;
  readonly #context: DrivenContext;

  constructor(clock: VirtualClock, stepWait: number, context: DrivenContext) {
    this.#clock = clock;
    this.#stepWait = stepWait;
    this.#context = context;
  }

  /** Moves the clock to `to`, firing each timer due on the way in order, and settling before the next. */
  async advanceTo(to: number): Promise<void> {
    await this.settle();
    while (this.#clock.step(to) !== undefined) await this.settle();
    await this.settle();
  }

  /**
   * Moves the clock from timer to timer until none is left but housekeeping; see `t.runUntilIdle()`.
   * @throws FlowError `WEIR_RUN_STATE` when over 10,000 timers of the runs fire (a flow that never settles).
   */
  async runUntilIdle(): Promise<void> {
    for (let fired = 0; ; ) {
      await this.settle();
      if (this.#context.inspect().running > 0) {
        await this.#awaitSteps(this.#stepWait);
        // Nothing on the clock could end the steps still running: only waiting can.
        if (this.#clock.next(true) === undefined && this.#context.inspect().running > 0 && !(await this.#awaitSteps(MAX_STEP_WAIT_MS))) return;
      }
      const next = this.#clock.next(true);
      if (next === undefined) return;
      for (let kind = this.#clock.step(next); kind !== undefined; kind = this.#clock.step(next)) {
        await this.settle();
        if (kind === 'foreground' && ++fired > MAX_TIMERS) {
          throw new FlowError(`t.runUntilIdle(): over ${MAX_TIMERS} timers fired and the runs still have more; a flow that never settles? Move the clock with t.advance()`, {
            code: ErrorCode.RUN_STATE,
          });
        }
      }
    }
  }

  /**
   * Lets what runs in real time catch up (the store opening, commits, promise chains): until a few
   * event-loop turns pass with no new event or timer and nothing under way that ends by itself (or
   * that has shown no activity for `stepWait`: a worker slot held by a step that waits on time).
   * Running steps are not waited for (one may wait on a timeout); see `#awaitSteps`.
   */
  async settle(): Promise<void> {
    let quiet = 0;
    let last = -1;
    let since = performance.now();
    for (let turns = 0; quiet < 3; turns++) {
      const { working } = this.#context.inspect();
      // What the runs recorded is committed now, not when the journal's lazy flush comes.
      if (working) await this.#context.flush();
      // Store work that takes real time (opening a file, a worker's reply): wait for it without spinning.
      await new Promise<void>((resolve) => (working && turns > 20 ? setRealTimer(resolve, 1) : setRealImmediate(resolve)));
      const activity = this.#activity();
      if (activity !== last) {
        last = activity;
        since = performance.now();
        quiet = 0;
      } else {
        quiet = !working || performance.now() - since > this.#stepWait ? quiet + 1 : 0;
      }
    }
  }

  /**
   * Waits while steps run, as long as they give news, and up to `limit` real ms without news.
   * @returns whether no step runs any more.
   */
  async #awaitSteps(limit: number): Promise<boolean> {
    let last = this.#activity();
    let since = performance.now();
    while (this.#context.inspect().running > 0) {
      await new Promise<void>((resolve) => setRealTimer(resolve, 2));
      const activity = this.#activity();
      if (activity !== last) {
        last = activity;
        since = performance.now();
        await this.settle();
      } else if (performance.now() - since > limit) {
        return false;
      }
    }
    return true;
  }

  /** A measure of activity: events published and timers set so far. */
  #activity(): number {
    return this.#context.events() + this.#clock.timersSet;
  }
}
