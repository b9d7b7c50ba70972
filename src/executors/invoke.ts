/**
 * Calls a processor: parses its input, runs `process`, parses its output. Shared by every executor
 * so validation is the same wherever the processor runs.
 */
import type { z } from 'zod';
import { ErrorCode } from '../errors/errors.js';
import type { Processor, Step } from '../model/processor.js';
import { parseValue } from '../util/parse.js';

/** Parses `value` with a processor's schema, throwing a `ValidationError` that says which side failed. */
export function validate(schema: z.ZodType, value: unknown, what: string): unknown {
  return parseValue(schema, value, `${what} is invalid`, ErrorCode.VALIDATION);
}

/** Runs one attempt of a processor on the current thread. */
export async function invokeProcessor(processor: Processor, input: unknown, step: Step): Promise<unknown> {
  const parsedInput = validate(processor.input, input, `flow "${step.name}": input`);
  const output = await processor.process(parsedInput, step);
  return validate(processor.output, output, `flow "${step.name}": output`);
}
