/** The `process` executor: processors run in a pool of forked Node processes, made on first use. */
import { availableParallelism } from 'node:os';
import { ErrorCode, FlowError, RetryableError } from '../errors/errors.js';
import type { Step } from '../model/processor.js';
import { messageOf } from '../util/message-of.js';
import { entryFile, tsxImportArgs } from './entry-file.js';
import { ForkPool } from './fork-pool.js';
import type { ProcessPoolSettings } from './pool-options.js';
import type { AbortTaskMessage, DepsReplyMessage, ResultMessage, RunTaskMessage } from './protocol.js';
import { RemoteExecutor, type TaskControl } from './remote.js';

/** Runs processors in child processes; the pool is shared by every run of the context. */
export class ProcessExecutor extends RemoteExecutor {
  protected readonly type = 'process';
  protected readonly abortGrace: number;
  readonly #settings: ProcessPoolSettings;
  #pool: ForkPool | undefined;

  constructor(settings: ProcessPoolSettings) {
    super();
    this.#settings = settings;
    this.abortGrace = settings.abortGrace;
  }

  /** Children alive now (0 before first use). */
  get size(): number {
    return this.#pool?.size ?? 0;
  }

  protected dispatch(task: RunTaskMessage, control: TaskControl): Promise<ResultMessage> {
    return this.#open().run(task, control);
  }

  protected post(message: AbortTaskMessage | DepsReplyMessage): boolean {
    return this.#pool?.send(message) ?? false;
  }

  protected crashed(step: Step, error: unknown): FlowError {
    return new RetryableError(
      `flow "${step.name}": the child process running attempt ${step.attempt} ${messageOf(error)}; it was replaced, and the retry policy decides what happens next`,
      { code: ErrorCode.WORKER_CRASHED, cause: error },
    );
  }

  protected async shutdown(): Promise<void> {
    const pool = this.#pool;
    this.#pool = undefined;
    await pool?.close();
  }

  #open(): ForkPool {
    if (this.#pool !== undefined) return this.#pool;
    const entry = entryFile('process-worker');
    this.#pool = new ForkPool({
      filename: entry.file,
      execArgv: entry.typescript ? [...tsxImportArgs(), ...this.#settings.execArgv] : this.#settings.execArgv,
      max: this.#settings.max,
      idleTimeout: this.#settings.idleTimeout,
      spinMicros: this.#settings.spinMicros,
      cores: availableParallelism(),
      onEvent: (message) => this.onEvent(message),
    });
    return this.#pool;
  }
}
