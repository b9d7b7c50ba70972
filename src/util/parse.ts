/** Parses a value with its zod schema (options, configs, processor input and output), throwing a ValidationError that names the field. */
import type { z } from 'zod';
import { describeIssues, ErrorCode, ValidationError, type ValidationIssue } from '../errors.js';

/** Parses `value` with `schema`; on failure throws `ValidationError` (`code` defaults to WEIR_INVALID_OPTIONS). */
export function parseOptions<S extends z.ZodType>(
  schema: S,
  value: unknown,
  where: string,
  code: string = ErrorCode.INVALID_OPTIONS,
): z.output<S> {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  const issues = toIssues(parsed.error.issues);
  throw new ValidationError(`${where}: ${describeIssues(issues)}`, { code, issues });
}

/** Copies zod issues into plain, cloneable `ValidationIssue`s. */
export function toIssues(issues: readonly z.core.$ZodIssue[]): ValidationIssue[] {
  return issues.map((i) => ({ code: i.code, path: i.path.map((p) => (typeof p === 'symbol' ? String(p) : p)), message: i.message }));
}
