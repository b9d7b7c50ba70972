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

/** Worker side: records that this thread runs task `id`. */
export function markRunning(table: Int32Array, id: number, threadId: number): void {
  const at = (id % RUNNING_SLOTS) * 2;
  Atomics.store(table, at + 1, threadId);
  Atomics.store(table, at, id);
}

/** Main side: the thread running task `id`, or `undefined` if it has not started (or was overwritten). */
export function threadRunning(table: Int32Array, id: number): number | undefined {
  const at = (id % RUNNING_SLOTS) * 2;
  return Atomics.load(table, at) === id ? Atomics.load(table, at + 1) : undefined;
}
