/** A queue that handles items in arrival order, one at a time, even when handling one pushes more. */

/**
 * Runs `handle` for every pushed item in FIFO order. A push made while an item is being handled
 * waits its turn instead of recursing, so deep cascades stay flat and order is kept.
 */
export class DrainQueue<T> {
  readonly #items: T[] = [];
  readonly #handle: (item: T) => void;
  #draining = false;

  constructor(handle: (item: T) => void) {
    this.#handle = handle;
  }

  push(item: T): void {
    if (this.#draining) {
      this.#items.push(item);
      return;
    }
    this.#draining = true;
    try {
      // The first item is handled without joining the array: a push with nothing queued allocates nothing.
      this.#handle(item);
      for (let i = 0; i < this.#items.length; i++) this.#handle(this.#items[i]!);
    } finally {
      this.#items.length = 0;
      this.#draining = false;
    }
  }
}
