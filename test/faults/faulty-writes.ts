/**
 * A run store wrapper (through the context's test seam) that counts every write and throws at the
 * ones a fault names: the n-th write of a kind (or of any kind), once or several times in a row,
 * with a retryable store `FlowError` as a failing backend gives, or a plain `Error`. It throws before
 * the write reaches the store, so nothing of a refused write is stored.
 */
import { ErrorCode, RetryableError } from '../../src/errors/errors.js';
import type { RunStore } from '../../src/storage/journal/run-store.js';
import { WRITE_KINDS, type WriteKind } from '../property/programs/store-writes.js';

export type { WriteKind };

/** One fault: the writes `at` to `at + times - 1` (counted from 1) of kind `on` throw `error`. */
export interface WriteFault {
  readonly on: WriteKind | 'any';
  readonly at: number;
  readonly times: number;
  readonly error: 'store' | 'plain';
}

/** The faults armed on the stores it wraps, and what they saw. */
export class WriteFaults {
  readonly #faults: readonly WriteFault[];
  /** Writes seen, by kind and in all. */
  readonly counts: Record<WriteKind | 'any', number> = { create: 0, commit: 0, lease: 0, input: 0, any: 0 };
  /** Writes refused, by kind. */
  readonly thrown: Record<WriteKind, number> = { create: 0, commit: 0, lease: 0, input: 0 };
  /** Hears each write the store took. */
  written: ((kind: WriteKind) => void) | undefined;

  constructor(faults: readonly WriteFault[]) {
    this.#faults = faults;
  }

  /** How many writes were refused. */
  get injected(): number {
    return Object.values(this.thrown).reduce((a, b) => a + b, 0);
  }

  /** `store`, with every write counted and checked first (everything else passes through, bound to it). */
  wrap(store: RunStore): RunStore {
    return new Proxy(store, {
      get: (target, key, receiver) => {
        const value: unknown = Reflect.get(target, key, receiver);
        if (typeof value !== 'function') return value;
        const kind = typeof key === 'string' ? WRITE_KINDS[key] : undefined;
        const method = (value as (...args: unknown[]) => unknown).bind(target);
        if (kind === undefined) return method;
        return async (...args: unknown[]) => {
          this.#check(kind, String(key));
          const result = await method(...args);
          this.written?.(kind);
          return result;
        };
      },
    });
  }

  #check(kind: WriteKind, method: string): void {
    this.counts.any++;
    this.counts[kind]++;
    const fault = this.#faults.find((f) => {
      const n = f.on === 'any' ? this.counts.any : f.on === kind ? this.counts[kind] : 0;
      return n >= f.at && n < f.at + f.times;
    });
    if (fault === undefined) return;
    this.thrown[kind]++;
    const n = this.counts.any;
    if (fault.error === 'plain') throw new Error(`injected: write ${n} (${method}) failed`);
    throw new RetryableError(`run store (sqlite): ${method}: injected fault at write ${n}`, { code: ErrorCode.STORE, cause: new Error('injected') });
  }
}
