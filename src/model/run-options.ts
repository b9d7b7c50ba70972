/** The options of `ctx.run` / `ctx.start` / `flow.execute`, `ctx.resume`, `ctx.listRuns` and `ctx.prune`. */
import { z } from 'zod';
import { ageOrDate, duration, expectedOf, expecting, type OptionsOf } from '../util/parse.js';
import { FlowStatus, RunMode } from './status.js';

/** A run id: what the `runId` option takes, and what every call naming a run (`ctx.getRun`, `ctx.cancel`...) checks. */
export const runIdSchema = expecting(
  z
    .string()
    .min(1)
    .max(200)
    .regex(/^[^/\p{Cc}]+$/u),
  'a string of 1 to 200 characters without "/" or control characters',
);

// Each shape is a const of its own so its TSDoc reaches the published types.
const runOptionsShape = {
  /** How `step.waitForInput` behaves: `batch`, `interactive` or `hybrid` (see `RunMode`). @default 'batch' */
  mode: z.enum(RunMode).optional(),
  /** For a `hybrid` run: whether it starts with a person in the loop. @default true */
  humanInLoop: z.boolean().optional(),
  /** The most the whole run may take, in milliseconds; past it the run fails with `WEIR_RUN_TIMEOUT`. @default none */
  timeout: duration().optional(),
  /** Your own id for the run (for example a request id): 1 to 200 characters, without `/` or control characters. @default a random UUID */
  runId: runIdSchema.optional(),
  /** Aborting it cancels the run. */
  signal: z.custom<AbortSignal>((v) => v instanceof AbortSignal, 'an AbortSignal').optional(),
  /** The most steps of this run that may run at once, within the context's limit. @default unbounded */
  concurrency: z.number().int().positive().optional(),
};

/** Options for one run. */
export type RunOptions = OptionsOf<typeof runOptionsShape>;

const { mode, humanInLoop, runId } = runOptionsShape;
const enqueueOptionsShape = {
  mode,
  humanInLoop,
  runId,
  /** Runs with a higher priority are taken from the queue first; equal ones oldest first. @default 0 */
  priority: expecting(z.number().int().min(-1_000_000).max(1_000_000), 'a whole number from -1000000 to 1000000').optional(),
  /**
   * Groups runs for the flow's `keyConcurrency` limit: at most that many runs of the flow with the
   * same key run at once, across every context on the store (a customer id, say). @default none
   */
  concurrencyKey: expecting(z.string().min(1).max(200), 'a string of 1 to 200 characters').optional(),
};

/** Options of `ctx.enqueue`. */
export type EnqueueOptions = OptionsOf<typeof enqueueOptionsShape>;

export const enqueueOptionsSchema = z.strictObject(enqueueOptionsShape);

export const runOptionsSchema = z.strictObject(runOptionsShape);

const resumeOptionsShape = {
  /** Run this step, and everything downstream of it, again. @default none (continue where the run stopped) */
  from: z.string().min(1).optional(),
};

/** Options of `ctx.resume`. */
export type ResumeOptions = OptionsOf<typeof resumeOptionsShape>;

export const resumeOptionsSchema = z.strictObject(resumeOptionsShape);

const statusSchema = z.enum(FlowStatus);

const listRunsShape = {
  /** Only runs in this status, or in one of these. @default any */
  status: expecting(z.union([statusSchema, z.array(statusSchema).readonly()]), `${expectedOf(statusSchema)}, or an array of them`).optional(),
  /** Only runs of this root flow. @default any */
  flow: z.string().min(1).optional(),
  /** At most this many runs (up to 10000). @default 100 */
  limit: z.number().int().positive().max(10_000).optional(),
  /** The `next` cursor of the previous page. @default the first page */
  before: z.string().min(1).optional(),
  /** Only running runs whose owner is gone (lease expired, or its process dead on this host). @default false */
  stale: z.boolean().optional(),
  /**
   * Only runs no live context can take: pending, running or waiting runs whose flow, at the version
   * the run needs, no live worker has registered (on a Postgres store, every worker on the
   * database; on the others, this context). @default false
   */
  stranded: z.boolean().optional(),
};

/** What `ctx.listRuns` selects. */
export type ListRunsOptions = OptionsOf<typeof listRunsShape>;

export const listRunsSchema = z.strictObject(listRunsShape);

const pruneRunsShape = {
  /** Delete runs that ended before this: an age in milliseconds, or a Date. */
  olderThan: ageOrDate(),
};

/** Options of `ctx.prune`. */
export type PruneRunsOptions = OptionsOf<typeof pruneRunsShape>;

export const pruneSchema = z.strictObject(pruneRunsShape);
