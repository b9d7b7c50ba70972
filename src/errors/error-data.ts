/**
 * The one serialise/deserialise pair for errors: a thrown value becomes plain data (for
 * `FlowResult.error`, events, the store and, later, worker messages) and is rebuilt by class name.
 */
import { builtinErrorClasses, ErrorCode, FlowError, type ValidationIssue } from './errors.js';
import { z } from 'zod';
import { describeValue, invalidOptions, isConstructor, optionProblems } from '../util/parse.js';

/** An error as plain data: what `FlowResult.error` and failure events carry. */
export interface ErrorData {
  readonly name: string;
  readonly message: string;
  readonly code: string;
  readonly retryable: boolean;
  readonly stack?: string;
  readonly cause?: ErrorData;
  /** The step whose failure this is, on a failed run's error. */
  readonly step?: string;
  /** Schema issues, on a `ValidationError`. */
  readonly issues?: readonly ValidationIssue[];
  /** Class-specific fields: `cycle`, `upstream`, `timeout`, `dependency`. */
  readonly details?: Readonly<Record<string, unknown>>;
  /**
   * For a subclass of a weir error class: the nearest built-in class it extends, so an
   * unregistered subclass is rebuilt as that class (keeping its `name`, `code` and `retryable`).
   */
  readonly kind?: string;
}

const MAX_CAUSE_DEPTH = 5;
const KINDS = Symbol.for('weir.error.kinds');
type ErrorClass = new (message: string, options?: any) => Error;
/** JavaScript's own error classes, rebuilt as themselves so `retryOn` sees the same class as inline. */
const nativeErrorClasses: Readonly<Record<string, ErrorClass | undefined>> = {
  Error,
  TypeError,
  RangeError,
  SyntaxError,
  ReferenceError,
  EvalError,
  URIError,
};
const builtins = builtinErrorClasses as Readonly<Record<string, (new (m: string, o?: any) => FlowError) | undefined>>;
const DETAIL_FIELDS = ['cycle', 'upstream', 'timeout', 'dependency'] as const;

const userClasses = new Map<string, ErrorClass>();

/**
 * Registers an error class so that an error of that class, recorded as data, is rebuilt as the
 * same class (by its `name`). Built-in weir classes are always known.
 * @param name the errors' `name`, if not the class's. @default ctor.name
 * @throws ValidationError `WEIR_INVALID_OPTIONS` when `ctor` is not a class extending `Error`, or the name is empty.
 * @example
 * registerErrorClass(RateLimitedError);
 */
export function registerErrorClass(ctor: new (message: string, options?: any) => Error, name?: string): void {
  const where = 'registerErrorClass()';
  if (!isConstructor(ctor) || !(ctor === Error || (ctor as { prototype?: unknown }).prototype instanceof Error)) {
    throw invalidOptions(where, [{ path: ['ctor'], expected: 'a class extending Error', got: describeValue(ctor) }]);
  }
  const registered = name === undefined ? ctor.name : name;
  if (typeof registered !== 'string' || registered === '') {
    const what = name === undefined ? 'a class with a name (or a name given for an anonymous one)' : 'a non-empty string';
    throw invalidOptions(where, [{ path: ['name'], expected: what, got: describeValue(registered) }]);
  }
  userClasses.set(registered, ctor);
}

/** Turns any thrown value into `ErrorData`, keeping a bounded `cause` chain; never throws. */
export function toErrorData(error: unknown, depth = 0): ErrorData {
  try {
    return describeError(error, depth);
  } catch {
    return { name: 'Error', message: 'a value was thrown that could not be described', code: ErrorCode.UNKNOWN, retryable: false };
  }
}

function describeError(error: unknown, depth: number): ErrorData {
  if (!(error instanceof Error)) {
    return { name: 'Error', message: describeThrown(error), code: ErrorCode.UNKNOWN, retryable: false };
  }
  const data: {
    -readonly [K in keyof ErrorData]: ErrorData[K];
  } = {
    // An error's name and message can be set to anything: the data keeps strings, so it can be rebuilt.
    name: typeof error.name === 'string' ? error.name : 'Error',
    message: typeof error.message === 'string' ? error.message : describeThrown(error.message),
    code: codeOf(error),
    retryable: error instanceof FlowError ? error.retryable : false,
  };
  if (typeof error.stack === 'string') data.stack = error.stack;
  if (error.cause !== undefined && depth < MAX_CAUSE_DEPTH) data.cause = toErrorData(error.cause, depth + 1);
  const record = error as unknown as Record<string, unknown>;
  if (Array.isArray(record.issues)) data.issues = record.issues as ValidationIssue[];
  const details: Record<string, unknown> = {};
  for (const field of DETAIL_FIELDS) if (record[field] !== undefined) details[field] = record[field];
  if (Object.keys(details).length > 0) data.details = details;
  if (error instanceof FlowError && classNamed(builtins, data.name) === undefined) {
    const kinds = (error as unknown as Record<symbol, unknown>)[KINDS];
    if (Array.isArray(kinds) && typeof kinds[0] === 'string') data.kind = kinds[0];
  }
  return data;
}

