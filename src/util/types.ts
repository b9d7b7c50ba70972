/** Small shared type and object helpers. */

/** `T` with its `readonly` modifiers removed, for building a value step by step. */
export type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/** A copy of `value` without the keys whose value is `undefined`. */
export function stripUndefined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}
