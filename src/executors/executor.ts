/** The contract between the run scheduler and the places a processor can run. */
import type { Processor, Step } from '../processor.js';
import type { RunMode } from '../status.js';

/**
 * How an executor hears that an attempt must stop (timeout, cancel, close) without reading
 * `step.signal`, which would make an AbortController for every step.
 */
export interface AbortWatch {
  readonly aborted: boolean;
  readonly abortReason: unknown;
  /** Calls `listener` with the reason once the attempt is aborted; at once if it already was. */
  onAbort(listener: (reason: unknown) => void): void;
  /** Removes a listener added with `onAbort`. */
  offAbort(listener: (reason: unknown) => void): void;
}

/** One attempt to run: the processor, its raw input, and the step context. */
export interface ExecutionRequest {
  readonly processor: Processor;
  readonly input: unknown;
  readonly step: Step;
  /** The attempt's abort, for executors that must stop work elsewhere. */
  readonly abort: AbortWatch;
  /** The run's mode, for `waitForInput` off the main thread. @default 'batch' */
  readonly mode?: RunMode;
  /** Answers already given to `waitForInput`, by key, shipped to a worker with the task. */
  readonly answers?: Readonly<Record<string, unknown>>;
}

/** Runs processors somewhere: on the event loop, on a thread, in a child process. */
export interface Executor {
  /** Resolves to the validated output, or rejects with the attempt's error. */
  execute(request: ExecutionRequest): Promise<unknown>;
  /**
   * Checks, when a flow is registered, that this executor can run `processor`; `where` names the
   * flow for messages. Synchronous. Throws a `FlowError` saying what to fix.
   */
  prepare?(processor: Processor, where: string): void;
  /** Releases threads, children and handles. */
  close(): Promise<void>;
}
