/** The `thread` executor: processors run in a Piscina pool of worker threads, made on first use. */
import { randomUUID } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { BroadcastChannel } from 'node:worker_threads';
import type { Piscina } from 'piscina';
import { CancelledError, ErrorCode, FlowError, RetryableError, WarningCode } from '../errors/errors.js';
import type { Processor, Step } from '../model/processor.js';
import { realNow, setTimer } from '../util/clock.js';
import { messageOf } from '../util/message-of.js';
import { entryFile } from './entry-file.js';
import type { ThreadPoolSettings } from './pool-options.js';
import { isFromWorker, toWire, type AbortTaskMessage, type DepsReplyMessage, type ResultMessage, type RunTaskMessage, type StartedMessage, type TaskWire } from './protocol.js';
import { RemoteExecutor, type KillSwitch, type TaskControl } from './remote.js';
import { createRunningTable, markAborted, RUNNING_SLOTS, threadRunning } from './running-table.js';
import { SpinGate } from './spin-wait.js';
import { LoopSpin } from './loop-spin.js';
import { notePipelined, PIPELINE_DEPTH, PipelineClasses, pipelineBalancer } from './pipeline.js';
import type { Mutable } from '../util/types.js';

/** The longest delay one Node timer can hold, in ms. */
const MAX_TIMER = 2 ** 31 - 1;

// How often to look again for the thread of a task that was aborted while its thread was starting, in ms.
const TERMINATE_RETRY = 10;

/** Piscina's class once imported: a process that runs no thread step never loads it. */
let PiscinaClass: typeof Piscina | undefined;
let loadingPiscina: Promise<typeof Piscina> | undefined;

/** Imports Piscina once; a failed import is tried again by the next call. */
function loadPiscina(): Promise<typeof Piscina> {
  loadingPiscina ??= import('piscina').then(
    (module) => (PiscinaClass = module.Piscina),
    (error: unknown) => {
      loadingPiscina = undefined;
      throw error;
    },
  );
  return loadingPiscina;
}

/**
 * How a task holds its place: `plain` and `short` (a class known to be short and synchronous) in one
 * of the pool's `max` places; `pipelined` past them, behind a short step on a busy thread.
 */
type Place = 'plain' | 'short' | 'pipelined';

/** A task waiting for a free thread, posted by `#release` as soon as one is. */
interface Waiting {
  readonly task: RunTaskMessage;
  readonly control: TaskControl;
  readonly resolve: (answer: Promise<ResultMessage>) => void;
  readonly reject: (error: unknown) => void;
}

/** Runs processors on worker threads; the pool is shared by every run of the context. */
export class ThreadExecutor extends RemoteExecutor {
  protected readonly type = 'thread';
  protected readonly abortGrace: number;
  readonly #settings: ThreadPoolSettings;
  #pool: Piscina<TaskWire, ResultMessage> | undefined;
  #channel: BroadcastChannel | undefined;
  /** Why the last pool could not start a thread, for the attempts that failed with it. */
  #startError: unknown;
  /**
   * Tasks wait here rather than in Piscina's queue: Piscina with `minThreads: 0` does not replace a
   * terminated thread for tasks already queued, and here an aborted task that never started is dropped at once.
   */
  readonly #waiting: Waiting[] = [];
  /** Tasks posted to Piscina and not yet answered, pipelined ones included. */
  #busy = 0;
  /** Those of them in a `plain` place: while there is one, no task is pipelined. */
  #plain = 0;
  /** What the pool has learned of each class's answers, to pipeline the short synchronous ones. */
  readonly #classes = new PipelineClasses();
  /** True while a pipelined task is being handed to Piscina (read by the balancer). */
  #placingPipelined = false;
  /** Pipelined tasks posted a second time after their thread ended before they started. */
  readonly #reposted = new Set<number>();
  /** The highest task id posted so far: a running-table slot older by `RUNNING_SLOTS` may have been reused. */
  #newestId = 0;
  readonly #started = new Set<number>();
  readonly #runningTable = createRunningTable();
  /** Lets idle threads spin for the next task while a core is free for it (see `spin-wait.ts`). */
  readonly #spinGate = new SpinGate(availableParallelism());
  /** The main thread's wait for an answer while the gate is open (see `loop-spin.ts`). */
  readonly #spin = new LoopSpin();
  /** Whether task `id` is posted and not yet answered (for the running table's abort marks). */
  readonly #isStarted = (id: number): boolean => this.#started.has(id);
  /** Ends the thread of a task that is killed: one function for every task, not a closure each. */
  readonly #kill = (control: TaskControl): void => this.#terminate(control.id);
  /** Threads that have loaded their entry (Piscina's `workerCreate`), by thread id. */
  readonly #ready = new Set<number>();
  /** The processor classes each ready thread has loaded, as far as its `started` messages told. */
  readonly #loaded = new Map<number, Set<string>>();
  /** How many ready threads have loaded each processor class. */
  readonly #warm = new Map<string, number>();

