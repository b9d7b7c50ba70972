/**
 * Parses options and configs with their zod schemas, and words every bad option one way:
 * `<where>: <path>: expected <what>, got <value>`, for example
 * `new FlowContext(): retry.jitter: expected a number from 0 to 1, got true`.
 */
import { z } from 'zod';
import { describeIssues, ErrorCode, ValidationError, type ValidationIssue } from '../errors/errors.js';
import { MAX_DELAY } from './clock.js';

type Schema = z.core.$ZodType;
type Issue = z.core.$ZodIssue;

/** One bad option: where it is, what it must be, and what it is. */
export interface OptionProblem {
  /** From the options' root: `['retry', 'jitter']`; empty for the value itself. */
  readonly path: readonly PropertyKey[];
  /** What it must be, in words: `a number from 0 to 1`. */
  readonly expected: string;
  /** What it is, in words (see `describeValue`): `true`, `"done"`, `an object`. */
  readonly got: string;
  /** The zod issue code, when a schema found it. */
  readonly code?: string;
}

const expectations = z.registry<{ expected: string }>();

/** The schema of an `olderThan` option (`prune`, `cleanup`): an age in milliseconds, or a Date. */
export function ageOrDate(): z.ZodUnion<[z.ZodNumber, z.ZodDate]> {
  return expecting(z.union([z.number().nonnegative(), z.date()]), 'an age in milliseconds >= 0 or a valid Date');
}

/**
 * The public type of an options object written once as a zod shape: what callers may pass. Keep the
 * shape a `const` of its own (not inline in `z.strictObject`), so its TSDoc reaches the published types.
 */
export type OptionsOf<Shape extends z.core.$ZodLooseShape> = Readonly<z.input<z.ZodObject<Shape>>>;

/**
 * The schema of a duration option in milliseconds: a number from `min` (1 by default), whole unless
 * `whole: false`, and at most `MAX_DELAY` (50 million days), so `now() + delay` is a valid Date.
 */
export function duration(options: { readonly min?: number; readonly whole?: boolean } = {}): z.ZodNumber {
  const min = options.min ?? 1;
  const whole = options.whole ?? true;
  const base = whole ? z.number().int() : z.number();
  const what = min === 1 && whole ? 'a positive whole number of milliseconds' : `${whole ? 'a whole number' : 'a number'} of milliseconds >= ${min}`;
  return expecting(base.min(min).max(MAX_DELAY), `${what} (at most 50 million days)`);
}

/** Tells option messages what `schema` expects, where its type and checks alone would say too little (units, patterns); returns `schema`. */
export function expecting<S extends Schema>(schema: S, expected: string): S {
  expectations.add(schema, { expected });
  return schema;
}

/** `retry.jitter`, `status[0]`; `''` for the value itself. */
export function formatPath(path: readonly PropertyKey[]): string {
  let text = '';
  for (const part of path) {
    if (typeof part === 'number') text += `[${part}]`;
    else text += text === '' ? String(part) : `.${String(part)}`;
  }
  return text;
}

/** How a message shows a value: `true`, `-5`, `"done"`, `undefined`, `an object`, `a Map`, `a function`. */
export function describeValue(value: unknown): string {
  switch (typeof value) {
    case 'string':
      return value.length > 60 ? `${JSON.stringify(value.slice(0, 57)).slice(0, -1)}..."` : JSON.stringify(value);
    case 'number':
      return Object.is(value, -0) ? '-0' : String(value);
    case 'bigint':
      return `${value}n`;
    case 'symbol':
      return `a symbol (${String(value)})`;
    case 'function':
      if (!isConstructor(value)) return 'a function';
      return value.name === '' ? 'an anonymous class' : `the class ${value.name}`;
    case 'object': {
      if (value === null) return 'null';
      if (Array.isArray(value)) return value.length === 0 ? 'an empty array' : 'an array';
      if (value instanceof Date) return Number.isNaN(value.getTime()) ? 'an invalid Date' : `a Date (${value.toISOString()})`;
      const proto = Object.getPrototypeOf(value) as { constructor?: { name?: unknown } } | null;
      const name = proto?.constructor?.name;
      if (proto === null || proto === Object.prototype || typeof name !== 'string' || name === '' || name === 'Object') return 'an object';
      return `${/^[aeio]/i.test(name) ? 'an' : 'a'} ${name}`;
    }
    default:
      return String(value);
  }
}

/** Whether `value` can be called with `new`. */
export function isConstructor(value: unknown): value is new (...args: never[]) => unknown {
  if (typeof value !== 'function') return false;
  try {
    // Only a constructor may be a new.target; nothing of `value` runs.
    Reflect.construct(Object, [], value);
    return true;
  } catch {
    return false;
  }
}

