/**
 * Turns values into strings and back, so Dates, Maps, Sets, BigInts and Buffers survive: plain JSON
 * data as JSON, anything else with superjson, which is loaded only when a value first needs it.
 */
import { Buffer } from 'node:buffer';
import { createRequire } from 'node:module';
import type SuperJSON from 'superjson';
import { ErrorCode, FlowError } from '../errors/errors.js';
import { messageOf } from '../util/message-of.js';
import type { StoredEntry } from './kv/backend.js';

let instance: SuperJSON | undefined;

/**
 * Our superjson, loaded on first use (synchronously: `encode` and `decode` are; superjson is an ES
 * module, which `require` loads from Node 20.19). A private instance, so registering Buffer does not
 * change the global superjson users may have.
 */
function superjson(): SuperJSON {
  if (instance !== undefined) return instance;
  const { default: SuperJSONClass } = createRequire(import.meta.url)('superjson') as typeof import('superjson');
  const made = new SuperJSONClass();
  made.registerCustom<Buffer, string>(
    {
      isApplicable: (v): v is Buffer => Buffer.isBuffer(v),
      serialize: (v) => v.toString('base64'),
      deserialize: (v) => Buffer.from(v, 'base64'),
    },
    'Buffer',
  );
  return (instance = made);
}

/** Keys the run journal keeps in a shared Keyv store start with this; `cleanup` leaves them to `prune`. */
export const JOURNAL_PREFIX = 'weir.journal/';

function corrupt(key: string | undefined, why: string, cause?: unknown): FlowError {
  const what = key === undefined ? 'record' : `record ${JSON.stringify(key)}`;
  return new FlowError(`results: ${what} is corrupt and cannot be read: ${why}`, {
    code: ErrorCode.CORRUPT_RECORD,
    cause,
  });
}

/** Where a value holds something no codec can write, and what it is. */
export interface LossyPart {
  /** What would be lost: `a function`, `a symbol`, `a WeakMap`, `a Promise`... */
  readonly what: string;
  /** Where, from the value's root: `.a.b[2]`, or `''` for the value itself. */
  readonly path: string;
}

/**
 * The first part of `value` that no codec can write without losing it (a function, a symbol, a
 * weak collection, a promise), or `undefined`. Much cheaper than encoding: it only walks the value.
 */
export function findLossy(value: unknown): LossyPart | undefined {
  // Primitives, the usual case, need no walk.
  if (typeof value !== 'object' && typeof value !== 'function' && typeof value !== 'symbol') return undefined;
  if (value === null) return undefined;
  // Plain JSON data, the usual case, holds nothing lossy: known without the walk's allocations.
  if (plainJson(value)) return undefined;
  const found = walkLossy(value, undefined);
  return found === undefined ? undefined : { what: found.what, path: found.path.reverse().join('') };
}

/** `WEIR_SERIALIZATION` for a value holding `lossy`; `key` names the value. */
export function lossyError(lossy: LossyPart, key?: string): FlowError {
  return new FlowError(`results: ${named(key)} cannot be serialised: ${lossy.what} at ${lossy.path || '(the value itself)'} would be lost`, {
    code: ErrorCode.SERIALIZATION,
  });
}

/**
 * Throws the error `encode` would for a value that holds something no codec can write; does not
 * encode it, so it may still hold what superjson itself refuses (a getter that throws).
 * @throws FlowError `WEIR_SERIALIZATION` naming where the part is.
 */
export function checkLossless(value: unknown, key?: string): void {
  const lossy = findLossy(value);
  if (lossy !== undefined) throw lossyError(lossy, key);
}

function named(key: string | undefined): string {
  return key === undefined ? 'value' : `value for ${JSON.stringify(key)}`;
}

/**
 * Serialises `value` to a string.
 * @throws FlowError `WEIR_SERIALIZATION` when superjson cannot serialise it.
 */
export function encode(value: unknown, key?: string): string {
  // superjson drops what it cannot write (a function, a symbol, a WeakMap); stored, that would be lost silently.
  checkLossless(value, key);
  return stringify(value, key);
}

