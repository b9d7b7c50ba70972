/**
 * Calls a processor: parses its input, runs `process`, parses its output. Shared by every executor
 * so validation is the same wherever the processor runs.
 */
import type { z } from 'zod';
import { ErrorCode } from '../errors/errors.js';
import type { Processor, Step } from '../model/processor.js';
import { invalidValue, parseValue } from '../util/parse.js';

/** Parses `value` with a processor's schema, throwing a `ValidationError` that says which side failed. */
export function validate(schema: z.ZodType, value: unknown, what: string): unknown {
  return parseValue(schema, value, `${what} is invalid`, ErrorCode.VALIDATION);
}

/** `validate` of a step's input or output: its message (`flow "<name>": <side> is invalid`) is built only when the value fails. */
function validateSide(schema: z.ZodType, value: unknown, step: Step, side: 'input' | 'output'): unknown {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  throw invalidValue(parsed.error.issues, `flow "${step.name}": ${side} is invalid`, ErrorCode.VALIDATION);
}

/** Runs one attempt of a processor on the current thread. */
export async function invokeProcessor(processor: Processor, input: unknown, step: Step): Promise<unknown> {
  const parsedInput = validateSide(processor.input, input, step, 'input');
  const output = await processor.process(parsedInput, step);
  return validateSide(processor.output, output, step, 'output');
}

/**
 * Runs one attempt of a processor, synchronously as far as `process` is: the validated output when
 * `process` returns a plain value, else a promise of it. Throws what validation or `process` throws.
 * A worker answers a synchronous step without waiting a turn of the microtask queue per `await`
 * (inline, where no thread sleeps meanwhile, `invokeProcessor` is unchanged).
 */
export function callProcessor(processor: Processor, input: unknown, step: Step): unknown {
  const parsedInput = validateSide(processor.input, input, step, 'input');
  const output: unknown = processor.process(parsedInput, step);
  if (isThenable(output)) return Promise.resolve(output).then((value) => validateSide(processor.output, value, step, 'output'));
  return validateSide(processor.output, output, step, 'output');
}

/** Whether `value` is a promise or another thenable, which `await` would wait for. */
export function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (typeof value === 'object' || typeof value === 'function') && value !== null && typeof (value as { then?: unknown }).then === 'function';
}
