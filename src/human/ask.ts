/**
 * `step.waitForInput`, shared by the main thread's step context and the worker's, so a processor
 * gets the same answer wherever it runs. An ask that must wait for a person records the wait and
 * never settles: the attempt ends (the executor slot is freed), and once the wait is answered the
 * step runs again from its start, when the same ask returns the answer at once.
 */
import { z } from 'zod';
import { toErrorData, type ErrorData } from '../errors/error-data.js';
import { ErrorCode, FatalError, FlowError, InputRequiredError } from '../errors/errors.js';
import { waitForInputSchema, type AnySchema, type WaitForInputOptions } from '../model/processor.js';
import type { InputEntry } from '../model/waits.js';
import { validate } from '../executors/invoke.js';
import { describeValue, optionProblems, optionsMessage } from '../util/parse.js';

/** One ask that waits for a person, as it travels and is stored. */
export interface InputAsk {
  readonly key: string;
  /** The JSON Schema of what is expected (the input side of the ask's zod schema). */
  readonly schema: unknown;
  /** How long to wait, in milliseconds. */
  readonly timeout?: number;
  readonly hasDefault: boolean;
  /**
   * Set when the key's stored answer failed the ask's own schema (a check its JSON Schema could not
   * express, such as a `refine`): the answer is dropped, and the step asks again.
   */
  readonly rejected?: ErrorData;
}

/** How an attempt's asks reach its run. */
export interface InputPort {
  /** Whether an unanswered ask waits for a person now (interactive, or hybrid with a person in the loop). */
  readonly waits: boolean;
  /** How the wait for `key` ended, if it did: an answer, or an expiry. */
  answer(key: string): Pick<InputEntry, 'outcome' | 'value'> | undefined;
  /** Records a wait. `schema` is the ask's own zod schema, where it is at hand (inline). */
  wait(ask: InputAsk, schema?: AnySchema): void;
}

/** The internal reason an attempt ends when it waits for input: not an error, and never recorded as one. */
export function inputWaitSignal(step: string): FlowError {
  return new FlowError(`flow "${step}" waits for input`, { code: ErrorCode.INPUT_WAITING });
}

/** Whether an attempt ended because it waits for input. */
export function isInputWaitSignal(error: unknown): boolean {
  return error instanceof FlowError && error.code === ErrorCode.INPUT_WAITING;
}

/** The JSON Schema of what a person must submit: the input side of `schema`. */
export function jsonSchemaOf(schema: AnySchema): unknown {
  return z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' });
}

const fromJson = new Map<string, AnySchema>();

/**
 * Checks a submitted value against a stored JSON Schema (where the ask's zod schema is not at hand).
 * @throws ValidationError `WEIR_VALIDATION` naming what is wrong.
 */
export function validateAgainstJson(json: unknown, value: unknown, what: string): void {
  const text = JSON.stringify(json);
  let schema = fromJson.get(text);
  if (schema === undefined) {
    schema = z.fromJSONSchema(json as Parameters<typeof z.fromJSONSchema>[0]);
    if (fromJson.size > 256) fromJson.delete(fromJson.keys().next().value!);
    fromJson.set(text, schema);
  }
  validate(schema, value, what);
}

/**
 * Resolves a `waitForInput` call: a recorded answer (validated), a wait that expired (its default,
 * or the step fails), no person in the loop (its default, or the step fails), or a wait.
 * @throws ValidationError `WEIR_VALIDATION` when the answer or default fails `schema`.
 * @throws InputRequiredError `WEIR_INPUT_REQUIRED` without a person and without a default;
 * `WEIR_INPUT_TIMEOUT` when nobody answered in time (or the wait was refused).
 * @throws FatalError `WEIR_INVALID_OPTIONS` for a bad key or options.
 */
export async function askForInput<S extends AnySchema>(
  stepName: string,
  key: string,
  schema: S,
  options: WaitForInputOptions<z.output<S>> | undefined,
  port: InputPort,
): Promise<z.output<S>> {
  // Fatal, not a ValidationError: a bad ask is a bug in the step, and retrying it cannot help.
  const where = `flow "${stepName}": waitForInput()`;
  if (typeof key !== 'string' || key.length === 0 || key.length > 200) {
    throw new FatalError(optionsMessage(where, [{ path: ['key'], expected: 'a string of 1 to 200 characters', got: describeValue(key) }]), { code: ErrorCode.INVALID_OPTIONS });
  }
  if (!(schema instanceof z.ZodType)) {
    throw new FatalError(optionsMessage(`flow "${stepName}": waitForInput("${key}")`, [{ path: ['schema'], expected: 'a zod schema', got: describeValue(schema) }]), {
      code: ErrorCode.INVALID_OPTIONS,
    });
  }
  const parsed = waitForInputSchema.safeParse(options ?? {});
  if (!parsed.success) {
    throw new FatalError(optionsMessage(`flow "${stepName}": waitForInput("${key}") options`, optionProblems(waitForInputSchema, options, parsed.error.issues)), {
      code: ErrorCode.INVALID_OPTIONS,
    });
  }
  const fallback = options?.default;
  const timeout = options?.timeout;
  const ask = (rejected?: ErrorData): InputAsk => ({
    key,
    schema: jsonSchemaOf(schema),
    hasDefault: fallback !== undefined,
    ...(timeout === undefined ? {} : { timeout }),
    ...(rejected === undefined ? {} : { rejected }),
  });
  const entry = port.answer(key);
  if (entry !== undefined) {
    if (entry.outcome === 'answered') {
      try {
        return validate(schema, entry.value, `flow "${stepName}": the answer to input "${key}"`) as z.output<S>;
      } catch (error) {
        // Passed the stored JSON Schema but not the ask's own checks: dropped, and asked again.
        if (!port.waits) throw error;
        port.wait(ask(toErrorData(error)), schema);
        return new Promise<never>(() => undefined);
      }
    }
    if (entry.outcome === 'expired' && fallback !== undefined) return validate(schema, fallback, `flow "${stepName}": the default for input "${key}"`) as z.output<S>;
    throw new InputRequiredError(`flow "${stepName}": nobody answered input "${key}" in time${entry.outcome === 'expired' ? ' and it has no default' : ''}`, {
      code: ErrorCode.INPUT_TIMEOUT,
    });
  }
  if (!port.waits) {
    if (fallback !== undefined) return validate(schema, fallback, `flow "${stepName}": the default for input "${key}"`) as z.output<S>;
    throw new InputRequiredError(`flow "${stepName}" needs input "${key}" and the run has no person in the loop (batch mode) and no default`, {
      code: ErrorCode.INPUT_REQUIRED,
    });
  }
  port.wait(ask(), schema);
  // Never settles: the attempt ends, and the step runs again once the wait is answered.
  return new Promise<never>(() => undefined);
}
