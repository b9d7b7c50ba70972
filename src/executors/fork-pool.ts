/**
 * A small pool of forked Node processes: one task per child at a time, two-way IPC with structured
 * clone (`serialization: 'advanced'`), lazy start, idle reclaim, kill on abort, replacement on exit.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fromErrorData, type ErrorData } from '../errors/error-data.js';
import { CancelledError, ErrorCode, FlowError } from '../errors/errors.js';
import { clearTimer, now, setTimer, type TimerHandle } from '../util/clock.js';
import { toWire, type AbortTaskMessage, type DepsReplyMessage, type FromWorker, type ResultMessage, type RunTaskMessage, type TaskEvent } from './protocol.js';
import type { TaskControl } from './remote.js';
import type { Mutable } from '../util/types.js';
import { LoopSpin } from './loop-spin.js';
import { spinAllowed } from './spin-wait.js';

/** Settings of a `ForkPool`. */
export interface ForkPoolOptions {
  readonly filename: string;
  readonly execArgv: readonly string[];
  readonly max: number;
  readonly idleTimeout: number;
  /** `processes.spinMicros`: how long a child checks for its next task after answering, and the main thread for an answer. */
  readonly spinMicros: number;
  /** The machine's cores (`os.availableParallelism()`): the spin is on while the busy children leave one to the main thread. */
  readonly cores: number;
  /** Receives progress, heartbeats and dependency look-ups from the children. */
  readonly onEvent: (message: TaskEvent) => void;
}

/** How a child died under a task: the rejection of that task. */
export class ChildExitError extends Error {
  constructor(
    message: string,
    readonly exitCode: number | null,
    readonly signal: NodeJS.Signals | null,
    cause?: unknown,
  ) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'ChildExitError';
  }
}

interface Job {
  readonly task: RunTaskMessage;
  readonly resolve: (result: ResultMessage) => void;
  readonly reject: (error: unknown) => void;
  readonly control: TaskControl;
}

interface Child {
  readonly process: ChildProcess;
  readonly exited: Promise<void>;
  ready: boolean;
  gone: boolean;
  job: Job | undefined;
  /** The processor classes this child has built, as far as its `started` messages told. */
  readonly loaded: Set<string>;
  /** The aliases of the classes this child has been sent: later tasks name them by alias alone. */
  readonly aliases: Set<number>;
  /** Armed while the child is idle or has been lately; it checks `idleSince` rather than being reset per task. */
  idleTimer: TimerHandle | undefined;
  idleSince: number;
  crash: ErrorData | undefined;
}

/** Runs tasks in at most `max` child processes. */
export class ForkPool {
  readonly #options: ForkPoolOptions;
  readonly #children = new Set<Child>();
  readonly #queue: Job[] = [];
  /** A number per processor class (`module#exportName`), for children to know it by once sent. */
  readonly #aliases = new Map<string, number>();
  /** The main thread's wait for an answer (`spinMicros`). */
  readonly #spin = new LoopSpin();
  #closed = false;

  constructor(options: ForkPoolOptions) {
    this.#options = options;
  }

  /** Children alive now, starting ones included. */
  get size(): number {
    return this.#children.size;
  }

