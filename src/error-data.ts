/**
 * The one serialise/deserialise pair for errors: a thrown value becomes plain data (for
 * `FlowResult.error`, events, the store and, later, worker messages) and is rebuilt by class name.
 */
import { builtinErrorClasses, ErrorCode, FlowError, type ValidationIssue } from './errors.js';

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
}

const MAX_CAUSE_DEPTH = 5;
const DETAIL_FIELDS = ['cycle', 'upstream', 'timeout', 'dependency'] as const;

const userClasses = new Map<string, new (message: string, options?: any) => Error>();

/**
 * Registers an error class so that an error of that class, recorded as data, is rebuilt as the
 * same class (by its `name`). Built-in weir classes are always known.
 */
export function registerErrorClass(ctor: new (message: string, options?: any) => Error, name = ctor.name): void {
  userClasses.set(name, ctor);
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
    name: error.name,
    message: error.message,
    code: codeOf(error),
    retryable: error instanceof FlowError ? error.retryable : false,
  };
  if (error.stack !== undefined) data.stack = error.stack;
  if (error.cause !== undefined && depth < MAX_CAUSE_DEPTH) data.cause = toErrorData(error.cause, depth + 1);
  const record = error as unknown as Record<string, unknown>;
  if (Array.isArray(record.issues)) data.issues = record.issues as ValidationIssue[];
  const details: Record<string, unknown> = {};
  for (const field of DETAIL_FIELDS) if (record[field] !== undefined) details[field] = record[field];
  if (Object.keys(details).length > 0) data.details = details;
  return data;
}

/** Rebuilds an `Error` of the recorded class (built-in or registered), with code, stack and cause. */
export function fromErrorData(data: ErrorData): Error {
  const cause = data.cause === undefined ? undefined : fromErrorData(data.cause);
  const builtin = (builtinErrorClasses as Record<string, (new (m: string, o?: any) => FlowError) | undefined>)[data.name];
  let error: Error;
  if (builtin !== undefined) {
    error = new builtin(data.message, { cause, code: data.code, issues: data.issues, ...data.details });
  } else {
    const ctor = userClasses.get(data.name);
    error = ctor === undefined ? new Error(data.message, cause === undefined ? undefined : { cause }) : new ctor(data.message, { cause });
    if (ctor === undefined) error.name = data.name;
    if (!(error instanceof FlowError)) Object.defineProperty(error, 'code', { value: data.code, enumerable: true, writable: true });
  }
  if (data.stack !== undefined) error.stack = data.stack;
  return error;
}

function codeOf(error: Error): string {
  const code = (error as { code?: unknown }).code;
  if (typeof code === 'string') return code;
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
