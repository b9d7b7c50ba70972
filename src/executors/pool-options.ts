/** The options of the thread and process pools, as `FlowContextOptions.threads` and `.processes`. */
import { availableParallelism } from 'node:os';
import { z } from 'zod';
import { duration, expecting } from '../util/parse.js';

/** `FlowContextOptions.threads`: the context's pool of worker threads (Piscina). */
export interface ThreadPoolOptions {
  /** The most threads at once, across all runs of the context. @default os.availableParallelism() */
  readonly max?: number | undefined;
  /** How long an idle thread is kept before it is ended, in milliseconds. @default 10000 */
  readonly idleTimeout?: number | undefined;
  /**
   * After a step's signal aborts (timeout or cancel), how long it may take to stop by itself before
   * its thread is terminated, in milliseconds. @default 250
   */
  readonly abortGrace?: number | undefined;
  /** V8 limits of each thread, as `worker_threads` takes them: `maxOldGenerationSizeMb` and so on. @default Node's */
  readonly resourceLimits?: ThreadResourceLimits | undefined;
}

/** Per-thread V8 heap and stack limits, in megabytes. */
export interface ThreadResourceLimits {
  readonly maxOldGenerationSizeMb?: number | undefined;
  readonly maxYoungGenerationSizeMb?: number | undefined;
  readonly codeRangeSizeMb?: number | undefined;
  readonly stackSizeMb?: number | undefined;
}

/** `FlowContextOptions.processes`: the context's pool of forked Node processes. */
export interface ProcessPoolOptions {
  /** The most child processes at once, across all runs of the context. @default os.availableParallelism() */
  readonly max?: number | undefined;
  /** How long an idle child is kept before it is ended, in milliseconds. @default 10000 */
  readonly idleTimeout?: number | undefined;
  /**
   * After a step's signal aborts (timeout or cancel), how long it may take to stop by itself before
   * its child is killed with SIGKILL, in milliseconds. @default 250
   */
  readonly abortGrace?: number | undefined;
  /** Node options of each child, such as `['--max-old-space-size=512']`. @default [] */
  readonly execArgv?: readonly string[] | undefined;
}

/** A pool's settings with the defaults filled in. */
export interface PoolSettings {
  readonly max: number;
  readonly idleTimeout: number;
  readonly abortGrace: number;
}

export interface ThreadPoolSettings extends PoolSettings {
  readonly resourceLimits: ThreadResourceLimits | undefined;
}

export interface ProcessPoolSettings extends PoolSettings {
  readonly execArgv: readonly string[];
}

const ms = duration({ min: 0 });
const mb = expecting(z.number().positive(), 'a positive number of megabytes').optional();
const common = {
  max: z.number().int().positive().optional(),
  idleTimeout: ms.optional(),
  abortGrace: ms.optional(),
};

export const threadPoolSchema = z.strictObject({
  ...common,
  resourceLimits: z
    .strictObject({ maxOldGenerationSizeMb: mb, maxYoungGenerationSizeMb: mb, codeRangeSizeMb: mb, stackSizeMb: mb })
    .optional(),
});

export const processPoolSchema = z.strictObject({
  ...common,
  execArgv: expecting(z.array(z.string()), 'an array of strings').readonly().optional(),
});

const DEFAULT_IDLE_TIMEOUT = 10_000;
const DEFAULT_ABORT_GRACE = 250;

/** Fills in the defaults of parsed `threads` options. */
export function threadSettings(options: z.output<typeof threadPoolSchema> = {}): ThreadPoolSettings {
  return Object.freeze({
    max: options.max ?? availableParallelism(),
    idleTimeout: options.idleTimeout ?? DEFAULT_IDLE_TIMEOUT,
    abortGrace: options.abortGrace ?? DEFAULT_ABORT_GRACE,
    resourceLimits: options.resourceLimits,
  });
}

/** Fills in the defaults of parsed `processes` options. */
export function processSettings(options: z.output<typeof processPoolSchema> = {}): ProcessPoolSettings {
  return Object.freeze({
    max: options.max ?? availableParallelism(),
    idleTimeout: options.idleTimeout ?? DEFAULT_IDLE_TIMEOUT,
    abortGrace: options.abortGrace ?? DEFAULT_ABORT_GRACE,
    execArgv: Object.freeze([...(options.execArgv ?? [])]),
  });
}