  /**
   * Runs a task in a child; rejects with a `ChildExitError` if the child dies, or once `control` is
   * killed. Tells `control` when the processor starts, if it wants to know.
   */
  run(task: RunTaskMessage, control: TaskControl): Promise<ResultMessage> {
    if (this.#closed) return Promise.reject(new CancelledError('the process pool is closed'));
    if (control.killed) return Promise.reject(new CancelledError('the task was stopped before it started', { cause: control.reason }));
    return new Promise((resolve, reject) => {
      const job: Job = { task, resolve, reject, control };
      control.onKill(() => this.#kill(job, new CancelledError('the task was stopped', { cause: control.reason })));
      this.#queue.push(job);
      this.#pump();
    });
  }

  /** Sends a message to the child running the task it names; false (and dropped) if that task is not running. */
  send(message: AbortTaskMessage | DepsReplyMessage): boolean {
    for (const child of this.#children) {
      if (child.job?.task.id === message.id && !child.gone) {
        child.process.send(message, ignore);
        return true;
      }
    }
    return false;
  }

  /** Fails queued tasks, ends every child and waits for them to exit. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const job of this.#queue.splice(0)) this.#settle(job, new CancelledError('the process pool was closed'));
    const children = [...this.#children];
    for (const child of children) {
      // Held open until it has exited, so `close()` settles even when nothing else is pending.
      child.process.ref();
      child.process.kill(child.job === undefined ? 'SIGTERM' : 'SIGKILL');
    }
    await Promise.all(children.map((child) => child.exited));
  }

  #pump(): void {
    if (this.#closed) return;
    let starting = 0;
    for (const child of this.#children) {
      if (!child.ready) starting++;
      else if (child.job === undefined && !child.gone && this.#queue.length > 0) this.#assign(child, this.#queue.shift()!);
    }
    for (let needed = this.#queue.length - starting; needed > 0 && this.#children.size < this.#options.max; needed--) this.#spawn();
  }

  #spawn(): void {
    const proc = fork(this.#options.filename, [], {
      execArgv: [...this.#options.execArgv],
      serialization: 'advanced',
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    let exited!: () => void;
    const child: Child = {
      process: proc,
      exited: new Promise((resolve) => (exited = resolve)),
      ready: false,
      gone: false,
      job: undefined,
      loaded: new Set(),
      aliases: new Set(),
      idleTimer: undefined,
      idleSince: 0,
      crash: undefined,
    };
    this.#children.add(child);
    proc.on('message', (message: FromWorker) => this.#onMessage(child, message));
    proc.on('exit', (code, signal) => {
      this.#onGone(child, new ChildExitError(describeExit(code, signal, child.crash), code, signal, child.crash && fromErrorData(child.crash)));
      exited();
    });
    proc.on('error', (error) => {
      // The child could not be started or signalled; 'exit' may never come.
      this.#onGone(child, new ChildExitError(`could not be started or reached (${error.message})`, null, null, error));
      if (proc.exitCode !== null || proc.pid === undefined) exited();
    });
  }

  #onMessage(child: Child, message: FromWorker): void {
    if (typeof message !== 'object' || message === null) return;
    switch (message.type) {
      case 'ready':
        child.ready = true;
        this.#idle(child);
        this.#pump();
        return;
      case 'result': {
        const job = child.job;
        if (job === undefined || job.task.id !== message.id) return;
        child.job = undefined;
        this.#stopSpinIfIdle();
        this.#settle(job, undefined, message);
        this.#idle(child);
        this.#pump();
        return;
      }
      case 'crash':
        child.crash = message.error;
        return;
      case 'started':
        child.loaded.add(message.key);
        this.#options.onEvent(message);
        return;
      case 'progress':
      case 'heartbeat':
      case 'deps-get':
      case 'ask':
        this.#options.onEvent(message);
        return;
      // Anything else is the processor's own `process.send`, not ours to read.
    }
  }

  #assign(child: Child, job: Job): void {
    child.job = job;
    child.process.ref();
    child.process.channel?.ref();
    const control = job.control;
    if (control.wantsStart) {
      // A ready child that has built the class starts the processor as soon as the task arrives.
      if (child.loaded.has(control.key)) control.started();
      else (job.task as Mutable<RunTaskMessage>).notify = true;
    }
    this.#alias(child, job);
    const spin = this.#options.spinMicros > 0 && spinAllowed(this.#running(), this.#queue.length, this.#options.cores);
    if (spin) (job.task as Mutable<RunTaskMessage>).spinMicros = this.#options.spinMicros;
    try {
      child.process.send(toWire(job.task), (error) => {
        if (error === null || child.job !== job) return;
        this.#onGone(child, new ChildExitError(`could not be sent the task (${error.message})`, null, null, error));
        child.process.kill('SIGKILL');
      });
      if (spin) this.#spin.extend(this.#options.spinMicros);
    } catch (error) {
      // The task could not be serialised: the child is fine, the task is not (and the child got no alias with it).
      child.job = undefined;
      const sent = job.task.processor;
      if ('module' in sent && sent.alias !== undefined) child.aliases.delete(sent.alias);
      this.#settle(job, new FlowError(`the input or dependency outputs of flow "${job.task.name}" cannot be structured-cloned: ${String(error)}`, { code: ErrorCode.SERIALIZATION, cause: error }));
      this.#idle(child);
      this.#pump();
    }
  }

  /** Children running a task now (at most `max`). */
  #running(): number {
    let running = 0;
    for (const child of this.#children) if (child.job !== undefined) running++;
    return running;
  }

  /** The main thread stops waiting for answers once no child runs a task. */
  #stopSpinIfIdle(): void {
    if (this.#running() === 0) this.#spin.stop();
  }

  /** Names the task's class by a number if the child was sent it before (the V8 serialiser copies less), else sends it with one. */
  #alias(child: Child, job: Job): void {
    const ref = job.task.processor;
    if (!('module' in ref)) return;
    const key = job.control.key;
    let alias = this.#aliases.get(key);
    if (alias === undefined) this.#aliases.set(key, (alias = this.#aliases.size + 1));
    const task = job.task as Mutable<RunTaskMessage>;
    if (!child.aliases.has(alias)) {
      child.aliases.add(alias);
      task.processor = { ...ref, alias };
    } else if (ref.state === undefined) task.processor = { alias };
    else task.processor = { alias, state: ref.state, instance: ref.instance! };
  }

  /** An idle child does not hold the process open, and is ended after `idleTimeout`. */
  #idle(child: Child): void {
    child.process.unref();
    child.process.channel?.unref();
    child.idleSince = now();
    // One timer per idle spell, not one per task: a busy child would otherwise set and clear a timer per dispatch.
    if (child.idleTimer === undefined) this.#armIdle(child, this.#options.idleTimeout);
  }

