/**
 * What the fuzz tests of the public API share: bad values made on demand (so a cyclic object or a
 * symbol is new for each call, and a counterexample prints as a short label, not a 5 MB string),
 * what each option takes, the error codes docs/errors.md documents, and the one check of a refusal.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { expect } from 'vitest';
import { FlowError } from '../../src/index.js';
import { describeValue, formatPath } from '../../src/util/parse.js';

/** A bad value: `make()` builds a fresh one; fast-check shows `label`. */
export interface Bad {
  readonly label: string;
  make(): unknown;
}

function bad(label: string, make: () => unknown): Bad {
  return { label, make, [fc.toStringMethod]: () => label } as Bad;
}

/** An object that holds itself, and an array that holds itself. */
export function cyclicObject(): Record<string, unknown> {
  const value: Record<string, unknown> = { a: 1 };
  value.self = value;
  return value;
}

/** Objects with an own `__proto__`, `constructor` or `prototype` key, as JSON.parse makes them. */
export const POLLUTING = [
  '{"__proto__": {"polluted": true}}',
  '{"constructor": {"prototype": {"polluted": true}}}',
  '{"prototype": {"polluted": true}}',
] as const;

export const polluting: fc.Arbitrary<Bad> = fc.constantFrom(...POLLUTING).map((json) => bad(`JSON.parse('${json}')`, () => JSON.parse(json)));

/** 1 to 5 MB of text. */
export const huge: fc.Arbitrary<Bad> = fc
  .tuple(fc.integer({ min: 1 << 20, max: 5 << 20 }), fc.constantFrom('x', 'é', '/', '\u0000'))
  .map(([size, char]) => bad(`${JSON.stringify(char)}.repeat(${size})`, () => char.repeat(size)));

class WithMethods {
  value = 1;
  method(): number {
    return this.value;
  }
}

/** Values no store or structured clone keeps as they are. */
export const nonCloneable: fc.Arbitrary<Bad> = fc.constantFrom(
  bad('a function', () => () => 1),
  bad('a symbol', () => Symbol('bad')),
  bad('a WeakMap', () => new WeakMap()),
  bad('a WeakSet', () => new WeakSet()),
  bad('a Promise', () => Promise.resolve(1)),
  bad('{ f: a function }', () => ({ f: () => 1 })),
  bad('[a symbol]', () => [Symbol('bad')]),
);

/** Numbers no count or duration takes. */
export const outOfRange: fc.Arbitrary<Bad> = fc.oneof(
  fc.constantFrom(-1, -0.5, 0.5, 1.5, NaN, Infinity, -Infinity, Number.MAX_VALUE, -Number.MAX_SAFE_INTEGER, 2 ** 53, 1e21).map((n) => bad(String(n), () => n)),
  fc.double({ noNaN: false }).map((n) => bad(String(n), () => n)),
  fc.integer({ min: -1_000_000, max: -1 }).map((n) => bad(String(n), () => n)),
);

/** Values of the wrong type for most options. */
export const wrongType: fc.Arbitrary<Bad> = fc.oneof(
  fc.string({ maxLength: 30 }).map((s) => bad(JSON.stringify(s), () => s)),
  fc.boolean().map((b) => bad(String(b), () => b)),
  fc.integer().map((n) => bad(String(n), () => n)),
  fc.bigInt({ min: -(2n ** 70n), max: 2n ** 70n }).map((n) => bad(`${n}n`, () => n)),
  fc.constantFrom(
    bad('null', () => null),
    bad('[]', () => []),
    bad('[1, "a"]', () => [1, 'a']),
    bad('{ unknown: 1 }', () => ({ unknown: 1 })),
    bad('new Date(NaN)', () => new Date(NaN)),
    bad('new Map()', () => new Map([['a', 1]])),
    bad('/re/', () => /re/),
    bad('a class instance with methods', () => new WithMethods()),
    bad('a cyclic object', cyclicObject),
    bad('Object.create(null) with a key', () => Object.assign(Object.create(null) as object, { unknown: 1 })),
  ),
);

