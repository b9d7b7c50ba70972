/** A run's ordered events, readable from any `seq` by any number of followers. */
import type { WeirEvent } from '../model/events.js';

/**
 * Appends events and lets followers replay then follow them; each follower only keeps a position.
 * A restored run's log starts after `base`, the seq of the last event stored before it.
 */
export class EventLog {
  readonly base: number;
  readonly #events: WeirEvent[] = [];
  #ended = false;
  #released = false;
  #wake: (() => void)[] = [];

  constructor(base = 0) {
    this.base = base;
  }

  /** How many followers wait for the next event. */
  get waiting(): number {
    return this.#wake.length;
  }

  /** How many events the log holds. */
  get length(): number {
    return this.#events.length;
  }

  push(event: WeirEvent): void {
    this.#events.push(event);
    if (this.#wake.length > 0) this.#notify();
  }

  /** Ends the log and drops its events (the run parked: they are in the store); followers stop where they are. */
  release(): void {
    this.#events.length = 0;
    this.#released = true;
    this.end();
  }

  /** Marks the log complete: followers finish once they have read everything. */
  end(): void {
    this.#ended = true;
    this.#notify();
  }

  /** Every event with `seq > after`, then each new one as it comes, until the run ends or `signal` aborts. */
  async *follow(after = 0, signal?: AbortSignal): AsyncGenerator<WeirEvent, void, undefined> {
    let next = Math.max(0, after - this.base);
    while (signal?.aborted !== true) {
      if (this.#released) return;
      while (next < this.#events.length) {
        yield this.#events[next++]!;
        if (isAborted(signal)) return;
      }
      if (this.#ended) return;
      await new Promise<void>((resolve) => {
        const wake = (): void => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        };
        // A follower that goes away leaves nothing behind: not its wake-up, not its listener.
        const onAbort = (): void => {
          const at = this.#wake.indexOf(wake);
          if (at !== -1) this.#wake.splice(at, 1);
          resolve();
        };
        signal?.addEventListener('abort', onAbort, { once: true });
        this.#wake.push(wake);
      });
    }
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = [];
    for (const fn of wake) fn();
  }
}

/** Whether `signal` is given and aborted (read through a call, so TypeScript does not narrow it away across an await). */
export function isAborted(signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true;
}
