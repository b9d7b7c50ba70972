/**
 * Pipelining on a saturated thread pool. When every thread is busy and tasks wait, a thread that
 * answers parks in `Atomics.wait` until the main thread, busy booking the answers, posts it the next
 * task, and the `Atomics.notify` that wakes it is the largest part of the main thread's time per
 * task (the main thread is what limits a saturated pool). A thread that runs a short synchronous step
 * can be given the next one before it answers: the task waits on the thread's port, and the thread
 * takes it as it answers, without parking.
 *
 * Only classes whose steps have been short and synchronous go this way (learned from their answers),
 * so a task waits on a thread at most behind one step that is likely short, and a thread does not
 * run two processors at once: a synchronous one runs to its end before the thread reads its port (a
 * class that then awaits is learned from that answer; the task behind it may start meanwhile). Steps
 * with a timeout or a wait for input never do (a timeout counts from the start). A pipelined task
 * stopped while it waits is marked aborted in the running table, and its thread does not start it.
 */
import type { Piscina } from 'piscina';

/** Tasks a thread may hold while the pool pipelines: the one it runs and the one waiting on its port. */
export const PIPELINE_DEPTH = 2;

/**
 * A class whose answers come within this many ms (a moving average, from post to answer as the main
 * thread sees it, so its own delays count too) is short enough to wait behind.
 */
const SHORT_MS = 5;
/** The weight of the newest answer in that average. */
const WEIGHT = 0.25;
/** An answer counts as at most this many ms: a thread's first task (its start, the module's import) says little of the class. */
const LONGEST_SAMPLE = 2 * SHORT_MS;

/** Tasks given a pipelined place in this thread so far (`pipelinedTasks`). */
let pipelined = 0;

/** How many tasks the thread pools of this process have pipelined so far. */
export function pipelinedTasks(): number {
  return pipelined;
}

/** Counts a task given a pipelined place. */
export function notePipelined(): void {
  pipelined++;
}

type LoadBalancer = NonNullable<NonNullable<ConstructorParameters<typeof Piscina>[0]>['loadBalancer']>;

interface ClassRecord {
  async: boolean;
  ms: number;
}

/** What the executor has learned of each processor class (`module#exportName`) from its answers. */
export class PipelineClasses {
  readonly #classes = new Map<string, ClassRecord>();

  /** Whether a task of class `key` may wait on a busy thread: its steps answered synchronously, never otherwise, and fast. */
  pipelinable(key: string): boolean {
    const known = this.#classes.get(key);
    return known !== undefined && !known.async && known.ms < SHORT_MS;
  }

  /** Notes an answer of class `key`: whether `process` answered asynchronously, and the ms from post to answer. */
  note(key: string, async: boolean, ms: number): void {
    const sample = Math.min(ms, LONGEST_SAMPLE);
    const known = this.#classes.get(key);
    if (known === undefined) this.#classes.set(key, { async, ms: sample });
    else {
      if (async) known.async = true;
      known.ms += (sample - known.ms) * WEIGHT;
    }
  }
}

/**
 * Piscina's choice of thread for a task: an idle one if there is one; else, when `pipelining()` says
 * the task being placed is a pipelined one, a thread holding fewer than `PIPELINE_DEPTH` tasks; else
 * none, and Piscina keeps the task until a thread frees (or starts one, below `maxThreads`).
 */
export function pipelineBalancer(pipelining: () => boolean): LoadBalancer {
  return (_task, workers) => {
    let busy: (typeof workers)[number] | null = null;
    for (const worker of workers) {
      const usage = worker.currentUsage;
      if (usage === 0) return worker;
      if (busy === null && usage < PIPELINE_DEPTH) busy = worker;
    }
    return busy !== null && pipelining() ? busy : null;
  };
}
