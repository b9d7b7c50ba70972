/**
 * `step.waitForInput` in batch mode, shared by the main thread's step context and the worker's, so
 * a processor gets the same answer wherever it runs.
 */
import type { z } from 'zod';
import { ErrorCode, InputRequiredError } from '../errors.js';
import type { AnySchema, WaitForInputOptions } from '../processor.js';
import { validate } from './invoke.js';

/**
 * Resolves a `waitForInput` call without a person: an answer already given for `key` (validated),
 * else the validated `default`, else an `InputRequiredError` (never retried).
 * @throws ValidationError `WEIR_VALIDATION` when the answer or default fails `schema`.
 * @throws InputRequiredError `WEIR_INPUT_REQUIRED` when there is neither.
 */
export async function resolveInput<S extends AnySchema>(
  stepName: string,
  key: string,
  schema: S,
  options: WaitForInputOptions<z.output<S>> = {},
  answers?: Readonly<Record<string, unknown>>,
): Promise<z.output<S>> {
  if (answers !== undefined && Object.hasOwn(answers, key)) {
    return validate(schema, answers[key], `flow "${stepName}": the answer to input "${key}"`) as z.output<S>;
  }
  if (options.default !== undefined) {
    return validate(schema, options.default, `flow "${stepName}": the default for input "${key}"`) as z.output<S>;
  }
  throw new InputRequiredError(`flow "${stepName}" needs input "${key}" and the run is in batch mode with no default`, {
    code: ErrorCode.INPUT_REQUIRED,
  });
}