/** Every kind of bad value. */
export const anyBad: fc.Arbitrary<Bad> = fc.oneof(
  { arbitrary: wrongType, weight: 5 },
  { arbitrary: outOfRange, weight: 3 },
  { arbitrary: nonCloneable, weight: 2 },
  { arbitrary: polluting, weight: 2 },
  { arbitrary: huge, weight: 1 },
);

/** What an option takes, as a predicate; a generated value that happens to pass it is not bad and is left out. */
export type Valid = (value: unknown) => boolean;

export const v = {
  int: (min: number, max = Number.MAX_SAFE_INTEGER): Valid => (x) => Number.isInteger(x) && (x as number) >= min && (x as number) <= max,
  num: (min: number, max = Infinity): Valid => (x) => typeof x === 'number' && x >= min && x <= max,
  str: (min = 0, max = Infinity, pattern?: RegExp): Valid => (x) => typeof x === 'string' && x.length >= min && x.length <= max && (pattern?.test(x) ?? true),
  bool: ((x) => typeof x === 'boolean') as Valid,
  fn: ((x) => typeof x === 'function') as Valid,
  oneOf: (...values: unknown[]): Valid => (x) => values.includes(x),
  or: (...valid: Valid[]): Valid => (x) => valid.some((ok) => ok(x)),
  date: ((x) => x instanceof Date && !Number.isNaN(x.getTime())) as Valid,
  strings: ((x) => Array.isArray(x) && x.every((s) => typeof s === 'string')) as Valid,
  none: (() => false) as Valid,
};

/** One option of an options object: where it is and what it takes. */
export interface OptionSpec {
  readonly path: readonly string[];
  readonly valid: Valid;
}

export const opt = (path: string, valid: Valid): OptionSpec => ({ path: path.split('.'), valid });

/** `{ a: { b: value } }` for the path `a.b`. */
export function nested(path: readonly string[], value: unknown): Record<string, unknown> {
  return path.reduceRight<Record<string, unknown>>((inner, key, i) => ({ [key]: i === path.length - 1 ? value : inner }), {});
}

/** A bad value for one option of `specs`, and the options object that holds it. */
export function badOption(specs: readonly OptionSpec[]): fc.Arbitrary<{ spec: OptionSpec; value: Bad }> {
  return fc
    .constantFrom(...specs)
    .chain((spec) => anyBad.filter((b) => !spec.valid(b.make())).map((value) => ({ spec, value })))
    .map((c) => Object.assign(c, { [fc.toStringMethod]: () => `${c.spec.path.join('.')} = ${c.value.label}` }));
}

/** A key no options object of weir takes, with a value. */
export function unknownKey(known: readonly string[]): fc.Arbitrary<string> {
  return fc.oneof(fc.constantFrom('__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', 'then'), fc.string({ minLength: 1, maxLength: 12 })).filter((k) => !known.includes(k));
}

/** Codes docs/errors.md documents, read from its table of error codes. */
export const DOCUMENTED_CODES: ReadonlySet<string> = (() => {
  const doc = readFileSync(join(import.meta.dirname, '..', '..', 'docs', 'errors.md'), 'utf8');
  const table = doc.slice(doc.indexOf('\n## Error codes'), doc.indexOf('\n## Warnings'));
  return new Set([...table.matchAll(/^\| `(WEIR_[A-Z_]+)` \|/gm)].map((m) => m[1]!));
})();

/** How many bad inputs this process tried: each `refusal` and each other checked call counts one. */
export const tried = { count: 0 };

/** What a refusal's message must say. */
export interface Expect {
  /** The option path (`retry.maxAttempts`); its clause must say `expected` and `got`. */
  readonly path?: readonly PropertyKey[];
  /** The value given: the message must show it as option messages do. */
  readonly given?: unknown;
  /** The code, when only one is right. */
  readonly code?: string;
}

