/** The options of `ctx.run` / `ctx.start` / `flow.execute`. */
import { z } from 'zod';
import { duration, expectedOf, expecting } from '../util/parse.js';
import type { FlowStatus, RunMode } from './status.js';

/** Options for one run. */
export interface RunOptions {
  /** How `step.waitForInput` behaves. @default 'batch' */
  readonly mode?: RunMode | undefined;
  /** For a `hybrid` run: whether it starts with a person in the loop. @default true */
  readonly humanInLoop?: boolean | undefined;
  /** The most the whole run may take, in milliseconds; past it the run fails with `WEIR_RUN_TIMEOUT`. */
  readonly timeout?: number | undefined;
  /** Your own id for the run (for example a request id). @default a random UUID */
  readonly runId?: string | undefined;
  /** Aborting it cancels the run. */
  readonly signal?: AbortSignal | undefined;
  /** The most steps of this run that may run at once, within the context's limit. @default unbounded */
  readonly concurrency?: number | undefined;
}

export const runOptionsSchema = z.strictObject({
  mode: z.enum(['batch', 'interactive', 'hybrid']).optional(),
  humanInLoop: z.boolean().optional(),
  timeout: duration().optional(),
  runId: expecting(
    z
      .string()
      .min(1)
      .max(200)
      .regex(/^[^/\p{Cc}]+$/u),
    'a string of 1 to 200 characters without "/" or control characters',
  ).optional(),
  signal: z.custom<AbortSignal>((v) => v instanceof AbortSignal, 'an AbortSignal').optional(),
  concurrency: z.number().int().positive().optional(),
});

/** Options of `ctx.resume`. */
export interface ResumeOptions {
  /** Run this step, and everything downstream of it, again. */
  readonly from?: string | undefined;
}

export const resumeOptionsSchema = z.strictObject({ from: z.string().min(1).optional() });

/** What `ctx.listRuns` selects. */
export interface ListRunsOptions {
  /** Only runs in this status, or in one of these. */
  readonly status?: FlowStatus | readonly FlowStatus[] | undefined;
  /** Only runs of this root flow. */
  readonly flow?: string | undefined;
  /** At most this many runs. @default 100 */
  readonly limit?: number | undefined;
  /** The `next` cursor of the previous page. */
  readonly before?: string | undefined;
  /** Only running runs whose owner is gone (lease expired, or its process dead on this host). */
  readonly stale?: boolean | undefined;
}

const statusSchema = z.enum(['pending', 'running', 'waiting', 'completed', 'failed', 'cancelled', 'skipped']);

export const listRunsSchema = z.strictObject({
  status: expecting(z.union([statusSchema, z.array(statusSchema).readonly()]), `${expectedOf(statusSchema)}, or an array of them`).optional(),
  flow: z.string().min(1).optional(),
  limit: z.number().int().positive().max(10_000).optional(),
  before: z.string().min(1).optional(),
  stale: z.boolean().optional(),
});

/** Options of `ctx.prune`. */
export interface PruneRunsOptions {
  /** Delete runs that ended before this: an age in milliseconds, or a Date. */
  readonly olderThan: number | Date;
}

export const pruneSchema = z.strictObject({
  olderThan: expecting(z.union([z.number().nonnegative(), z.date()]), 'an age in milliseconds >= 0 or a valid Date'),
});
