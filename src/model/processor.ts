/**
 * The user's side of the contract: a `Processor` class with zod schemas, and the `Step` context
 * its `process` method receives.
 */
import { z } from 'zod';
import { duration, type OptionsOf } from '../util/parse.js';
import { workerLoading } from '../util/worker-loading.js';

/** A zod schema of any type. */
export type AnySchema = z.ZodType;

/**
 * The keys under which a `Flow` carries its input and output types, for `step.deps.get(flow)` and
 * `ctx.run`: symbols no value ever has, so they stay out of a flow's properties. Types only.
 * @internal
 */
export declare const flowInput: unique symbol;
/** @internal */
export declare const flowOutput: unique symbol;

/** Anything that carries a flow's output type: a `Flow`. */
export interface TypedFlow<O = unknown> {
  readonly name: string;
  readonly [flowOutput]?: O;
}

/** Reads the outputs of a step's dependencies. */
export interface StepDeps {
  /**
   * The output of a dependency, by name or by `Flow`; `undefined` when it is an optional
   * dependency that failed, was skipped or is not registered.
   */
  get<F extends TypedFlow>(flow: F): Promise<NonNullable<F[typeof flowOutput]> | undefined>;
  get<T = unknown>(name: string): Promise<T | undefined>;
  /** Every dependency's output by name (failed optional ones are absent). */
  getAll(): Promise<Readonly<Record<string, unknown>>>;
}

// The shape is a const of its own so its TSDoc reaches the published types.
const waitForInputShape = {
  /** How long to wait for a person, in milliseconds; then the ask takes its default, or fails. @default none (no limit of its own) */
  timeout: duration().optional(),
  /** The value to use when no person answers (and in `batch` mode); typed by `WaitForInputOptions`. */
  default: z.unknown().optional(),
};

/** The schema of `step.waitForInput`'s options (the default is checked against the ask's own schema). */
export const waitForInputSchema = z.strictObject(waitForInputShape);

// The default's type is a type parameter (the ask's schema's output), which a zod schema cannot carry: it is written here.
/** Options of `step.waitForInput`; `T` is the type of the answer. */
export type WaitForInputOptions<T> = Omit<OptionsOf<typeof waitForInputShape>, 'default'> & {
  /** The value to use when no person answers (and in `batch` mode). @default none (the step fails with `InputRequiredError`) */
  readonly default?: T | undefined;
};

/** A step's `idempotencyKey`: the same on the main thread and in a worker, which derives it rather than receiving it. @internal */
export function idempotencyKeyOf(runId: string, name: string): string {
  return `${runId}:${name}`;
}

/** What a processor sees while it runs: its dependencies, its signal, and ways to report. */
export interface Step {
  /** The flow's name. */
  readonly name: string;
  /** The run this step belongs to. */
  readonly runId: string;
  /** The attempt number, starting at 1. */
  readonly attempt: number;
  /** Stable across retries and resumes of this step: use it to deduplicate side effects. */
  readonly idempotencyKey: string;
  /** Aborted when the step times out or the run is cancelled; its `reason` says which. */
  readonly signal: AbortSignal;
  /** The outputs of this step's dependencies. */
  readonly deps: StepDeps;
  /** Reports progress to watchers: `fraction` from 0 to 1. */
  progress(fraction: number, message?: string): void;
  /** Proof of life for a long step, with optional details for watchers. */
  heartbeat(details?: unknown): void;
  /**
   * Asks a person for a value. In `batch` mode it resolves to `options.default` at once, or
   * fails the step with an `InputRequiredError` (never retried) when there is no default.
   */
  waitForInput<S extends AnySchema>(key: string, schema: S, options?: WaitForInputOptions<z.output<S>>): Promise<z.output<S>>;
}

/**
 * A unit of user logic with typed, validated input and output.
 *
 * @example
 * class CountWords extends Processor<typeof Text, typeof Count> {
 *   readonly input = Text;
 *   readonly output = Count;
 *   async process(input: z.infer<typeof Text>) {
 *     return { words: input.text.split(/\s+/).length };
 *   }
 * }
 */
export abstract class Processor<I extends AnySchema = AnySchema, O extends AnySchema = AnySchema> {
  /** The schema the step's input is parsed with before `process` runs. */
  abstract readonly input: I;
  /** The schema `process`'s return value is parsed with; a mismatch fails the step. */
  abstract readonly output: O;
  /** Does the work. Throw a `FlowError` subclass to say whether a retry may help. */
  abstract process(input: z.output<I>, step: Step): Promise<z.input<O>> | z.input<O>;

  /** Subclasses call it with `super()`. In a weir worker it records the class, for one-file scripts (see docs/executors.md). */
  constructor() {
    // So a module a worker imports that stops at a run in its top level (a one-file script) can still give up its classes.
    workerLoading()?.noteClass(new.target);
  }
}

/** The validated input type of a processor. */
export type ProcessorInput<P> = P extends Processor<infer I, AnySchema> ? z.input<I> : never;
/** The validated output type of a processor. */
export type ProcessorOutput<P> = P extends Processor<AnySchema, infer O> ? z.output<O> : never;