  constructor(settings: ThreadPoolSettings) {
    super();
    this.#settings = settings;
    this.abortGrace = settings.abortGrace;
  }

  /** Threads alive now (0 before first use). */
  get size(): number {
    return this.#pool?.threads.length ?? 0;
  }

  /** Also starts importing Piscina, so a registered thread flow finds it loaded by its first step. */
  override prepare(processor: Processor, where: string): void {
    super.prepare(processor, where);
    if (PiscinaClass === undefined) loadPiscina().catch(() => undefined); // the first dispatch reports a failure
  }

  protected dispatch(task: RunTaskMessage, control: TaskControl): Promise<ResultMessage> {
    // The usual case, without a promise of its own: a free thread (or, saturated, a pipelined place).
    const place = this.#waiting.length === 0 ? this.#place(task, control) : undefined;
    if (place !== undefined) {
      this.#take(place);
      this.#updateSpinGate();
      return this.#post(task, control, place);
    }
    return new Promise((resolve, reject) => {
      const waiting: Waiting = { task, control, resolve, reject };
      control.onKill(() => {
        this.#waiting.splice(this.#waiting.indexOf(waiting), 1);
        this.#reposted.delete(control.id);
        this.#updateSpinGate();
        reject(new CancelledError('the task was stopped before it started', { cause: control.reason }));
      });
      this.#waiting.push(waiting);
      this.#updateSpinGate();
    });
  }

  /**
   * The place a task can take now, if any: a thread's own while fewer than `max` tasks are out; past
   * that, a place behind a short synchronous step on a busy thread, for a task of a class known to
   * be short and synchronous, while every task out is of such a class (see `pipeline.ts`).
   */
  #place(task: RunTaskMessage, control: TaskControl): Place | undefined {
    const short = !control.wantsStart && task.waits !== true && this.#classes.pipelinable(control.key);
    const max = this.#settings.max;
    if (this.#busy < max) return short ? 'short' : 'plain';
    return short && this.#plain === 0 && this.#busy < max * PIPELINE_DEPTH ? 'pipelined' : undefined;
  }

