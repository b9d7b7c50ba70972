/**
 * Every timer weir sets goes through here, so fake timers drive backoff, timeouts and leases in
 * tests. Globals are read at call time on purpose: `vi.useFakeTimers()` replaces them later.
 */

/** A cancellable timer handle. */
export type TimerHandle = ReturnType<typeof setTimeout>;

/** Calls `fn` after `ms` milliseconds; `unref` keeps the timer from holding the process open. */
export function setTimer(fn: () => void, ms: number, options: { readonly unref?: boolean } = {}): TimerHandle {
  const handle = globalThis.setTimeout(fn, ms);
  if (options.unref === true) handle.unref();
  return handle;
}

/** Cancels a timer from `setTimer`; a no-op for `undefined`. */
export function clearTimer(handle: TimerHandle | undefined): void {
  if (handle !== undefined) globalThis.clearTimeout(handle);
}

/** Milliseconds since the epoch. */
export function now(): number {
  return Date.now();
}
