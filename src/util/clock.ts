/**
 * Every timer, immediate and clock read of weir goes through here, so one place decides what fake
 * (or, later, virtual) time drives: backoff, timeouts, leases and input deadlines follow the global
 * timers, read at call time on purpose (`vi.useFakeTimers()` replaces them later); waits on real work
 * (a worker starting, a store flushing, a poll of the store) use the host's own timers
 * (`setRealTimer`, `setRealImmediate`), which no fake clock holds back.
 */
import { performance } from 'node:perf_hooks';
import { clearTimeout as realClearTimeout, setImmediate as realImmediate, setTimeout as realSetTimeout } from 'node:timers';

/** The longest delay one host timer takes (2^31 - 1 ms, about 24.8 days); past it Node fires after 1 ms. */
export const MAX_TIMER_DELAY = 2 ** 31 - 1;

/**
 * The longest delay or timeout weir accepts, in milliseconds: 50 million days, half the span of a
 * `Date` after the epoch, so a deadline `now() + delay` is always a valid `Date`.
 */
export const MAX_DELAY = 4_320_000_000_000_000;

type HostTimer = ReturnType<typeof setTimeout>;
type SetHostTimer = (fn: () => void, ms: number) => HostTimer;

/** The global `setTimeout` as it is now (fake timers replace it after this module loads). */
const globalSet: SetHostTimer = (fn, ms) => globalThis.setTimeout(fn, ms);

/** A timer longer than one host timer takes: a chain of them, each armed when the one before fires. */
class ChainedTimer {
  current: HostTimer;
  readonly #set: SetHostTimer;
  constructor(fn: () => void, ms: number, unref: boolean, set: SetHostTimer) {
    this.#set = set;
    this.current = this.#arm(fn, ms, unref);
  }

  #arm(fn: () => void, left: number, unref: boolean): HostTimer {
    // The time left is counted down, not read off the wall clock: like one host timer, it ignores clock changes.
    const handle = this.#set(() => {
      if (left > MAX_TIMER_DELAY) this.current = this.#arm(fn, left - MAX_TIMER_DELAY, unref);
      else fn();
    }, Math.min(left, MAX_TIMER_DELAY));
    if (unref) handle.unref();
    return handle;
  }
}

/** A cancellable timer handle: cancel it with the clear function (or clock) that goes with what set it. */
export type TimerHandle = object;

/** Options of a clock's `setTimer`. */
export interface TimerOptions {
  /** The timer does not hold the process open. @default false */
  readonly unref?: boolean;
  /**
   * Housekeeping that re-arms itself for as long as the context lives (lease renewal, the recovery
   * sweep): a virtual clock does not wait for it when it runs until idle. @default false
   */
  readonly background?: boolean;
}

/**
 * The time a context runs on: what its runs read as now, and the timers of backoffs, timeouts,
 * heartbeats, leases, recovery and waits for input. `systemClock` is the host's (fake timers
 * drive it in tests); `weir/testing` gives a context a virtual one.
 */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Calls `fn` after `ms` milliseconds. */
  setTimer(fn: () => void, ms: number, options?: TimerOptions): TimerHandle;
  /** Cancels a timer this clock set; a no-op for `undefined`. */
  clearTimer(handle: TimerHandle | undefined): void;
}

/**
 * Calls `fn` after `ms` milliseconds, however long (a delay past one host timer's limit is a chain
 * of them); `unref` keeps the timer from holding the process open.
 */
export function setTimer(fn: () => void, ms: number, options: TimerOptions = {}): TimerHandle {
  if (ms > MAX_TIMER_DELAY) return new ChainedTimer(fn, ms, options.unref === true, globalSet);
  const handle = globalThis.setTimeout(fn, ms);
  if (options.unref === true) handle.unref();
  return handle;
}

/** Cancels a timer from `setTimer`, whichever link of its chain is armed; a no-op for `undefined`. */
export function clearTimer(handle: TimerHandle | undefined): void {
  if (handle !== undefined) globalThis.clearTimeout((handle instanceof ChainedTimer ? handle.current : handle) as HostTimer);
}

/**
 * Like `setTimer`, on the host's own timers even under fake timers: for waits on real work (a
 * worker starting, a store flushing) that a test's fake clock must neither hold back nor hurry.
 * Cancel it with `clearRealTimer`.
 */
export function setRealTimer(fn: () => void, ms: number, options: { readonly unref?: boolean } = {}): TimerHandle {
  if (ms > MAX_TIMER_DELAY) return new ChainedTimer(fn, ms, options.unref === true, realSetTimeout);
  const handle = realSetTimeout(fn, ms);
  if (options.unref === true) handle.unref();
  return handle;
}

/** Cancels a timer from `setRealTimer`; a no-op for `undefined`. */
export function clearRealTimer(handle: TimerHandle | undefined): void {
  if (handle !== undefined) realClearTimeout((handle instanceof ChainedTimer ? handle.current : handle) as HostTimer);
}

/** The host's monotonic clock in ms (`performance.now()` as Node made it, which no fake clock replaces), for spans of real work. */
export const realNow: () => number = performance.now.bind(performance);

/** Calls `fn` on the event loop's next turn, on the host's own timers even under fake timers. */
export function setRealImmediate(fn: () => void): void {
  realImmediate(fn);
}

/** Milliseconds since the epoch. */
export function now(): number {
  return Date.now();
}

/** The host's clock: global timers (which fake timers replace in tests) and `Date.now()`. */
export const systemClock: Clock = Object.freeze({ now, setTimer, clearTimer });
