/**
 * Retry policies: the option schema, the merge of flow over composite over context, the
 * classification of a failure, and the backoff delay.
 */
import { z } from 'zod';
import { FlowError } from '../errors/errors.js';
import { duration, expecting, type OptionsOf } from '../util/parse.js';

/** Decides whether a plain (non-FlowError) error may be retried. */
export type RetryPredicate = (error: unknown, attempt: number) => boolean;

/** A policy with every field filled in. */
export interface RetryPolicy {
  readonly maxAttempts: number;
  readonly initialInterval: number;
  readonly backoffFactor: number;
  readonly maxInterval: number;
  readonly jitter: number;
  readonly retryOn: RetryPredicate;
}

const PROGRAMMER_ERRORS = new Set(['TypeError', 'ReferenceError', 'SyntaxError', 'RangeError']);

/** The default `retryOn`: everything but programmer errors. */
export const retryUnlessProgrammerError: RetryPredicate = (error) =>
  !(error instanceof Error && PROGRAMMER_ERRORS.has(error.name));

/** The built-in policy under every context's: a single attempt. */
export const DEFAULT_RETRY_POLICY: RetryPolicy = Object.freeze({
  maxAttempts: 1,
  initialInterval: 1000,
  backoffFactor: 2,
  maxInterval: 60_000,
  jitter: 0.2,
  retryOn: retryUnlessProgrammerError,
});

const ms = duration({ min: 0, whole: false });

// The shape is a const of its own so its TSDoc reaches the published types.
const retryPolicyShape = {
  /** Total attempts, the first included. `retry: 3` means `{ maxAttempts: 4 }`. @default 1 */
  maxAttempts: expecting(z.number().int().min(1), 'a whole number of attempts >= 1').optional(),
  /** Wait before the second attempt, in milliseconds. @default 1000 */
  initialInterval: ms.optional(),
  /** Each wait is the previous one times this (at least 1). @default 2 */
  backoffFactor: z.number().min(1).optional(),
  /** The longest wait, in milliseconds; not below `initialInterval` when both are given. @default 60000 */
  maxInterval: ms.optional(),
  /** Randomises each wait down by up to this fraction (0 to 1), so retries spread out. @default 0.2 */
  jitter: z.number().min(0).max(1).optional(),
  // A function's type cannot be derived from a zod schema: `RetryPredicate` names it.
  /** Classifies plain errors; `FlowError`s go by their `retryable` flag. @default retries all but TypeError, ReferenceError, SyntaxError and RangeError */
  retryOn: z.custom<RetryPredicate>((v) => typeof v === 'function', 'a function (error, attempt) => boolean').optional(),
};

/** A retry policy as a user writes it; every field is optional and inherits. */
export type RetryPolicyInput = OptionsOf<typeof retryPolicyShape>;

/** `FlowConfig.retry`: attempts after the first (a whole number >= 0), or a policy. */
export type RetryOption = number | RetryPolicyInput;

/**
 * The schema of a retry policy: readonly, as `OptionsOf` makes a policy given on its own. An interface
 * (zod's inferred type copies the shape and drops its docs), so the published types name it where a
 * `retry` option is nested and keep the docs of its fields.
 */
// eslint-disable-next-line @typescript-eslint/no-empty-object-type
export interface RetryPolicySchema extends z.ZodReadonly<z.ZodObject<typeof retryPolicyShape, z.core.$strict>> {}

const policySchema: RetryPolicySchema = expecting(
  z.strictObject(retryPolicyShape).superRefine((policy, ctx) => {
    const { initialInterval, maxInterval } = policy;
    // Capped below its first wait, every wait would be maxInterval: surely a slip.
    if (initialInterval !== undefined && maxInterval !== undefined && maxInterval < initialInterval) {
      ctx.addIssue({ code: 'custom', path: ['maxInterval'], input: maxInterval, message: `a number of milliseconds >= initialInterval (${initialInterval})` });
    }
  }),
  'a retry policy object',
).readonly();

/** The schema of `retry` in `FlowConfig`, `CompositeConfig` and the context's options. */
export const retryOptionSchema = z.union([expecting(z.number().int().nonnegative(), 'a whole number of retries >= 0'), policySchema]);

/** A retry option as a policy's fields: a number of retries is `maxAttempts` one more. */
export function toPolicyInput(option: RetryOption): RetryPolicyInput {
  return typeof option === 'number' ? { maxAttempts: option + 1 } : option;
}

/** Merges policies field by field; later options override earlier ones. */
export function mergeRetry(base: RetryPolicy, ...overrides: (RetryOption | undefined)[]): RetryPolicy {
  let merged = base;
  for (const option of overrides) {
    if (option === undefined) continue;
    const input = toPolicyInput(option);
    merged = {
      maxAttempts: input.maxAttempts ?? merged.maxAttempts,
      initialInterval: input.initialInterval ?? merged.initialInterval,
      backoffFactor: input.backoffFactor ?? merged.backoffFactor,
      maxInterval: input.maxInterval ?? merged.maxInterval,
      jitter: input.jitter ?? merged.jitter,
      retryOn: input.retryOn ?? merged.retryOn,
    };
  }
  return merged === base ? base : Object.freeze(merged);
}

/** Whether `error`, thrown by attempt `attempt`, may be retried under `policy`; throws what `retryOn` throws. */
export function isRetryable(policy: RetryPolicy, error: unknown, attempt: number): boolean {
  if (attempt >= policy.maxAttempts) return false;
  if (error instanceof FlowError) return error.retryable;
  return policy.retryOn(error, attempt);
}

/** The wait after attempt `attempt` failed, in ms: exponential, capped, then jittered down. */
export function backoffDelay(policy: RetryPolicy, attempt: number, random: () => number = Math.random): number {
  // No wait stays no wait, however many attempts (0 * Infinity would be NaN).
  if (policy.initialInterval === 0) return 0;
  const exponential = policy.initialInterval * policy.backoffFactor ** (attempt - 1);
  const capped = Math.min(exponential, policy.maxInterval);
  return Math.round(capped * (1 - policy.jitter * random()));
}
