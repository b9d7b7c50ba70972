/**
 * A run's timers by step index, one kind to a set: backoffs (the scheduler), heartbeat deadlines
 * (the attempts), input deadlines (the waits). Its map is made with the first timer: most runs
 * set none, and a run in flight should hold no more than it uses.
 */
import type { Clock, TimerHandle } from '../util/clock.js';

/** Timers by step index on one clock, at most one a step. */
export class StepTimers {
  readonly #clock: Clock;
  #timers: Map<number, TimerHandle> | undefined;

  constructor(clock: Clock) {
    this.#clock = clock;
  }

  /** How many steps have a timer armed. */
  get size(): number {
    return this.#timers?.size ?? 0;
  }

  /** Whether step `index` has a timer armed. */
  has(index: number): boolean {
    return this.#timers?.has(index) === true;
  }

  /** Arms step `index`'s timer (replacing the one it had): `fire` runs after `ms`, once the timer is forgotten. */
  set(index: number, ms: number, fire: () => void): void {
    const timers = (this.#timers ??= new Map());
    this.#clock.clearTimer(timers.get(index));
    timers.set(
      index,
      this.#clock.setTimer(() => {
        timers.delete(index);
        fire();
      }, ms),
    );
  }

  /** Disarms step `index`'s timer, if it has one. */
  delete(index: number): void {
    const timer = this.#timers?.get(index);
    if (timer === undefined) return;
    this.#clock.clearTimer(timer);
    this.#timers!.delete(index);
  }

  /** Disarms every timer. */
  clear(): void {
    if (this.#timers === undefined) return;
    for (const timer of this.#timers.values()) this.#clock.clearTimer(timer);
    this.#timers.clear();
  }
}