function stringify(value: unknown, key: string | undefined): string {
  let tree: boolean;
  try {
    tree = isPlainTree(value, 0, undefined);
  } catch {
    tree = false; // a throwing getter: superjson reports it
  }
  // What superjson writes for such a value, without loading it.
  return tree ? `{"json":${JSON.stringify(value)}}` : superjsonString(value, key);
}

function superjsonString(value: unknown, key: string | undefined): string {
  // Loaded outside the try: failing to load it says nothing about the value.
  const serializer = superjson();
  try {
    return serializer.stringify(value);
  } catch (error) {
    throw new FlowError(`results: ${named(key)} cannot be serialised: ${messageOf(error)}`, {
      code: ErrorCode.SERIALIZATION,
      cause: error,
    });
  }
}

/** The walk of `findLossy`; the path's parts are collected on the way back, so only in reverse. */
function walkLossy(value: unknown, seen: Set<object> | undefined): { what: string; path: string[] } | undefined {
  if (typeof value === 'function') return { what: 'a function', path: [] };
  if (typeof value === 'symbol') return { what: 'a symbol', path: [] };
  if (typeof value !== 'object' || value === null || seen?.has(value) === true) return undefined;
  const proto = Object.getPrototypeOf(value) as unknown;
  // Plain objects and arrays, the usual case, skip the class checks.
  if (proto !== Object.prototype && proto !== Array.prototype && proto !== null) {
    if (value instanceof WeakMap || value instanceof WeakSet || value instanceof WeakRef) return { what: `a ${value.constructor.name}`, path: [] };
    if (value instanceof Promise) return { what: 'a Promise', path: [] };
    if (ArrayBuffer.isView(value) || value instanceof Date || value instanceof RegExp) return undefined;
  }
  seen ??= new Set();
  seen.add(value);
  if (value instanceof Map) {
    for (const [k, v] of value) {
      const inKey = walkLossy(k, seen);
      if (inKey !== undefined) return within(inKey, '<key>');
      const inValue = walkLossy(v, seen);
      if (inValue !== undefined) return within(inValue, `.get(${JSON.stringify(String(k))})`);
    }
    return undefined;
  }
  if (value instanceof Set) {
    for (const v of value) {
      const found = walkLossy(v, seen);
      if (found !== undefined) return within(found, '<item>');
    }
    return undefined;
  }
  const isArray = Array.isArray(value);
  for (const k of Object.keys(value)) {
    let v: unknown;
    try {
      v = (value as Record<string, unknown>)[k];
    } catch {
      return undefined; // a throwing getter: superjson reports it
    }
    const found = walkLossy(v, seen);
    if (found !== undefined) return within(found, isArray ? `[${k}]` : `.${k}`);
  }
  return undefined;
}

function within(found: { what: string; path: string[] }, part: string): { what: string; path: string[] } {
  found.path.push(part);
  return found;
}

/**
 * Reads a string written by `encode`; `key` only names the record in the error.
 * @throws FlowError `WEIR_CORRUPT_RECORD` when the text is not valid.
 */
export function decode(text: string, key?: string): unknown {
  let payload: { json?: unknown; meta?: unknown } | null;
  try {
    payload = JSON.parse(text) as { json?: unknown; meta?: unknown } | null;
  } catch (error) {
    throw corrupt(key, messageOf(error), error);
  }
  // Without `meta` superjson gives `json` back as it is: no need to load it.
  if (typeof payload === 'object' && payload !== null && payload.meta === undefined) return payload.json;
  // Loaded outside the try: failing to load it says nothing about the record.
  const serializer = superjson();
  try {
    return serializer.deserialize(payload as Parameters<SuperJSON['deserialize']>[0], { inPlace: true });
  } catch (error) {
    throw corrupt(key, messageOf(error), error);
  }
}

/** The string a durable backend stores for one entry: its key, time and value. */
export function encodeRecord(key: string, entry: StoredEntry): string {
  // Checked apart from its envelope, so the error names where in the value, not in the record.
  checkLossless(entry.value, key);
  return stringify({ k: key, t: entry.writtenAt, v: entry.value }, key);
}

/**
 * Reads a string from `encodeRecord`; with `key`, the record must belong to it.
 * @throws FlowError `WEIR_CORRUPT_RECORD` when it is not a valid record (for that key).
 */