/** `a`, `a or b`, `a, b or c`. */
export function alternatives(words: readonly string[]): string {
  if (words.length <= 1) return words[0] ?? '';
  return `${words.slice(0, -1).join(', ')} or ${words.at(-1)!}`;
}

/** `<where>: <path>: expected <what>, got <value>`, one clause per problem, joined with `; `. */
export function optionsMessage(where: string, problems: readonly OptionProblem[]): string {
  const clauses = problems.map((p) => {
    const path = formatPath(p.path);
    return `${path === '' ? '' : `${path}: `}expected ${p.expected}, got ${p.got}`;
  });
  return `${where}: ${clauses.join('; ')}`;
}

/** The `ValidationError` for bad options (`WEIR_INVALID_OPTIONS` unless `code` says otherwise), worded by `optionsMessage`. */
export function invalidOptions(where: string, problems: readonly OptionProblem[], code: string = ErrorCode.INVALID_OPTIONS): ValidationError {
  const issues: ValidationIssue[] = problems.map((p) => ({
    ...(p.code === undefined ? {} : { code: p.code }),
    path: [...p.path],
    message: `expected ${p.expected}, got ${p.got}`,
  }));
  return new ValidationError(optionsMessage(where, problems), { code, issues });
}

/**
 * Parses options or a config with `schema` (a strict object whose fields may be described with
 * `expecting`); on failure throws a `ValidationError` saying, for each bad option, its path, what
 * was expected and what was given.
 * @throws ValidationError `code`, `WEIR_INVALID_OPTIONS` by default.
 */
export function parseOptions<S extends z.ZodType>(
  schema: S,
  value: unknown,
  where: string,
  code: string = ErrorCode.INVALID_OPTIONS,
): z.output<S> {
  const parsed = schema.safeParse(value);
  if (!parsed.success) throw invalidOptions(where, optionProblems(schema, value, parsed.error.issues), code);
  const unsafe: OptionProblem[] = [];
  unsafeObjects(schema, value, [], schema, unsafe);
  if (unsafe.length > 0) throw invalidOptions(where, unsafe, code);
  return parsed.data;
}

/**
 * What zod lets through in objects: a class instance (a Date, a Map) where an options object is
 * expected, as zod takes any object (`retry: new Date()` would pass as an empty policy); and an own
 * `__proto__` key (JSON.parse makes them) in a record or a loose object, which zod drops without a
 * word. `at` is the schema at `path`, whose words the problem uses.
 */
function unsafeObjects(schema: Schema, value: unknown, path: readonly PropertyKey[], at: Schema, out: OptionProblem[]): void {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return;
  const def = defOf(schema);
  if (WRAPPERS.has(def.type)) return unsafeObjects(def.innerType as Schema, value, path, at, out);
  if (def.type === 'pipe') return unsafeObjects(def.in as Schema, value, path, at, out);
  if (def.type === 'union') {
    const member = (def.options as Schema[]).find((option) => objectSchema(option));
    if (member !== undefined) unsafeObjects(member, value, path, at, out);
    return;
  }
  if (def.type !== 'object' && def.type !== 'record') return;
  if (Object.hasOwn(value, '__proto__')) {
    out.push({ path: [...path, '__proto__'], expected: 'no "__proto__" key', got: describeValue((value as Record<string, unknown>).__proto__) });
  }
  if (def.type === 'record') return;
  const proto = Object.getPrototypeOf(value) as unknown;
  if (proto !== Object.prototype && proto !== null) {
    const expected = expectedOf(at);
    out.push({ path, expected: expected === 'an object' ? 'a plain object' : expected, got: describeValue(value) });
    return;
  }
  for (const [key, child] of Object.entries(def.shape as Record<string, Schema>)) {
    if (Object.hasOwn(value, key)) unsafeObjects(child, (value as Record<string, unknown>)[key], [...path, key], child, out);
  }
}

/** Whether `schema`, under its wrappers, checks an object's fields. */
function objectSchema(schema: Schema): boolean {
  const def = defOf(schema);
  if (WRAPPERS.has(def.type)) return objectSchema(def.innerType as Schema);
  if (def.type === 'pipe') return objectSchema(def.in as Schema);
  return def.type === 'object';
}

/**
 * Parses a value with a processor's (or a person's answer's) schema: the messages are zod's, as the
 * schema's author wrote them.
 * @throws ValidationError `code`, `WEIR_VALIDATION` by default, listing the zod issues.
 */
