/**
 * A thread that has just answered a task checks for the next one for a few microseconds before it
 * sleeps. Piscina parks an idle thread in `Atomics.wait` on its request counter, and waking a parked
 * thread costs both sides a futex call and the scheduler's latency: on a chain of short thread
 * steps, where the main thread books each step for a few microseconds between two tasks, that
 * wake-up is the largest part of a dispatch. A spin that sees the counter move returns at once,
 * and the main thread's `Atomics.notify` finds nobody to wake.
 *
 * The spin is worth it only while a core is free for it: the main thread opens a gate (shared
 * memory) while few tasks run and none waits, and closes it when the pool is saturated, where a
 * spinning thread would only take the main thread's core while it books the answers.
 *
 * Only Piscina's own wait is wrapped: the first wait on each array is checked against the stack
 * (Piscina's `atomicsWaitLoop`), and any other caller's `Atomics.wait` behaves as before.
 */

/** How many checks of the counter go between two readings of the clock (a reading costs ~50 ns, a check ~1). */
const CHECKS_PER_READING = 64;

/** Piscina's loop that parks an idle thread; its frame on the stack marks Piscina's wait. */
const PISCINA_WAIT_LOOP = 'atomicsWaitLoop';

type Wait = typeof Atomics.wait;
/** `Atomics.wait` on an `Int32Array`, the only kind Piscina waits on (a `BigInt64Array` passes through untouched). */
type WaitInt32 = (typedArray: Int32Array, index: number, value: number, timeout?: number) => ReturnType<Wait>;

/** The request counter Piscina waits on in this thread, once recognised. */
let piscinaCounter: Int32Array | undefined;
/** Arrays seen waited on by others than Piscina (checked once each). */
const others = new WeakSet<object>();
/** How many of Piscina's waits ended by the spin, not by sleeping (`spinStats`). */
let spun = 0;
let installed = false;

/**
 * Worker side: makes this thread spin up to `micros` microseconds on Piscina's request counter
 * before it parks in `Atomics.wait`, while `gate[0]` is 1 (`SpinGate`). Called once per thread, by
 * the thread entry, before Piscina's first wait; `0` installs nothing.
 */
export function installSpinWait(micros: number, gate: Int32Array): void {
  if (installed || !(micros > 0)) return;
  installed = true;
  const wait = Atomics.wait.bind(Atomics) as WaitInt32;
  const spinMs = micros / 1000;
  const spinThenWait: WaitInt32 = (counter, index, value, timeout) => {
    if (timeout !== undefined || !isPiscinaCounter(counter)) return wait(counter, index, value, timeout);
    if (Atomics.load(counter, index) !== value) return 'not-equal';
    if (Atomics.load(gate, 0) === 1) {
      const end = performance.now() + spinMs;
      for (let checks = 1; ; checks++) {
        if (Atomics.load(counter, index) !== value) {
          spun++;
          // What the wait would have said: woken by the notify that follows Piscina's increment.
          return 'ok';
        }
        if (checks % CHECKS_PER_READING === 0 && (performance.now() >= end || Atomics.load(gate, 0) !== 1)) break;
      }
    }
    return wait(counter, index, value);
  };
  Atomics.wait = spinThenWait as Wait;
}

/** Whether `array` is the counter Piscina parks this thread on (recognised on its first wait, by the caller). */
function isPiscinaCounter(array: object): boolean {
  if (array === piscinaCounter) return true;
  if (piscinaCounter !== undefined || others.has(array)) return false;
  if (new Error().stack?.includes(PISCINA_WAIT_LOOP) === true) {
    piscinaCounter = array as Int32Array;
    return true;
  }
  others.add(array);
  return false;
}

/** Worker side: whether this thread has recognised Piscina's wait, and how many of those waits its spin ended. */
export function spinStats(): { readonly recognised: boolean; readonly spun: number } {
  return { recognised: piscinaCounter !== undefined, spun };
}

/**
 * Main side: the gate the threads of a pool spin behind, open while at most `cores - 1` tasks run
 * and none waits for a thread. Written only when it changes, so the threads reading it keep their copy.
 */
export class SpinGate {
  /** Shared with every thread of the pool through `workerData`. */
  readonly cells = new Int32Array(new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT));
  readonly #cores: number;
  #open = 0;

  /** `cores`: the machine's (`os.availableParallelism()`); one is left to the main thread. */
  constructor(cores: number) {
    this.#cores = cores;
  }

  /** Whether the threads may spin now. */
  get open(): boolean {
    return this.#open === 1;
  }

  /** Opens or closes the gate for `running` tasks in threads and `waiting` ones queued for a thread. */
  update(running: number, waiting: number): void {
    const open = spinAllowed(running, waiting, this.#cores) ? 1 : 0;
    if (open === this.#open) return;
    this.#open = open;
    Atomics.store(this.cells, 0, open);
  }
}

/**
 * Whether a pool's idle workers (and the main thread waiting on them) may spin: while the `running`
 * tasks leave a core of the machine's `cores` to the main thread and none waits for a worker. A
 * saturated pool gains nothing by it: its workers' next tasks are queued already, and a spinning
 * worker would only take the core the main thread books the answers on.
 */
export function spinAllowed(running: number, waiting: number, cores: number): boolean {
  return waiting === 0 && running <= Math.max(1, cores - 1);
}
