/**
 * Which thread runs which task, in shared memory: a worker writes `[taskId, threadId]` at slot
 * `taskId % SLOTS` when a task starts, so the main thread can terminate that thread on abort without
 * giving Piscina a per-task AbortSignal (which costs about a third of a dispatch).
 */

/** Slots in the table; two live tasks collide only if their ids differ by a multiple of this. */
export const RUNNING_SLOTS = 4096;

/** A new, empty table, shared with every worker of a pool through `workerData`. */
export function createRunningTable(): Int32Array {
  return new Int32Array(new SharedArrayBuffer(RUNNING_SLOTS * 2 * Int32Array.BYTES_PER_ELEMENT));
}

/**
 * Worker side: records that this thread runs task `id`, unless the main thread marked it aborted
 * first (`markAborted`): then false, and the task must not start.
 */
export function markRunning(table: Int32Array, id: number, threadId: number): boolean {
  const at = (id % RUNNING_SLOTS) * 2;
  Atomics.store(table, at + 1, threadId);
  for (let seen = Atomics.load(table, at); ; ) {
    if (seen === -id) return false;
    const was = Atomics.compareExchange(table, at, seen, id);
    if (was === seen) return true;
    seen = was;
  }
}

/**
 * Main side: marks task `id` aborted if it has not started, so that it never does (its thread answers
 * it as cancelled instead); true if so. A slot another live task holds (`live` says which ids are:
 * one that started, or one marked aborted that has not been answered) is left alone, and so the task
 * may then start: it hears its abort as any started task does.
 */
export function markAborted(table: Int32Array, id: number, live: (id: number) => boolean): boolean {
  const at = (id % RUNNING_SLOTS) * 2;
  for (let seen = Atomics.load(table, at); ; ) {
    if (seen === id || seen === -id || (seen !== 0 && live(Math.abs(seen)))) return false;
    const was = Atomics.compareExchange(table, at, seen, -id);
    if (was === seen) return true;
    seen = was;
  }
}

/** Main side: the thread running task `id`, or `undefined` if it has not started (or was overwritten). */
export function threadRunning(table: Int32Array, id: number): number | undefined {
  const at = (id % RUNNING_SLOTS) * 2;
  return Atomics.load(table, at) === id ? Atomics.load(table, at + 1) : undefined;
}
