/**
 * A run store whose every failure is a `FlowError`, for a store given through the test seam
 * (`weir/testing`'s `t.failStore`, a test's wrapper): what it throws that is not one (a plain
 * `Error`, a string) becomes a retryable `WEIR_STORE` with it as the `cause`, as weir's own stores
 * report a failing backend. So `submitInput`, `resume` and the rest reject with a coded error there
 * as they do in production.
 * @internal
 */
import type { RunStore } from './run-store.js';
import { wrapError } from './store-support.js';

/** `store`, with what its methods throw or reject with made a `FlowError`. */
export function codedStore(store: RunStore): RunStore {
  const coded = (method: string, error: unknown): Error => wrapError(store.kind, `${method} failed`, error);
  return new Proxy(store, {
    get(target, key, receiver) {
      // Every commit goes through the seam's `commit`, which a test may have wrapped: never around it.
      if (key === 'commitNow') return undefined;
      const value: unknown = Reflect.get(target, key, receiver);
      if (typeof value !== 'function' || typeof key !== 'string') return value;
      const method = value as (...args: unknown[]) => unknown;
      return (...args: unknown[]): unknown => {
        let result: unknown;
        try {
          result = method.apply(target, args);
        } catch (error) {
          throw coded(key, error);
        }
        return result instanceof Promise ? result.catch((error: unknown) => Promise.reject(coded(key, error))) : result;
      };
    },
  });
}
