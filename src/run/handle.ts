/** The handle `ctx.start` returns: the run's id, its result, and its events. */
import type { WeirEvent } from '../events.js';
import type { FlowResult } from '../result.js';
import type { Run } from './run.js';

/** Options of `handle.events()`. */
export interface EventsOptions {
  /** Replay only events with a `seq` greater than this. @default 0 (everything) */
  readonly after?: number;
  /** Stops the iteration when aborted. */
  readonly signal?: AbortSignal;
}

/** A started run. */
export interface RunHandle<O = unknown> {
  /** The run's id. */
  readonly runId: string;
  /** Resolves to the run's `FlowResult` when it ends; a failed step fails the result, it does not reject. */
  result(): Promise<FlowResult<O>>;
  /**
   * The run's events with `seq > after`, then each new one live, ending when the run ends. Every
   * follower keeps only its position in the run's log, so a slow one never slows the run.
   */
  events(options?: EventsOptions): AsyncIterable<WeirEvent>;
}

/** Makes the handle of a run. */
export function handleOf<O>(run: Run): RunHandle<O> {
  return {
    runId: run.runId,
    result: () => run.result() as Promise<FlowResult<O>>,
    events: (options = {}) => run.events.follow(options.after, options.signal),
  };
}
