/**
 * Keeps a Node event loop turning (one `setImmediate` after another) for a few microseconds instead
 * of letting it sleep in the kernel: a message that arrives meanwhile is read by the next turn's poll
 * without a wake-up. Waking a sleeping process is the largest part of a child process's round trip
 * here (the writer's `write` has to wake the reader's core): a chain of short process steps runs about
 * a third faster when both ends keep turning while the other works.
 *
 * Used by a child process after it answers (it checks for its next task) and by the main thread while
 * a short task is out (it checks for the answer). Each turn still polls for I/O and runs timers, so
 * nothing waits on the spin; it costs the CPU time of the turns, and ends at its deadline or when
 * `stop()` says what it waited for has come.
 */
// The host's clock, not the global one a fake clock may replace: a spin must end in real time.
import { realNow, setRealImmediate } from '../util/clock.js';

/** Turns spun in this thread so far (`loopSpinTurns`). */
let turns = 0;

/** How many turns of the event loop spins have made in this thread (or process) so far. */
export function loopSpinTurns(): number {
  return turns;
}

/** A spin of the event loop with a deadline that `extend` pushes back; at most one chain of immediates at a time. */
export class LoopSpin {
  #until = 0;
  #turning = false;
  readonly #turn = (): void => {
    turns++;
    if (realNow() < this.#until) setRealImmediate(this.#turn);
    else this.#turning = false;
  };

  /** Keeps the loop turning for at least `micros` microseconds from now. */
  extend(micros: number): void {
    const until = realNow() + micros / 1000;
    if (until > this.#until) this.#until = until;
    if (this.#turning) return;
    this.#turning = true;
    setRealImmediate(this.#turn);
  }

  /** Lets the loop sleep again after the current turn. */
  stop(): void {
    this.#until = 0;
  }
}