// Data, not options: fields of other weir versions are let through (loose), and `cause` is checked level by level.
const errorDataSchema = z.looseObject({
  name: z.string(),
  message: z.string(),
  code: z.string().min(1),
  retryable: z.boolean(),
  stack: z.string().optional(),
  cause: z.unknown().optional(),
  step: z.string().optional(),
  issues: z.array(z.unknown()).optional(),
  details: z.record(z.string(), z.unknown()).optional(),
  kind: z.string().optional(),
});

/**
 * Rebuilds an `Error` of the recorded class, with code, stack and cause: a weir class or a class
 * registered with `registerErrorClass` as itself; an unregistered subclass of a weir class as that
 * weir class, keeping its `name` and `retryable`; JavaScript's own classes as themselves; anything
 * else as an `Error` with the recorded `name`. Of the `cause` chain, 5 levels are rebuilt, as
 * `toErrorData` keeps.
 * @throws ValidationError `WEIR_INVALID_OPTIONS` for data that is not `ErrorData` (as `toErrorData` makes it), naming the field.
 */
export function fromErrorData(data: ErrorData): Error {
  return rebuild(data, []);
}

function rebuild(data: ErrorData, path: readonly string[]): Error {
  const parsed = errorDataSchema.safeParse(data);
  if (!parsed.success) {
    const problems = optionProblems(errorDataSchema, data, parsed.error.issues).map((p) => ({ ...p, path: ['data', ...path, ...p.path] }));
    throw invalidOptions('fromErrorData()', problems);
  }
  // A cyclic or endless chain stops where toErrorData would have stopped it.
  const cause = data.cause === undefined || path.length >= MAX_CAUSE_DEPTH ? undefined : rebuild(data.cause, [...path, 'cause']);
  const builtin = classNamed(builtins, data.name);
  const user = builtin === undefined ? userClasses.get(data.name) : undefined;
  const kind = builtin === undefined && user === undefined && data.kind !== undefined ? classNamed(builtins, data.kind) : undefined;
  let error: Error;
  if (builtin !== undefined || kind !== undefined) {
    const Class = (builtin ?? kind)!;
    try {
      error = new Class(data.message, { cause, code: data.code, issues: data.issues, ...data.details });
    } catch {
      // Details its constructor refuses (a plain error named TimeoutError with `timeout: '5s'`) are left out, not thrown across a boundary.
      error = new Class(data.message, { cause, code: data.code });
    }
    if (kind !== undefined) {
      error.name = data.name;
      if ((error as FlowError).retryable !== data.retryable) setField(error, 'retryable', data.retryable);
    }
  } else if (user !== undefined) {
    error = new user(data.message, { cause, code: data.code });
    if ((error as { code?: unknown }).code !== data.code) setField(error, 'code', data.code);
  } else {
    const native = classNamed(nativeErrorClasses, data.name);
    error = new (native ?? Error)(data.message, cause === undefined ? undefined : { cause });
    if (native === undefined) error.name = data.name;
    setField(error, 'code', data.code);
  }
  if (data.stack !== undefined) error.stack = data.stack;
  return error;
}

/** A class of `classes` by its own key: a name such as `constructor` or `__proto__` is no class of them. */
function classNamed<C>(classes: Readonly<Record<string, C | undefined>>, name: string): C | undefined {
  return Object.hasOwn(classes, name) ? classes[name] : undefined;
}

function setField(error: Error, field: string, value: unknown): void {
  Object.defineProperty(error, field, { value, enumerable: true, writable: true, configurable: true });
}

function codeOf(error: Error): string {
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string' && code !== '') return code;
  if (typeof code === 'number') return String(code);
  return ErrorCode.UNKNOWN;
}

function describeThrown(value: unknown): string {
  if (typeof value === 'string') return value;
  try {
    return `non-error value thrown: ${JSON.stringify(value) ?? String(value)}`;
  } catch {
    return `non-error value thrown: ${String(value)}`;
  }
}