  #take(place: Place): void {
    this.#busy++;
    if (place === 'plain') this.#plain++;
    else if (place === 'pipelined') notePipelined();
  }

  /** Lets the threads spin for their next task or not, as the tasks running and waiting now say. */
  #updateSpinGate(): void {
    this.#spinGate.update(this.#busy, this.#waiting.length);
  }

  /** Runs a task in the place it holds: at once if Piscina is loaded, else once it is. */
  #post(task: RunTaskMessage, control: TaskControl, place: Place): Promise<ResultMessage> {
    return PiscinaClass === undefined ? this.#loadThenRun(task, control, place) : this.#run(task, control, place);
  }

  /** Holds a place while Piscina is imported (an abort meanwhile drops the task at once, as in the queue), then runs the task. */
  async #loadThenRun(task: RunTaskMessage, control: TaskControl, place: Place): Promise<ResultMessage> {
    try {
      await this.#load(control);
    } catch (error) {
      this.#release(place);
      throw error;
    }
    return this.#run(task, control, place);
  }

  /** Posts the task to Piscina in the place it holds; the place is freed in the first reaction to Piscina's answer. */
  #run(task: RunTaskMessage, control: TaskControl, place: Place): Promise<ResultMessage> {
    this.#started.add(task.id);
    if (task.id > this.#newestId) this.#newestId = task.id;
    control.onKill(this.#kill);
    let answer: Promise<ResultMessage>;
    try {
      const pool = this.#open(PiscinaClass!);
      if (control.wantsStart) {
        // Every ready thread has the class, and one is free: the processor starts as soon as the task arrives.
        const ready = this.#ready.size;
        if (ready >= this.#busy && this.#warm.get(control.key) === ready) control.started();
        else (task as Mutable<RunTaskMessage>).notify = true;
      }
      // The balancer lets a pipelined task onto a busy thread while it is placed now (not later, from Piscina's queue).
      this.#placingPipelined = place === 'pipelined';
      try {
        answer = pool.run(toWire(task));
      } finally {
        this.#placingPipelined = false;
      }
      // While the gate is open a core is free: the main thread too keeps checking, for the answer.
      if (this.#spinGate.open && this.#settings.spinMicros > 0) this.#spin.extend(this.#settings.spinMicros);
    } catch (error) {
      this.#finish(task.id, control, place);
      return Promise.reject(error instanceof Error ? error : new Error(String(error)));
    }
    const posted = realNow();
    // Not an async function: its `finally` would free the place a few turns later, so a busy pool would
    // post the next task only after this one's continuation, letting the thread fall asleep in between.
    return answer.then(
      (result) => {
        // A stopped task may have been answered without running: its answer says nothing of its class.
        if (!control.stopped) this.#classes.note(control.key, result.async === true, realNow() - posted);
        this.#finish(task.id, control, place);
        return result;
      },
      (error: unknown) => {
        // A pipelined task whose thread ended before it started (another task's kill, a crash) never ran: it goes again, once.
        const repost = place === 'pipelined' && this.#mayRepost(task.id, control, error);
        this.#finish(task.id, control, place, repost);
        if (repost) return this.dispatch(task, control);
        throw error;
      },
    );
  }

  /** Whether a pipelined task that failed with `error` never started, is still wanted, on a pool still open, and was not posted again before. */
  #mayRepost(id: number, control: TaskControl, error: unknown): boolean {
    if (control.stopped || control.killed || this.#pool === undefined || (error as { name?: unknown }).name === 'DataCloneError') return false;
    // Not in the table: it never started, unless so many tasks started since that its slot was reused.
    return threadRunning(this.#runningTable, id) === undefined && this.#newestId - id < RUNNING_SLOTS && !this.#reposted.has(id);
  }

  /** The task is over (answered, failed, or its thread gone; `again` when it is posted again): its kill hook goes, and so does its place. */
  #finish(id: number, control: TaskControl, place: Place, again = false): void {
    control.onKill(undefined);
    this.#started.delete(id);
    if (again) this.#reposted.add(id);
    else this.#reposted.delete(id);
    this.#release(place);
  }

  /** Frees a place and hands places to the waiting tasks, in order, for as long as the first can take one (posted now, so no place is taken twice). */
  #release(place: Place): void {
    this.#busy--;
    if (place === 'plain') this.#plain--;
    while (this.#waiting.length > 0) {
      const next = this.#waiting[0]!;
      const nextPlace = this.#place(next.task, next.control);
      if (nextPlace === undefined) break;
      this.#waiting.shift();
      this.#take(nextPlace);
      next.control.onKill(undefined);
      next.resolve(this.#post(next.task, next.control, nextPlace));
    }
    if (this.#busy === 0) this.#spin.stop();
    this.#updateSpinGate();
  }

  /** Waits for Piscina's import; rejects if the task is killed first, or with why Piscina could not be loaded. */
  #load(kill: KillSwitch): Promise<void> {
    return new Promise((resolve, reject) => {
      const stopped = (): void => reject(new CancelledError('the task was stopped before it started', { cause: kill.reason }));
      if (kill.killed) return stopped();
      kill.onKill(stopped);
      loadPiscina().then(
        () => {
          kill.onKill(undefined);
          // No pool has existed yet: a start error can only be an earlier failed import.
          this.#startError = undefined;
          resolve();
        },
        (error: unknown) => {
          kill.onKill(undefined);
          // Reported as a thread that could not start (see `crashed`), which the retry policy may try again.
          this.#startError = error;
          reject(error instanceof Error ? error : new Error(String(error)));
        },
      );
    });
  }

  /** Terminates the thread running task `id`; one still starting is looked for again shortly. */
  #terminate(id: number): void {
    if (!this.#started.has(id)) return;
    const threadId = threadRunning(this.#runningTable, id);
    const worker = threadId === undefined ? undefined : this.#pool?.threads.find((w) => w.threadId === threadId);
    if (worker === undefined) setTimer(() => this.#terminate(id), TERMINATE_RETRY, { unref: true });
    else void worker.terminate();
  }

  protected post(message: AbortTaskMessage | DepsReplyMessage): boolean {
    if (!this.#started.has(message.id)) return false;
    // A task posted but not started yet (pipelined behind another) never starts: its thread answers it as cancelled.
    if (message.type === 'abort') markAborted(this.#runningTable, message.id, this.#isStarted);
    this.#channel?.postMessage(message);
    return true;
  }

  protected crashed(step: Step, error: unknown): FlowError {
    const startError = this.#startError;
    if (startError !== undefined) {
      return new RetryableError(
        `flow "${step.name}": no worker thread could start to run attempt ${step.attempt} (${messageOf(startError)}); check the \`threads.resourceLimits\` option and that weir is installed intact`,
        { code: ErrorCode.WORKER_CRASHED, cause: startError },
      );
    }
    const detail =
      (error as { code?: unknown }).code === 'ERR_WORKER_OUT_OF_MEMORY'
        ? 'ran out of memory (see the `threads.resourceLimits` option)'
        : `crashed (${messageOf(error)})`;
    return new RetryableError(
      `flow "${step.name}": the worker thread running attempt ${step.attempt} ${detail}; the thread was replaced, and the retry policy decides what happens next`,
      { code: ErrorCode.WORKER_CRASHED, cause: error },
    );
  }

  protected async shutdown(): Promise<void> {
    const pool = this.#pool;
    this.#pool = undefined;
    await pool?.destroy();
    this.#channel?.close();
    this.#channel = undefined;
  }

  #open(Pool: typeof Piscina): Piscina<TaskWire, ResultMessage> {
    if (this.#pool !== undefined) return this.#pool;
    const name = `weir:${randomUUID()}`;
    this.#channel = new BroadcastChannel(name);
    this.#channel.unref();
    const settings = this.#settings;
    const pool = new Pool<TaskWire, ResultMessage>({
      filename: entryFile('thread-worker').file,
      minThreads: 0,
      maxThreads: settings.max,
      // Piscina's own timer overflows past 2^31 - 1 ms (it would end idle threads at once): that long is forever.
      idleTimeout: settings.idleTimeout > MAX_TIMER ? Infinity : settings.idleTimeout,
      workerData: { channel: name, running: this.#runningTable, spinMicros: settings.spinMicros, spinGate: this.#spinGate.cells },
      concurrentTasksPerWorker: PIPELINE_DEPTH,
      loadBalancer: pipelineBalancer(() => this.#placingPipelined),
      ...(settings.resourceLimits === undefined ? {} : { resourceLimits: { ...settings.resourceLimits } }),
    });
    pool.on('message', (message: unknown) => {
      if (!isFromWorker(message) || message.type === 'result' || message.type === 'crash' || message.type === 'ready') return;
      if (message.type === 'started' && this.#pool === pool) this.#noteLoaded(message);
      this.onEvent(message);
    });
    // A thread hears broadcasts only once its entry has loaded: repeat the aborts it may have missed.
    pool.on('workerCreate', (worker: { readonly id: number }) => {
      this.#startError = undefined;
      if (this.#pool === pool) this.#ready.add(worker.id);
      for (const message of this.pendingAborts()) this.#channel?.postMessage(message);
    });
    pool.on('workerDestroy', (worker: { readonly id: number }) => {
      if (this.#pool === pool) this.#forget(worker.id);
    });
    pool.on('error', (error: unknown) => {
      if (pool.threads.length === 0 && this.#started.size > 0) {
        // No thread could start (a bad entry, a heap too small to load it), and Piscina will not try
        // again: end this pool so its waiting tasks fail, and start afresh on the next step.
        this.#startError = error;
        if (this.#pool === pool) {
          this.#pool = undefined;
          this.#channel?.close();
          this.#channel = undefined;
        }
        void pool.destroy();
        return;
      }
      // A thread that dies between tasks has no attempt to fail; Piscina replaces it.
      process.emitWarning(`weir: an idle worker thread failed: ${String(error)}`, { code: WarningCode.WORKER_ERROR });
    });
    this.#pool = pool;
    this.#ready.clear();
    this.#loaded.clear();
    this.#warm.clear();
    return pool;
  }

  /** A thread says it has built a class (for a task sent with `notify`): later tasks of that class need not ask. */
  #noteLoaded(message: StartedMessage): void {
    const thread = threadRunning(this.#runningTable, message.id);
    if (thread === undefined || !this.#ready.has(thread)) return;
    let keys = this.#loaded.get(thread);
    if (keys === undefined) this.#loaded.set(thread, (keys = new Set()));
    if (keys.has(message.key)) return;
    keys.add(message.key);
    this.#warm.set(message.key, (this.#warm.get(message.key) ?? 0) + 1);
  }

  #forget(thread: number): void {
    this.#ready.delete(thread);
    const keys = this.#loaded.get(thread);
    if (keys === undefined) return;
    this.#loaded.delete(thread);
    for (const key of keys) {
      const count = this.#warm.get(key)! - 1;
      if (count === 0) this.#warm.delete(key);
      else this.#warm.set(key, count);
    }
  }
}

