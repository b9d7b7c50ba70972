/** The contract between the run scheduler and the places a processor can run. */
import type { Processor, Step } from '../model/processor.js';
import type { InputEntry } from '../model/waits.js';
import type { InputPort } from '../human/ask.js';

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

/** The outputs of an attempt's dependencies, for executors that ship them with the task. */
export interface DependencyOutputs {
  /** By dependency name; a dependency that gave no output (skipped, or optional and absent) is left out. */
  dependencyOutputs(): Readonly<Record<string, unknown>>;
}

/** One attempt to run: the processor, its raw input, and the step context. */
export interface ExecutionRequest {
  readonly processor: Processor;
  readonly input: unknown;
  readonly step: Step;
  /** The attempt's abort, for executors that must stop work elsewhere. */
  readonly abort: AbortWatch;
  /** Its dependencies' outputs at once, without `step.deps.getAll()`'s promises (remote executors send them all). */
  readonly deps: DependencyOutputs;
  /**
   * How `waitForInput` off the main thread reaches the run: whether asks wait, the answers given
   * so far (shipped with the task), and where a worker's asks are recorded.
   */
  readonly inputs?: InputPort & { readonly answers?: Readonly<Record<string, InputAnswer>> | undefined };
  /**
   * Called once, when the processor is about to run: at once inline; elsewhere once a worker that has
   * started and loaded the processor's module takes the task. The step's timeouts count from here.
   * Given only when the step has a timeout, so that other steps cost nothing to tell.
   */
  readonly started?: (() => void) | undefined;
}

/** An answer as it travels to a worker. */
export type InputAnswer = Pick<InputEntry, 'outcome' | 'value'>;

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
