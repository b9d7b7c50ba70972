import { describe, expect, it } from 'vitest';
import { ErrorCode, FlowError } from '../../src/errors/errors.js';
import { decodeCompact, encodeCompact } from '../../src/storage/codec.js';

describe('the compact codec', () => {
  it('writes plain JSON data as JSON and reads it back equal', () => {
    const value = { a: [1, 'two', { three: null, four: true }], n: -1.5, s: 'ü🚀' };
    const text = encodeCompact(value);
    expect(text).toBe(JSON.stringify(value));
    expect(decodeCompact(text)).toStrictEqual(value);
  });

  it.each([
    ['a Date', { at: new Date(5) }],
    ['undefined in an object', { missing: undefined }],
    ['undefined in an array', [1, undefined, 3]],
    ['-0', { n: -0 }],
    ['NaN', { n: Number.NaN }],
    ['a BigInt', 5n],
    ['a Map', new Map([[1, 2]])],
    ['a class instance', new (class Point { x = 1 })()],
    ['undefined itself', undefined],
  ])('falls back to superjson for %s, which round-trips', (_name, value) => {
    const text = encodeCompact(value);
    expect(text.startsWith('~')).toBe(true);
    expect(decodeCompact(text)).toStrictEqual(value instanceof Object && value.constructor.name === 'Point' ? { x: 1 } : value);
  });

  it('rejects text that is neither with WEIR_CORRUPT_RECORD naming the key', () => {
    for (const text of ['{"json": nope', '~garbage']) {
      let thrown: unknown;
      try {
        decodeCompact(text, 'r1/a');
      } catch (error) {
        thrown = error;
      }
      expect(thrown).toBeInstanceOf(FlowError);
      expect((thrown as FlowError).code).toBe(ErrorCode.CORRUPT_RECORD);
      expect((thrown as FlowError).message).toContain('"r1/a"');
    }
  });
});
