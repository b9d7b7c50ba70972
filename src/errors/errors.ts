/**
 * The FlowError hierarchy: every error weir throws or records is one of these, with a stable
 * `code` and a `retryable` flag that drives the retry decision.
 */
import { describeValue, invalidOptions, type OptionProblem } from '../util/parse.js';

/** Stable error codes, one per failure weir can report. `docs/errors.md` has one row per code. */
export const ErrorCode = {
  FLOW: 'WEIR_FLOW_ERROR',
  FATAL: 'WEIR_FATAL',
  RETRYABLE: 'WEIR_RETRYABLE',
  INPUT_REQUIRED: 'WEIR_INPUT_REQUIRED',
  TIMEOUT: 'WEIR_TIMEOUT',
  RUN_TIMEOUT: 'WEIR_RUN_TIMEOUT',
  CANCELLED: 'WEIR_CANCELLED',
  CYCLE: 'WEIR_CYCLE',
  DEPENDENCY: 'WEIR_DEPENDENCY',
  DUPLICATE_NAME: 'WEIR_DUPLICATE_NAME',
  ALREADY_REGISTERED: 'WEIR_ALREADY_REGISTERED',
  VALIDATION: 'WEIR_VALIDATION',
  INVALID_CONFIG: 'WEIR_INVALID_CONFIG',
  INVALID_OPTIONS: 'WEIR_INVALID_OPTIONS',
  UPSTREAM_FAILED: 'WEIR_UPSTREAM_FAILED',
  CONTEXT_CLOSED: 'WEIR_CONTEXT_CLOSED',
  RUN_NOT_FOUND: 'WEIR_RUN_NOT_FOUND',
  RUN_CONFLICT: 'WEIR_RUN_CONFLICT',
  STORE: 'WEIR_STORE',
  STORE_CLOSED: 'WEIR_STORE_CLOSED',
  STORE_REPLACED: 'WEIR_STORE_REPLACED',
  CORRUPT_RECORD: 'WEIR_CORRUPT_RECORD',
  SERIALIZATION: 'WEIR_SERIALIZATION',
  UNSUPPORTED: 'WEIR_UNSUPPORTED',
  PROCESSOR_MODULE: 'WEIR_PROCESSOR_MODULE',
  PROCESSOR_EXPORT: 'WEIR_PROCESSOR_EXPORT',
  PROCESSOR_STATE: 'WEIR_PROCESSOR_STATE',
  PROCESSOR_CONSTRUCTOR: 'WEIR_PROCESSOR_CONSTRUCTOR',
  WORKER_CRASHED: 'WEIR_WORKER_CRASHED',
  LEASE_LOST: 'WEIR_LEASE_LOST',
  EVENT_SEQ: 'WEIR_EVENT_SEQ',
  RUN_STATE: 'WEIR_RUN_STATE',
  RECOVERY_LIMIT: 'WEIR_RECOVERY_LIMIT',
  FLOW_CHANGED: 'WEIR_FLOW_CHANGED',
  FLOW_NOT_REGISTERED: 'WEIR_FLOW_NOT_REGISTERED',
  OWNER_LOST: 'WEIR_OWNER_LOST',
  INPUT_TIMEOUT: 'WEIR_INPUT_TIMEOUT',
  INPUT_WAITING: 'WEIR_INPUT_WAITING',
  INPUT_NOT_AWAITED: 'WEIR_INPUT_NOT_AWAITED',
  INPUT_ANSWERED: 'WEIR_INPUT_ANSWERED',
  UNKNOWN: 'WEIR_UNKNOWN',
  ROUTE_NOT_FOUND: 'WEIR_ROUTE_NOT_FOUND',
  METHOD_NOT_ALLOWED: 'WEIR_METHOD_NOT_ALLOWED',
  BODY_TOO_LARGE: 'WEIR_BODY_TOO_LARGE',
  UNSUPPORTED_MEDIA_TYPE: 'WEIR_UNSUPPORTED_MEDIA_TYPE',
  UNAUTHORIZED: 'WEIR_UNAUTHORIZED',
  FORBIDDEN: 'WEIR_FORBIDDEN',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/**
 * Stable codes of the warnings weir emits with `process.emitWarning`, for trouble it works around
 * rather than throws (see `process.on('warning')`). `docs/errors.md` has one row per code.
 * @example
 * process.on('warning', (w) => {
 *   if ((w as { code?: string }).code === WarningCode.LEASE_RENEWAL) alert(w.message);
 * });
 */
export const WarningCode = {
  /** A listener given to `ctx.on` threw; the other listeners and the run go on. */
  LISTENER_ERROR: 'WEIR_LISTENER_ERROR',
  /** A run could not be recovered, nor (sometimes) be marked failed; `recover()` goes on with the others. */
  RECOVERY: 'WEIR_RECOVERY',
  /** Renewing the leases of this context's runs failed; it tries again on its next turn. */
  LEASE_RENEWAL: 'WEIR_LEASE_RENEWAL',
  /** Releasing a run's lease failed; the lease runs out by itself. */
  LEASE_RELEASE: 'WEIR_LEASE_RELEASE',
  /** A run waiting for input could not go on after an answer or a timeout; `recover()` tries again. */
  INPUT: 'WEIR_INPUT',
  /** That a wait for input expired could not be recorded. */
  INPUT_EXPIRY: 'WEIR_INPUT_EXPIRY',
  /** An idle worker thread failed; the pool replaces it. */
  WORKER_ERROR: 'WEIR_WORKER_ERROR',
  /** A `thread` or `process` step's heartbeat details cannot be stored; the heartbeat counts without them. */
  HEARTBEAT_DETAILS: 'WEIR_HEARTBEAT_DETAILS',
  /** A function given to `ctx.beforeClose` threw; the context closes all the same. */
  CLOSE_HOOK: 'WEIR_CLOSE_HOOK',
} as const;
export type WarningCode = (typeof WarningCode)[keyof typeof WarningCode];

/** Options every FlowError constructor takes. */
export interface FlowErrorOptions {
  /** The error that caused this one; kept as the native `cause`. */
  readonly cause?: unknown;
  /** Overrides the class's default code, for example a domain code of your own. */
  readonly code?: string;
}

const KIND = Symbol.for('weir.error.kind');
const KINDS = Symbol.for('weir.error.kinds');

function collectKinds(ctor: unknown): string[] {
  const kinds: string[] = [];
  for (let c = ctor as { [KIND]?: string } | null; c && c !== Function.prototype; c = Object.getPrototypeOf(c)) {
    if (Object.hasOwn(c, KIND) && c[KIND] !== undefined) kinds.push(c[KIND]);
  }
  return kinds;
}

/**
 * The base of every weir error. `instanceof` holds across two copies of the package (a
 * `Symbol.for` brand), so a class check works whichever copy threw.
 */
export class FlowError extends Error {
  static readonly [KIND]: string = 'FlowError';
  /** A stable string code, such as `WEIR_TIMEOUT`. */
  readonly code: string;
  /** Whether the retry policy may try the step again. */
  readonly retryable: boolean = false;
  declare readonly [KINDS]: readonly string[];

  constructor(message: string, options: FlowErrorOptions = {}) {
    checkErrorArguments(new.target, message, options);
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'FlowError';
    this.code = options.code ?? ErrorCode.FLOW;
    Object.defineProperty(this, KINDS, { value: collectKinds(new.target), enumerable: false });
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    if (Function.prototype[Symbol.hasInstance].call(this, value)) return true;
    if (!Object.hasOwn(this, KIND) || typeof value !== 'object' || value === null) return false;
    const kinds = (value as { [KINDS]?: unknown })[KINDS];
    return Array.isArray(kinds) && kinds.includes((this as { [KIND]?: string })[KIND]);
  }
}

/** An error that must never be retried: invalid input, auth, exhausted resources. */
export class FatalError extends FlowError {
  static override readonly [KIND] = 'FatalError';
  constructor(message: string, options: FlowErrorOptions = {}) {
    super(message, withCode(new.target, options, ErrorCode.FATAL));
    this.name = 'FatalError';
  }
}

/** A transient failure (an unavailable service, a lost connection): the retry policy applies. */
export class RetryableError extends FlowError {
  static override readonly [KIND] = 'RetryableError';
  override readonly retryable: boolean = true;
  constructor(message: string, options: FlowErrorOptions = {}) {
    super(message, withCode(new.target, options, ErrorCode.RETRYABLE));
    this.name = 'RetryableError';
  }
}

/** A step needed a person's input and none could be had (for example in `batch` mode). */
export class InputRequiredError extends FlowError {
  static override readonly [KIND] = 'InputRequiredError';
  constructor(message: string, options: FlowErrorOptions = {}) {
    super(message, withCode(new.target, options, ErrorCode.INPUT_REQUIRED));
    this.name = 'InputRequiredError';
  }
}

/** A step attempt or a run took longer than its timeout. Retryable. */
export class TimeoutError extends FlowError {
  static override readonly [KIND] = 'TimeoutError';
  override readonly retryable: boolean = true;
  /** The limit that was exceeded, in milliseconds. */
  readonly timeout: number | undefined;
  constructor(message: string, options: FlowErrorOptions & { readonly timeout?: number } = {}) {
    super(message, withCode(new.target, options, ErrorCode.TIMEOUT));
    this.name = 'TimeoutError';
    this.timeout = options.timeout;
  }
}

/** A run or step was cancelled (`ctx.cancel`, an aborted signal, or `close()`). */
export class CancelledError extends FlowError {
  static override readonly [KIND] = 'CancelledError';
  constructor(message: string, options: FlowErrorOptions = {}) {
    super(message, withCode(new.target, options, ErrorCode.CANCELLED));
    this.name = 'CancelledError';
  }
}

/** Registering a dependency would close a cycle; `.cycle` names the flows in order. */
export class CycleError extends FlowError {
  static override readonly [KIND] = 'CycleError';
  /** The flows on the cycle, each depending on the next; the first is repeated at the end. */
  readonly cycle: readonly string[];
  constructor(message: string, options: FlowErrorOptions & { readonly cycle?: readonly string[] } = {}) {
    super(message, withCode(new.target, options, ErrorCode.CYCLE));
    this.name = 'CycleError';
    this.cycle = Object.freeze([...(options.cycle ?? [])]);
  }
}

/** A dependency is unknown, missing, or not a sibling. */
export class DependencyError extends FlowError {
  static override readonly [KIND] = 'DependencyError';
  /** The dependency that could not be resolved, where there is one. */
  readonly dependency: string | undefined;
  constructor(message: string, options: FlowErrorOptions & { readonly dependency?: string } = {}) {
    super(message, withCode(new.target, options, ErrorCode.DEPENDENCY));
    this.name = 'DependencyError';
    this.dependency = options.dependency;
  }
}

/** One problem found by a schema, as zod reports it. */
export interface ValidationIssue {
  readonly code?: string;
  readonly path: readonly PropertyKey[];
  readonly message: string;
}

/** A value failed its schema: run input, step output, a FlowConfig or an options object. */
export class ValidationError extends FlowError {
  static override readonly [KIND] = 'ValidationError';
  /** The schema issues, as zod reported them. */
  readonly issues: readonly ValidationIssue[];
  constructor(message: string, options: FlowErrorOptions & { readonly issues?: readonly ValidationIssue[] } = {}) {
    super(message, withCode(new.target, options, ErrorCode.VALIDATION));
    this.name = 'ValidationError';
    this.issues = Object.freeze([...(options.issues ?? [])]);
  }
}

/** A required dependency failed, so this step was skipped; `.upstream` names the failed flow. */
export class UpstreamFailedError extends FlowError {
  static override readonly [KIND] = 'UpstreamFailedError';
  /** The name of the flow whose failure caused the skip. */
  readonly upstream: string | undefined;
  constructor(message: string, options: FlowErrorOptions & { readonly upstream?: string } = {}) {
    super(message, withCode(new.target, options, ErrorCode.UPSTREAM_FAILED));
    this.name = 'UpstreamFailedError';
    this.upstream = options.upstream;
  }
}

/** The options as a subclass passes them on: with its default code, once checked to be options (so `null` or `5` is not spread away). */
function withCode(target: { readonly name: string }, options: unknown, code: string): FlowErrorOptions {
  checkErrorArguments(target, '', options);
  const given = options as FlowErrorOptions | undefined;
  return { ...given, code: given?.code ?? code };
}

/** What each field of a constructor's options takes; unknown fields are left alone (a subclass may take more). */
const OPTION_FIELDS: Readonly<Record<string, { readonly expected: string; readonly ok: (value: unknown) => boolean }>> = {
  code: { expected: 'a non-empty string', ok: (v) => typeof v === 'string' && v !== '' },
  timeout: { expected: 'a number of milliseconds >= 0', ok: (v) => typeof v === 'number' && v >= 0 },
  cycle: { expected: 'an array of flow names', ok: (v) => Array.isArray(v) && v.every((n) => typeof n === 'string') },
  dependency: { expected: 'a string', ok: (v) => typeof v === 'string' },
  upstream: { expected: 'a string', ok: (v) => typeof v === 'string' },
  issues: { expected: 'an array of issues ({ path, message, code? })', ok: (v) => Array.isArray(v) && v.every(isIssue) },
};

/**
 * An error class's constructor arguments, checked before anything is built, so a bad one is named
 * rather than thrown as a `TypeError` (or spread away).
 * @throws ValidationError `WEIR_INVALID_OPTIONS` naming the argument or option.
 */
function checkErrorArguments(target: { readonly name: string }, message: unknown, options: unknown): void {
  const problems: OptionProblem[] = [];
  if (message !== undefined && typeof message !== 'string') problems.push({ path: ['message'], expected: 'a string', got: describeValue(message) });
  if (options !== undefined && (typeof options !== 'object' || options === null || Array.isArray(options))) {
    problems.push({ path: ['options'], expected: 'an object ({ cause?, code? })', got: describeValue(options) });
  } else if (options !== undefined) {
    for (const [field, check] of Object.entries(OPTION_FIELDS)) {
      const value = (options as Record<string, unknown>)[field];
      if (value !== undefined && !check.ok(value)) problems.push({ path: ['options', field], expected: check.expected, got: describeValue(value) });
    }
  }
  if (problems.length > 0) throw invalidOptions(`new ${target.name || 'FlowError'}()`, problems);
}

function isIssue(value: unknown): boolean {
  const issue = value as { path?: unknown; message?: unknown } | null;
  return typeof issue === 'object' && issue !== null && Array.isArray(issue.path) && typeof issue.message === 'string';
}

/** The built-in classes by name, for rebuilding errors that crossed a boundary. */
export const builtinErrorClasses = {
  FlowError,
  FatalError,
  RetryableError,
  InputRequiredError,
  TimeoutError,
  CancelledError,
  CycleError,
  DependencyError,
  ValidationError,
  UpstreamFailedError,
} as const;

/** Turns zod issues into `ValidationIssue`s and a one-line summary such as `text: expected string`. */
export function describeIssues(issues: readonly ValidationIssue[]): string {
  return issues
    .map((i) => `${i.path.length > 0 ? i.path.map(String).join('.') : '(root)'}: ${i.message}`)
    .join('; ');
}
