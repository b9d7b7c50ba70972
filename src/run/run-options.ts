/** The options of `ctx.run` / `ctx.start` / `flow.execute`. */
import { z } from 'zod';
import type { RunMode } from '../status.js';

/** Options for one run. */
export interface RunOptions {
  /** How `step.waitForInput` behaves. @default 'batch' */
  readonly mode?: RunMode | undefined;
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
  mode: z.enum(['batch']).optional(),
  timeout: z.number().int().positive().optional(),
  runId: z
    .string()
    .min(1)
    .max(200)
    .regex(/^[^/\p{Cc}]+$/u, 'must not contain "/" or control characters')
    .optional(),
  signal: z.custom<AbortSignal>((v) => v instanceof AbortSignal, 'expected an AbortSignal').optional(),
  concurrency: z.number().int().positive().optional(),
});