export function decodeRecord(text: unknown, key?: string): { key: string; entry: StoredEntry } {
  if (typeof text !== 'string') throw corrupt(key, `expected a string, got ${typeof text}`);
  const record = decode(text, key) as { k?: unknown; t?: unknown; v?: unknown } | null | undefined;
  if (typeof record !== 'object' || record === null || typeof record.k !== 'string' || typeof record.t !== 'number' || !('v' in record)) {
    throw corrupt(key, 'expected a { k, t, v } record');
  }
  if (key !== undefined && record.k !== key) throw corrupt(key, `the record belongs to ${JSON.stringify(record.k)}`);
  return { key: record.k, entry: { value: record.v, writtenAt: record.t } };
}

const COMPACT_DEPTH = 32;

/**
 * Whether superjson would write `value` as `{"json": value}`, with no `meta`: plain JSON data
 * (see `isPlainJson`) in which no object or array appears twice (superjson records shared
 * references) and no key is `constructor` or `prototype` (superjson refuses them).
 */
function isPlainTree(value: unknown, depth: number, seen: Set<object> | undefined): boolean {
  if (typeof value !== 'object' || value === null) return isPlainJson(value, depth);
  if (depth > COMPACT_DEPTH || seen?.has(value) === true) return false;
  seen ??= new Set();
  seen.add(value);
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      if (!(i in value) || !isPlainTree(value[i], depth + 1, seen)) return false;
    }
    return true;
  }
  const proto = Object.getPrototypeOf(value) as unknown;
  if (proto !== Object.prototype && proto !== null) return false;
  for (const key in value) {
    if (key === '__proto__' || key === 'constructor' || key === 'prototype') return false;
    if (!isPlainTree((value as Record<string, unknown>)[key], depth + 1, seen)) return false;
  }
  return true;
}

// Whether JSON.stringify and JSON.parse give the value back exactly: plain objects and arrays of
// strings, finite numbers (not -0), booleans and null; no undefined, no holes, no class instances.
function isPlainJson(value: unknown, depth: number): boolean {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return true;
    case 'number':
      return Number.isFinite(value) && !Object.is(value, -0);
    case 'object': {
      if (value === null) return true;
      if (depth > COMPACT_DEPTH) return false;
      if (Array.isArray(value)) {
        for (let i = 0; i < value.length; i++) {
          if (!(i in value) || !isPlainJson(value[i], depth + 1)) return false;
        }
        return true;
      }
      const proto = Object.getPrototypeOf(value) as unknown;
      if (proto !== Object.prototype && proto !== null) return false;
      for (const key in value) {
        if (key === '__proto__' || !isPlainJson((value as Record<string, unknown>)[key], depth + 1)) return false;
      }
      return true;
    }
    default:
      return false;
  }
}

/** `isPlainJson` from the top; false for a value whose getter throws. */
function plainJson(value: unknown): boolean {
  try {
    return isPlainJson(value, 0);
  } catch {
    return false; // a throwing getter: superjson reports it
  }
}

/** `value` as JSON when it is plain JSON data (as `encodeCompact` would write it), else `undefined`. */
export function plainJsonText(value: unknown): string | undefined {
  return plainJson(value) ? JSON.stringify(value) : undefined;
}

/**
 * Like `encode`, but plain JSON data is written as JSON (several times faster than superjson), and
 * anything else as `~` followed by superjson. Read it back with `decodeCompact`.
 * @throws FlowError `WEIR_SERIALIZATION` when superjson cannot serialise it.
 */
export function encodeCompact(value: unknown, key?: string): string {
  if (plainJson(value)) return JSON.stringify(value);
  checkLossless(value, key);
  return `~${superjsonString(value, key)}`;
}

/**
 * Reads a string written by `encodeCompact`; `key` only names the record in the error.
 * @throws FlowError `WEIR_CORRUPT_RECORD` when the text is not valid.
 */
export function decodeCompact(text: string, key?: string): unknown {
  if (text.startsWith('~')) return decode(text.slice(1), key);
  try {
    return JSON.parse(text);
  } catch (error) {
    throw corrupt(key, messageOf(error), error);
  }
}