export function parseValue<S extends z.ZodType>(schema: S, value: unknown, where: string, code: string = ErrorCode.VALIDATION): z.output<S> {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  throw invalidValue(parsed.error.issues, where, code);
}

/** The `ValidationError` of `parseValue` for the issues of a failed parse: `<where>: <issues>`. */
export function invalidValue(issues: readonly Issue[], where: string, code: string = ErrorCode.VALIDATION): ValidationError {
  const described = toIssues(issues);
  return new ValidationError(`${where}: ${describeIssues(described)}`, { code, issues: described });
}

/** What zod found wrong with options `value` of `schema`, as problems that say what was expected. */
export function optionProblems(schema: Schema, value: unknown, issues: readonly Issue[]): OptionProblem[] {
  const problems: OptionProblem[] = [];
  for (const issue of issues.flatMap((i) => flatten(i, []))) {
    if (issue.code === 'unrecognized_keys') {
      const known = knownKeys(schemaAt(schema, issue.path));
      for (const key of issue.keys) {
        problems.push({
          code: issue.code,
          path: [...issue.path, key],
          expected: known.length === 0 ? 'no options here' : `one of the options ${alternatives(known)}`,
          got: 'an unknown option',
        });
      }
      continue;
    }
    const given = describeValue(valueAt(value, issue.path));
    // A refinement's message is what it expects (`a number >= initialInterval (500)`); zod's default says nothing.
    if (issue.code === 'custom' && issue.message !== '' && issue.message !== 'Invalid input') {
      problems.push({ code: issue.code, path: issue.path, expected: issue.message.replace(/^expected /, ''), got: given });
      continue;
    }
    const at = schemaAt(schema, issue.path);
    problems.push({ code: issue.code, path: issue.path, expected: at === undefined ? issue.message : expectedOf(at), got: given });
  }
  return problems;
}

/** Copies zod issues into plain, cloneable `ValidationIssue`s. */
export function toIssues(issues: readonly Issue[]): ValidationIssue[] {
  return issues.map((i) => ({ code: i.code, path: i.path.map((p) => (typeof p === 'symbol' ? String(p) : p)), message: i.message }));
}

/**
 * Replaces a union's `Invalid input` by the issues of the one member the value has the shape of
 * (`retry: { jitter: true }` is a policy object with a bad `jitter`); when none or several fit, the
 * union itself is reported, and says every member it takes.
 */
function flatten(issue: Issue, prefix: readonly PropertyKey[]): Issue[] {
  const path = [...prefix, ...issue.path];
  if (issue.code === 'invalid_union') {
    const fitting = issue.errors.filter((branch) => branch.length > 0 && branch.every((i) => i.path.length > 0 || i.code === 'unrecognized_keys'));
    if (fitting.length === 1) return fitting[0]!.flatMap((i) => flatten(i, path));
  }
  return [{ ...issue, path }];
}

type Def = { type: string } & Record<string, unknown>;
const defOf = (schema: Schema): Def => schema._zod.def as unknown as Def;
const WRAPPERS = new Set(['optional', 'nonoptional', 'default', 'prefault', 'readonly', 'catch', 'nullable']);

/** The schema that checks the part of the value at `path`, through objects, arrays, records, unions and wrappers. */
function schemaAt(schema: Schema, path: readonly PropertyKey[]): Schema | undefined {
  let current: Schema | undefined = schema;
  for (const key of path) {
    if (current === undefined) return undefined;
    current = childOf(current, key);
  }
  return current;
}

function childOf(schema: Schema, key: PropertyKey): Schema | undefined {
  const def = defOf(schema);
  if (WRAPPERS.has(def.type)) return childOf(def.innerType as Schema, key);
  switch (def.type) {
    case 'pipe':
      return childOf(def.in as Schema, key);
    case 'object': {
      const shape = def.shape as Record<string, Schema>;
      return typeof key === 'string' && Object.hasOwn(shape, key) ? shape[key] : undefined;
    }
    case 'record':
      return def.valueType as Schema;
    case 'array':
      return typeof key === 'number' ? (def.element as Schema) : undefined;
    case 'tuple':
      return typeof key === 'number' ? ((def.items as Schema[])[key] ?? (def.rest as Schema | undefined)) : undefined;
    case 'union':
      for (const option of def.options as Schema[]) {
        const child = childOf(option, key);
        if (child !== undefined) return child;
      }
      return undefined;
    default:
      return undefined;
  }
}

function knownKeys(schema: Schema | undefined): string[] {
  if (schema === undefined) return [];
  const def = defOf(schema);
  if (WRAPPERS.has(def.type)) return knownKeys(def.innerType as Schema);
  if (def.type === 'pipe') return knownKeys(def.in as Schema);
  if (def.type === 'object') return Object.keys(def.shape as object);
  if (def.type === 'union') return [...new Set((def.options as Schema[]).flatMap(knownKeys))];
  return [];
}

