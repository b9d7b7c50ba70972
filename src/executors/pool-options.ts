/** The options of the thread and process pools, as `FlowContextOptions.threads` and `.processes`. */
import { availableParallelism } from 'node:os';
import { z } from 'zod';
import { duration, expecting, type OptionsOf } from '../util/parse.js';

/** A pool's settings with the defaults filled in. */
export interface PoolSettings {
  readonly max: number;
  readonly idleTimeout: number;
  readonly abortGrace: number;
}

export interface ThreadPoolSettings extends PoolSettings {
  readonly resourceLimits: ThreadResourceLimits | undefined;
  readonly spinMicros: number;
}

export interface ProcessPoolSettings extends PoolSettings {
  readonly execArgv: readonly string[];
  readonly spinMicros: number;
}

const ms = duration({ min: 0 });
/** The longest spin a pool may be given: past a millisecond, sleeping costs less than spinning. */
const MAX_SPIN_MICROS = 1000;
const spinMicros = () => expecting(z.number().int().min(0).max(MAX_SPIN_MICROS), `a whole number of microseconds from 0 to ${MAX_SPIN_MICROS}`).optional();
const mb = expecting(z.number().positive(), 'a positive number of megabytes').optional();

// The shapes are consts of their own so their TSDoc reaches the published types.
const resourceLimitsShape = {
  /** The most the main heap may grow to, in megabytes. @default Node's */
  maxOldGenerationSizeMb: mb,
  /** The most the heap for recently made objects may grow to, in megabytes. @default Node's */
  maxYoungGenerationSizeMb: mb,
  /** The size of the range reserved for generated code, in megabytes. @default Node's */
  codeRangeSizeMb: mb,
  /** The most the thread's stack may take, in megabytes. @default 4 */
  stackSizeMb: mb,
};

// Typed with its shape (zod's inferred type copies it and drops its docs), so the published types keep
// them where it is nested; readonly, as OptionsOf makes the same options given on their own.
const resourceLimitsSchema: z.ZodReadonly<z.ZodObject<typeof resourceLimitsShape, z.core.$strict>> = z.strictObject(resourceLimitsShape).readonly();

const threadPoolShape = {
  /** The most threads at once, across all runs of the context. @default os.availableParallelism() */
  max: z.number().int().positive().optional(),
  /** How long an idle thread is kept before it is ended, in milliseconds. @default 10000 */
  idleTimeout: ms.optional(),
  /**
   * After a step's signal aborts (timeout or cancel), how long it may take to stop by itself before
   * its thread is terminated, in milliseconds. @default 250
   */
  abortGrace: ms.optional(),
  /** V8 limits of each thread, as `worker_threads` takes them: `maxOldGenerationSizeMb` and so on. @default Node's */
  resourceLimits: resourceLimitsSchema.optional(),
  /**
   * How long a thread that has answered a task keeps checking for the next one before it sleeps, and
   * the main thread for the answer of a task it posted, in microseconds: a task or answer that comes
   * meanwhile is read without a wake-up (a chain of short thread steps runs about a third faster), at
   * the cost of up to that much CPU time on each side per task. Only while a core is free for it; `0`
   * sleeps at once, as a plain Piscina thread does; worth it where threads outnumber free cores.
   * @default 50
   */
  spinMicros: spinMicros(),
};

const processPoolShape = {
  /** The most child processes at once, across all runs of the context. @default os.availableParallelism() */
  max: z.number().int().positive().optional(),
  /** How long an idle child is kept before it is ended, in milliseconds. @default 10000 */
  idleTimeout: ms.optional(),
  /**
   * After a step's signal aborts (timeout or cancel), how long it may take to stop by itself before
   * its child is killed with SIGKILL, in milliseconds. @default 250
   */
  abortGrace: ms.optional(),
  /** Node options of each child, such as `['--max-old-space-size=512']`. @default [] */
  execArgv: expecting(z.array(z.string()), 'an array of strings').readonly().optional(),
  /**
   * How long a child that has answered a task keeps its event loop turning for the next one before it
   * sleeps, and the main thread for the answer of a task it sent, in microseconds: a message that
   * comes meanwhile is read without a wake-up (a chain of short process steps runs about a third
   * faster), at the cost of up to that much CPU time on each side per task. Only while a core is
   * free for it; `0` sleeps at once, as a plain `fork` does. @default 50
   */
  spinMicros: spinMicros(),
};

/** Per-thread V8 heap and stack limits, in megabytes. */
export type ThreadResourceLimits = OptionsOf<typeof resourceLimitsShape>;

/** `FlowContextOptions.threads`: the context's pool of worker threads (Piscina). */
export type ThreadPoolOptions = OptionsOf<typeof threadPoolShape>;

/** `FlowContextOptions.processes`: the context's pool of forked Node processes. */
export type ProcessPoolOptions = OptionsOf<typeof processPoolShape>;

/**
 * The schema of `FlowContextOptions.threads`: readonly, as `OptionsOf` makes the options given on
 * their own. An interface (zod's inferred type copies the shape and drops its docs), so the published
 * types name it in the context's options and keep the docs of its fields.
 */
// eslint-disable-next-line @typescript-eslint/no-empty-object-type
export interface ThreadPoolSchema extends z.ZodReadonly<z.ZodObject<typeof threadPoolShape, z.core.$strict>> {}

/** The schema of `FlowContextOptions.processes`; an interface for the same reason as `ThreadPoolSchema`. */
// eslint-disable-next-line @typescript-eslint/no-empty-object-type
export interface ProcessPoolSchema extends z.ZodReadonly<z.ZodObject<typeof processPoolShape, z.core.$strict>> {}

export const threadPoolSchema: ThreadPoolSchema = z.strictObject(threadPoolShape).readonly();
export const processPoolSchema: ProcessPoolSchema = z.strictObject(processPoolShape).readonly();

const DEFAULT_IDLE_TIMEOUT = 10_000;
const DEFAULT_ABORT_GRACE = 250;
/** Covers the main thread's booking of a step between two tasks (5-10 µs) many times over, and stays far below a wake-up's worth of waste. */
const DEFAULT_SPIN_MICROS = 50;

/** Fills in the defaults of parsed `threads` options. */
export function threadSettings(options: z.output<typeof threadPoolSchema> = {}): ThreadPoolSettings {
  return Object.freeze({
    max: options.max ?? availableParallelism(),
    idleTimeout: options.idleTimeout ?? DEFAULT_IDLE_TIMEOUT,
    abortGrace: options.abortGrace ?? DEFAULT_ABORT_GRACE,
    resourceLimits: options.resourceLimits,
    spinMicros: options.spinMicros ?? DEFAULT_SPIN_MICROS,
  });
}

/** Fills in the defaults of parsed `processes` options. */
export function processSettings(options: z.output<typeof processPoolSchema> = {}): ProcessPoolSettings {
  return Object.freeze({
    max: options.max ?? availableParallelism(),
    idleTimeout: options.idleTimeout ?? DEFAULT_IDLE_TIMEOUT,
    abortGrace: options.abortGrace ?? DEFAULT_ABORT_GRACE,
    execArgv: Object.freeze([...(options.execArgv ?? [])]),
    spinMicros: options.spinMicros ?? DEFAULT_SPIN_MICROS,
  });
}