/** Longest message a refusal may have: a 5 MB value given must be shown shortened. */
const MAX_MESSAGE = 4_000;

/** Checks a thrown value: a FlowError with a documented code, and a message that says what was wrong. */
export function expectFlowError(error: unknown, expected: Expect = {}): FlowError {
  tried.count++;
  if (!(error instanceof FlowError)) throw new Error(`expected a FlowError, got ${describeValue(error)}: ${String((error as Error | undefined)?.stack ?? error)}`);
  expect(DOCUMENTED_CODES.has(error.code), `${error.code} is not in docs/errors.md (${error.message})`).toBe(true);
  if (expected.code !== undefined) expect(error.code, error.message).toBe(expected.code);
  expect(error.message.length, error.message.slice(0, 300)).toBeLessThan(MAX_MESSAGE);
  if (expected.path !== undefined) {
    const path = formatPath(expected.path);
    // The clause of that option, or of an option under it (a cyclic object given for `retry` has unknown keys `retry.a`).
    const clause = error.message.split('; ').find((c) => new RegExp(`(^|: )${escape(path)}(\\.|\\[|: )`).test(c));
    expect(clause, `no clause for "${path}" in: ${error.message}`).toBeDefined();
    expect(clause).toMatch(/expected .+, got /);
    // Of the option itself (not of one under it), the value given is shown as option messages show values.
    if (expected.given !== undefined && new RegExp(`(^|: )${escape(path)}: `).test(clause!)) expect(clause).toContain(`got ${describeValue(expected.given)}`);
  }
  return error;
}

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Calls a synchronous API: it must throw (not return, not reject). */
export function refusedSync(call: () => unknown, expected?: Expect): FlowError {
  let result: unknown;
  try {
    result = call();
  } catch (error) {
    return expectFlowError(error, expected);
  }
  throw new Error(`expected a throw, got ${describeValue(result)}`);
}

/** How long a refused call may take to settle. */
const SETTLE_MS = 10_000;

/** Calls an API that returns a promise: it must reject within a bound, and never throw synchronously. */
export async function refusedAsync(call: () => unknown, expected?: Expect): Promise<FlowError> {
  let promise: unknown;
  try {
    promise = call();
  } catch (error) {
    throw new Error(`threw synchronously instead of rejecting: ${String((error as Error | undefined)?.message ?? error)}`);
  }
  if (!(promise instanceof Promise)) throw new Error(`expected a promise, got ${describeValue(promise)}`);
  const outcome = await settled(promise);
  if (outcome.status === 'fulfilled') throw new Error(`expected a rejection, got ${describeValue(outcome.value)}`);
  return expectFlowError(outcome.reason, expected);
}

/** A promise's outcome, or an error when it does not settle in time (a hang). */
export async function settled<T>(promise: Promise<T>, ms = SETTLE_MS): Promise<PromiseSettledResult<T>> {
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`did not settle within ${ms} ms`)), ms)));
  try {
    return await Promise.race([Promise.allSettled([promise]).then(([outcome]) => outcome), hang]);
  } finally {
    clearTimeout(timer);
  }
}

/** Whether generated objects reached `Object.prototype`. */
export function expectNoPollution(): void {
  expect(({} as { polluted?: unknown }).polluted).toBeUndefined();
  expect(Object.prototype).not.toHaveProperty('polluted');
}

/** Records unhandled rejections while the file runs; `check()` asserts there were none. */
export function watchUnhandled(): { start(): void; check(): void } {
  const seen: unknown[] = [];
  const listener = (reason: unknown): void => void seen.push(reason);
  return {
    start: () => void process.on('unhandledRejection', listener),
    check: () => {
      process.off('unhandledRejection', listener);
      expect(seen.map((r) => String((r as Error | undefined)?.stack ?? r))).toEqual([]);
    },
  };
}