function valueAt(value: unknown, path: readonly PropertyKey[]): unknown {
  let current = value;
  try {
    for (const key of path) {
      if (typeof current !== 'object' || current === null) return undefined;
      current = (current as Record<PropertyKey, unknown>)[key];
    }
    return current;
  } catch {
    return undefined; // a throwing getter
  }
}

/** What a schema takes, in words: its `expecting` text, or one made from its type and checks. */
export function expectedOf(schema: Schema): string {
  const own = expectations.get(schema)?.expected;
  if (own !== undefined) return own;
  const def = defOf(schema);
  if (def.type === 'nullable') return `${expectedOf(def.innerType as Schema)} or null`;
  if (WRAPPERS.has(def.type)) return expectedOf(def.innerType as Schema);
  switch (def.type) {
    case 'pipe':
      return expectedOf(def.in as Schema);
    case 'number':
      return describeNumber(checksOf(def));
    case 'string':
      return describeString(checksOf(def));
    case 'boolean':
      return 'true or false';
    case 'literal':
      return alternatives((def.values as unknown[]).map(describeValue));
    case 'enum':
      return alternatives(Object.values(def.entries as object).map((v) => JSON.stringify(v)));
    case 'union': {
      const words = (def.options as Schema[]).map(expectedOf);
      // Members that are phrases of their own are kept apart by commas: `a whole number >= 0, or a policy object`.
      return words.some((w) => /,| or /.test(w)) ? words.join(', or ') : alternatives(words);
    }
    case 'array':
      return 'an array';
    case 'object':
    case 'record':
      return 'an object';
    case 'date':
      return 'a valid Date';
    case 'function':
      return 'a function';
    case 'bigint':
      return 'a bigint';
    case 'null':
      return 'null';
    case 'undefined':
      return 'undefined';
    case 'any':
    case 'unknown':
      return 'any value';
    default:
      return 'a valid value';
  }
}

function checksOf(def: Def): Record<string, unknown>[] {
  return ((def.checks as Schema[] | undefined) ?? []).map((c) => c._zod.def as unknown as Record<string, unknown>);
}

function describeNumber(checks: readonly Record<string, unknown>[]): string {
  let whole = false;
  let min: { value: unknown; inclusive: boolean } | undefined;
  let max: { value: unknown; inclusive: boolean } | undefined;
  for (const c of checks) {
    if (c.check === 'number_format' && typeof c.format === 'string' && /int/.test(c.format)) whole = true;
    else if (c.check === 'greater_than') min = { value: c.value, inclusive: c.inclusive === true };
    else if (c.check === 'less_than') max = { value: c.value, inclusive: c.inclusive === true };
  }
  // For whole numbers, `> 0` reads better as `>= 1`.
  if (whole && min !== undefined && !min.inclusive && Number.isInteger(min.value)) min = { value: (min.value as number) + 1, inclusive: true };
  if (whole && max !== undefined && !max.inclusive && Number.isInteger(max.value)) max = { value: (max.value as number) - 1, inclusive: true };
  if (max === undefined && (whole ? min?.value === 1 && min.inclusive : min?.value === 0 && !min.inclusive)) return whole ? 'a positive whole number' : 'a positive number';
  const base = whole ? 'a whole number' : 'a number';
  if (min?.inclusive === true && max?.inclusive === true) return `${base} from ${String(min.value)} to ${String(max.value)}`;
  const bounds = [
    ...(min === undefined ? [] : [`${min.inclusive ? '>=' : '>'} ${String(min.value)}`]),
    ...(max === undefined ? [] : [`${max.inclusive ? '<=' : '<'} ${String(max.value)}`]),
  ];
  return bounds.length === 0 ? base : `${base} ${bounds.join(' and ')}`;
}

function describeString(checks: readonly Record<string, unknown>[]): string {
  let min = 0;
  let max: number | undefined;
  for (const c of checks) {
    if (c.check === 'min_length' && typeof c.minimum === 'number') min = c.minimum;
    else if (c.check === 'max_length' && typeof c.maximum === 'number') max = c.maximum;
    else if (c.check === 'length_equals' && typeof c.length === 'number') return `a string of ${c.length} characters`;
  }
  if (max !== undefined) return min === 0 ? `a string of at most ${max} characters` : `a string of ${min} to ${max} characters`;
  if (min === 1) return 'a non-empty string';
  return min > 1 ? `a string of at least ${min} characters` : 'a string';
}
