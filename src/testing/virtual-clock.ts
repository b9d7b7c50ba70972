/**
 * A clock a test moves by hand: timers fire in order of their time (then of when they were set) as
 * `step` passes them, and `now()` is the virtual time. Nothing runs on its own.
 */
import type { Clock, TimerHandle, TimerOptions } from '../util/clock.js';

/** One virtual timer. */
interface VirtualTimer {
  readonly at: number;
  readonly order: number;
  readonly fn: () => void;
  readonly background: boolean;
  cancelled: boolean;
}

/** A `Clock` whose time moves only when a test says so. */
export class VirtualClock implements Clock {
  #now: number;
  #order = 0;
  /** Pending timers, kept sorted by time then order (few at a time: a sorted array does). */
  readonly #timers: VirtualTimer[] = [];
  /** How many timers were set so far: a test kit's measure of activity. */
  #set = 0;

  constructor(start: number) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  /** How many timers were ever set on this clock. */
  get timersSet(): number {
    return this.#set;
  }

  setTimer(fn: () => void, ms: number, options: TimerOptions = {}): TimerHandle {
    const timer: VirtualTimer = { at: this.#now + Math.max(0, ms), order: ++this.#order, fn, background: options.background === true, cancelled: false };
    let i = this.#timers.length;
    while (i > 0 && this.#timers[i - 1]!.at > timer.at) i--;
    this.#timers.splice(i, 0, timer);
    this.#set++;
    return timer;
  }

  clearTimer(handle: TimerHandle | undefined): void {
    if (handle === undefined) return;
    const timer = handle as VirtualTimer;
    if (timer.cancelled) return;
    timer.cancelled = true;
    const at = this.#timers.indexOf(timer);
    if (at !== -1) this.#timers.splice(at, 1);
  }

  /** When the next timer is due; `undefined` when none is (with `foreground`, background housekeeping left out). */
  next(foreground = false): number | undefined {
    for (const timer of this.#timers) if (!foreground || !timer.background) return timer.at;
    return undefined;
  }

  /**
   * Fires one timer: the earliest foreground timer due at or before `to`, moving the time to it,
   * unless a background timer is due by then, which fires first, at that time. So housekeeping that
   * re-arms itself (a lease renewal every few seconds) fires once per jump, however long the jump.
   * When nothing is due, moves the time to `to`. Returns what fired (the caller settles, then calls again).
   */
  step(to: number): 'foreground' | 'background' | undefined {
    const foreground = this.#timers.find((t) => !t.background && t.at <= to);
    const at = foreground?.at ?? to;
    const timer = this.#timers.find((t) => t.background && t.at <= at) ?? foreground;
    if (timer === undefined) {
      if (to > this.#now) this.#now = to;
      return undefined;
    }
    this.#timers.splice(this.#timers.indexOf(timer), 1);
    if (at > this.#now) this.#now = at;
    timer.fn();
    return timer.background ? 'background' : 'foreground';
  }

  /** Drops every timer: the context that set them is gone. */
  clear(): void {
    for (const timer of this.#timers) timer.cancelled = true;
    this.#timers.length = 0;
  }
}

/**
 * One context's view of a virtual clock: the same time, and timers that can all be dropped at once
 * (`clear`), as a killed process's are; a cleared scope's new timers never fire.
 */
export class ClockScope implements Clock {
  readonly #clock: VirtualClock;
  readonly #timers = new Set<TimerHandle>();
  #cleared = false;

  constructor(clock: VirtualClock) {
    this.#clock = clock;
  }

  now(): number {
    return this.#clock.now();
  }

  setTimer(fn: () => void, ms: number, options?: TimerOptions): TimerHandle {
    if (this.#cleared) return {};
    const handle = this.#clock.setTimer(
      () => {
        this.#timers.delete(handle);
        fn();
      },
      ms,
      options,
    );
    this.#timers.add(handle);
    return handle;
  }

  clearTimer(handle: TimerHandle | undefined): void {
    if (handle === undefined || !this.#timers.delete(handle)) return;
    this.#clock.clearTimer(handle);
  }

  /** Drops every timer of this scope, now and later. */
  clear(): void {
    this.#cleared = true;
    for (const handle of this.#timers) this.#clock.clearTimer(handle);
    this.#timers.clear();
  }
}