  #armIdle(child: Child, ms: number): void {
    child.idleTimer = setTimer(() => {
      child.idleTimer = undefined;
      if (child.job !== undefined || child.gone) return;
      const left = child.idleSince + this.#options.idleTimeout - now();
      if (left > 0) this.#armIdle(child, left);
      else child.process.kill();
    }, ms, { unref: true });
  }

  #kill(job: Job, reason: unknown): void {
    const at = this.#queue.indexOf(job);
    if (at !== -1) {
      this.#queue.splice(at, 1);
      this.#settle(job, reason);
      return;
    }
    for (const child of this.#children) if (child.job === job) child.process.kill('SIGKILL');
  }

  #onGone(child: Child, error: ChildExitError): void {
    if (child.gone) return;
    child.gone = true;
    clearTimer(child.idleTimer);
    this.#children.delete(child);
    const job = child.job;
    child.job = undefined;
    if (job !== undefined) {
      this.#stopSpinIfIdle();
      this.#settle(job, error);
    }
    if (!child.ready) {
      // A child that dies before it is ready would die again: fail the waiting tasks rather than respawn forever.
      const failed = new ChildExitError(`could not start (${error.message})`, error.exitCode, error.signal, error);
      for (const waiting of this.#queue.splice(0)) this.#settle(waiting, failed);
      return;
    }
    this.#pump();
  }

  #settle(job: Job, error: unknown, result?: ResultMessage): void {
    job.control.onKill(undefined);
    if (result !== undefined) job.resolve(result);
    else job.reject(error);
  }
}

// A message to a child that just died is lost with it; its exit is reported instead.
function ignore(): void {}

function describeExit(code: number | null, signal: NodeJS.Signals | null, crash: ErrorData | undefined): string {
  if (crash !== undefined) return `crashed with an exception thrown outside the step (${crash.name}: ${crash.message})`;
  if (signal !== null) return `was killed by ${signal}`;
  return `exited with code ${code}`;
}
