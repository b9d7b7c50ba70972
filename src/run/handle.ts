/** The handle `ctx.start` returns: the run's id, its result, and its events. */
import { z } from 'zod';
import type { WeirEvent } from '../events.js';
import type { FlowResult } from '../result.js';
import { parseOptions } from '../util/parse.js';
import type { Run } from './run.js';

/** Options of `handle.events()`. */
export interface EventsOptions {
  /** Replay only events with a `seq` greater than this. @default 0 (everything) */
  readonly after?: number;
  /** Stops the iteration when aborted. */
  readonly signal?: AbortSignal;
}

const eventsOptionsSchema = z.strictObject({
  after: z.number().int().nonnegative().optional(),
  signal: z.custom<AbortSignal>((v) => v instanceof AbortSignal, 'expected an AbortSignal').optional(),
});

/** A started run. */
export interface RunHandle<O = unknown> {
  /** The run's id. */
  readonly runId: string;
  /** Resolves to the run's `FlowResult` when it ends; a failed step fails the result, it does not reject. */
  result(): Promise<FlowResult<O>>;
  /**
   * The run's events with `seq > after`, then each new one live, ending when the run ends. Every
   * follower keeps only its position in the run's log, so a slow one never slows the run.
   * @throws ValidationError `WEIR_INVALID_OPTIONS` when `after` is not a whole number >= 0 or `signal` is not an AbortSignal.
   */
  events(options?: EventsOptions): AsyncIterable<WeirEvent>;
}

/** Makes the handle of a run. */
export function handleOf<O>(run: Run): RunHandle<O> {
  return {
    runId: run.runId,
    result: () => run.result() as Promise<FlowResult<O>>,
    events: (options = {}) => {
      const parsed = parseOptions(eventsOptionsSchema, options, 'events options');
      return run.events.follow(parsed.after, parsed.signal);
    },
  };
}
