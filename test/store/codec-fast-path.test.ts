import { Buffer } from 'node:buffer';
import fc from 'fast-check';
import SuperJSON from 'superjson';
import { describe, expect, it } from 'vitest';
import { ErrorCode } from '../../src/errors/errors.js';
import { decode, encode } from '../../src/storage/codec.js';
import { fcParams } from '../support/property.js';

// The codec as it was before its JSON fast path: always superjson, with Buffer registered.
const reference = new SuperJSON();
reference.registerCustom<Buffer, string>(
  { isApplicable: (v): v is Buffer => Buffer.isBuffer(v), serialize: (v) => v.toString('base64'), deserialize: (v) => Buffer.from(v, 'base64') },
  'Buffer',
);

/** Plain JSON data, sometimes holding one of its own objects twice, a value JSON cannot carry, or a key superjson refuses. */
const values: fc.Arbitrary<unknown> = fc.oneof(
  { arbitrary: fc.jsonValue(), weight: 4 },
  fc.jsonValue().map((shared) => ({ a: shared, b: [shared] })),
  fc.tuple(fc.jsonValue(), fc.constantFrom(new Date(5), new Map([[1, 2]]), new Set(['x']), 5n, undefined, Number.NaN, -0, Buffer.from('hi'))).map(([json, odd]) => ({ json, odd })),
  fc.jsonValue().map((json) => ({ constructor: json })),
  fc.jsonValue().map((json) => ({ nested: { prototype: json } })),
);

describe('the codec', () => {
  it('writes exactly what superjson writes, and reads it back as superjson does', () => {
    fc.assert(
      fc.property(values, (value) => {
        let expected: string | undefined;
        try {
          expected = reference.stringify(value);
        } catch {
          expected = undefined;
        }
        if (expected === undefined) {
          expect(() => encode(value)).toThrow(expect.objectContaining({ code: ErrorCode.SERIALIZATION }));
          return;
        }
        expect(encode(value)).toBe(expected);
        expect(decode(expected)).toStrictEqual(reference.parse(expected));
      }),
      fcParams(300),
    );
  });

  it('keeps shared references and cycles through superjson', () => {
    const shared = { n: 1 };
    const read = decode(encode({ a: shared, b: shared })) as { a: object; b: object };
    expect(read.a).toBe(read.b);
    const cyclic: Record<string, unknown> = { n: 1 };
    cyclic.self = cyclic;
    const back = decode(encode(cyclic)) as Record<string, unknown>;
    expect(back.self).toBe(back);
  });

  it('reports text that is not a record as WEIR_CORRUPT_RECORD', () => {
    for (const text of ['{"json": nope', 'null']) {
      expect(() => decode(text, 'k')).toThrow(expect.objectContaining({ code: ErrorCode.CORRUPT_RECORD }));
    }
  });
});
