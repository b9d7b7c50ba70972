import { Buffer } from 'node:buffer';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KeyvSqlite } from '@keyv/sqlite';
import Database from 'better-sqlite3';
import { Keyv, type KeyvStoreAdapter } from 'keyv';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ErrorCode, FlowError, ValidationError } from '../../src/errors/errors.js';
import { ResultsManager } from '../../src/results/results-manager.js';

let dir: string;
const managers: ResultsManager[] = [];

/** Registers a manager so afterEach closes it. */
function track(manager: ResultsManager): ResultsManager {
  managers.push(manager);
  return manager;
}

/** Resolves to the FlowError `promise` rejects with; fails the test if it resolves. */
async function rejection(promise: Promise<unknown>): Promise<FlowError> {
  const outcome = await promise.then(
    (value: unknown) => ({ resolved: value }),
    (error: unknown) => ({ error }),
  );
  if (!('error' in outcome)) throw new Error(`expected a rejection, got ${String(outcome.resolved)}`);
  expect(outcome.error).toBeInstanceOf(FlowError);
  return outcome.error as FlowError;
}

/**
 * Runs one SQL statement on `file` through its own connection. better-sqlite3, as the store uses:
 * a second copy of SQLite in one process does not see the first's locks (sqlite.org/howtocorrupt.html, 2.2.1).
 */
async function sql(file: string, statement: string): Promise<Record<string, unknown>[]> {
  const db = new Database(file);
  try {
    const prepared = db.prepare(statement);
    if (prepared.reader) return prepared.all() as Record<string, unknown>[];
    prepared.run();
    return [];
  } finally {
    db.close();
  }
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'weir-results-'));
});

afterEach(async () => {
  vi.useRealTimers();
  await Promise.all(managers.splice(0).map((m) => m.close()));
  await rm(dir, { recursive: true, force: true });
});

const backends = [
  { kind: 'memory', durable: false, open: () => ResultsManager.memory() },
  { kind: 'disk', durable: true, open: () => ResultsManager.disk(join(dir, 'results')) },
  { kind: 'sqlite', durable: true, open: () => ResultsManager.sqlite(join(dir, 'results.db')) },
  {
    kind: 'keyv',
    durable: true,
    open: () => ResultsManager.keyv(new Keyv({ store: new KeyvSqlite(`sqlite://${join(dir, 'keyv.db')}`) })),
  },
] as const;

describe.each(backends)('ResultsManager.$kind', ({ kind, durable, open }) => {
  let results: ResultsManager;
  beforeEach(() => {
    results = track(open());
  });

  it('reports its kind and whether it is durable', () => {
    expect(results.kind).toBe(kind);
    expect(results.durable).toBe(durable);
  });

  it('resolves undefined for a key that was never set', async () => {
    await expect(results.get('run1/never')).resolves.toBeUndefined();
    await expect(results.has('run1/never')).resolves.toBe(false);
  });

  it('round-trips Dates, Maps, Sets, BigInts, Buffers, nested objects and unicode strings', async () => {
    const value = {
      when: new Date('2024-02-29T12:34:56.789Z'),
      byName: new Map<string, unknown>([['a', 1], ['nested', new Map([[2, new Set([3n])]])]]),
      tags: new Set(['x', 'y']),
      big: 12345678901234567890n,
      buf: Buffer.from('héllo'),
      bytes: new Uint8Array([1, 2, 255]),
      list: [1, 'two', { three: [null, true, undefined] }],
      nothing: null,
      missing: undefined,
      text: 'ünïcödé ✓ 日本語 🚀',
      pattern: /a+b/gi,
    };
    await results.set('run1/parse', value);
    const back = await results.get<typeof value>('run1/parse');
    expect(back).toStrictEqual(value);
    expect(Buffer.isBuffer(back?.buf)).toBe(true);
    expect(back?.bytes).toBeInstanceOf(Uint8Array);
    expect(Buffer.isBuffer(back?.bytes)).toBe(false);
    expect(back && 'missing' in back).toBe(true);
  });

  it('stores null and top-level primitives as they are, null apart from a missing key', async () => {
    await results.set('null', null);
    await results.set('string', '');
    await results.set('number', -0.5);
    await results.set('bigint', -7n);
    await expect(results.get('null')).resolves.toBeNull();
    await expect(results.has('null')).resolves.toBe(true);
    await expect(results.get('string')).resolves.toBe('');
    await expect(results.get('number')).resolves.toBe(-0.5);
    await expect(results.get('bigint')).resolves.toBe(-7n);
  });

  it('replaces the value when a key is set again', async () => {
    await results.set('run1/step', { v: 1 });
    await results.set('run1/step', { v: 2 });
    await expect(results.get('run1/step')).resolves.toEqual({ v: 2 });
  });

  it('keeps keys with slashes, colons, dots and different case apart', async () => {
    const keys = ['run1/parse', 'run1:parse', 'keyv:run1', '..', '.', 'A', 'a', 'x'.repeat(300)];
    for (const key of keys) await results.set(key, `value of ${key}`);
    for (const key of keys) await expect(results.get(key)).resolves.toBe(`value of ${key}`);
  });

  it('deletes a key, resolving true the first time and false after', async () => {
    await results.set('run1/gone', 1);
    await expect(results.delete('run1/gone')).resolves.toBe(true);
    await expect(results.delete('run1/gone')).resolves.toBe(false);
    await expect(results.get('run1/gone')).resolves.toBeUndefined();
  });

  it('reports with has() whether a key is stored', async () => {
    await results.set('run1/here', 0);
    await expect(results.has('run1/here')).resolves.toBe(true);
    await results.delete('run1/here');
    await expect(results.has('run1/here')).resolves.toBe(false);
  });

  it('cleans up only entries older than an age and resolves to how many it deleted', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(new Date('2024-01-01T00:00:00Z'));
    await results.set('old/1', 1);
    await results.set('old:2', 2);
    vi.setSystemTime(new Date('2024-01-01T00:01:00Z'));
    await results.set('new/1', 3);
    vi.setSystemTime(new Date('2024-01-01T00:01:30Z'));

    await expect(results.cleanup({ olderThan: 60_000 })).resolves.toBe(2);
    await expect(results.get('old/1')).resolves.toBeUndefined();
    await expect(results.get('old:2')).resolves.toBeUndefined();
    await expect(results.get('new/1')).resolves.toBe(3);
    await expect(results.cleanup({ olderThan: 60_000 })).resolves.toBe(0);
  });

  it('cleans up entries written before a Date cutoff', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(new Date('2024-01-01T00:00:00Z'));
    await results.set('before', 1);
    vi.setSystemTime(new Date('2024-01-02T00:00:00Z'));
    await results.set('at', 2);

    await expect(results.cleanup({ olderThan: new Date('2024-01-02T00:00:00Z') })).resolves.toBe(1);
    await expect(results.has('before')).resolves.toBe(false);
    await expect(results.has('at')).resolves.toBe(true);
  });

  it('rejects an empty key or a negative age with WEIR_INVALID_OPTIONS', async () => {
    const badKey = await rejection(results.get(''));
    expect(badKey).toBeInstanceOf(ValidationError);
    expect(badKey.code).toBe(ErrorCode.INVALID_OPTIONS);
    expect(badKey.message).toContain('get: key: expected a non-empty string, got ""');
    const badAge = await rejection(results.cleanup({ olderThan: -1 }));
    expect(badAge.code).toBe(ErrorCode.INVALID_OPTIONS);
    expect(badAge.message).toContain('cleanup: olderThan: expected an age in milliseconds >= 0 or a valid Date, got -1');
  });

  it('rejects every call with WEIR_STORE_CLOSED naming the backend after close, and close is idempotent', async () => {
    await results.set('run1/a', 1);
    await results.close();
    await expect(results.close()).resolves.toBeUndefined();
    const calls = [
      results.get('run1/a'),
      results.set('run1/a', 2),
      results.delete('run1/a'),
      results.has('run1/a'),
      results.cleanup({ olderThan: 0 }),
    ];
    for (const call of calls) {
      const error = await rejection(call);
      expect(error.code).toBe(ErrorCode.STORE_CLOSED);
      expect(error.message).toContain(`results (${kind})`);
    }
  });
});

describe('ResultsManager.memory', () => {
  it('keeps values by reference, without copying', async () => {
    const results = track(ResultsManager.memory());
    const value = { list: [1] };
    await results.set('k', value);
    await expect(results.get('k')).resolves.toBe(value);
  });
});

describe('ResultsManager.disk', () => {
  it('creates nothing until the first write, then the directory recursively', async () => {
    const target = join(dir, 'a', 'b', 'results');
    const results = track(ResultsManager.disk(target));
    await expect(results.get('k')).resolves.toBeUndefined();
    await expect(results.cleanup({ olderThan: 0 })).resolves.toBe(0);
    expect(existsSync(target)).toBe(false);
    await results.set('k', 1);
    expect(existsSync(target)).toBe(true);
  });

  it('persists values across two managers on the same directory', async () => {
    const first = track(ResultsManager.disk(join(dir, 'results')));
    await first.set('run1/parse', new Map([['when', new Date(0)]]));
    await first.close();
    const second = track(ResultsManager.disk(join(dir, 'results')));
    await expect(second.get('run1/parse')).resolves.toEqual(new Map([['when', new Date(0)]]));
  });

  it('leaves exactly one file per key and no temporary files', async () => {
    const results = track(ResultsManager.disk(join(dir, 'results')));
    await Promise.all([results.set('a', 1), results.set('a', 2), results.set('b', 3)]);
    const names = await readdir(join(dir, 'results'));
    expect(names).toHaveLength(2);
    expect(names.every((n) => /^[0-9a-f]{64}\.json$/.test(n))).toBe(true);
  });

  it('rejects a corrupt file with WEIR_CORRUPT_RECORD naming the key', async () => {
    const results = track(ResultsManager.disk(join(dir, 'results')));
    await results.set('run1/parse', { ok: true });
    const [name] = await readdir(join(dir, 'results'));
    await writeFile(join(dir, 'results', name ?? ''), '{"json": not json');
    const error = await rejection(results.get('run1/parse'));
    expect(error.code).toBe(ErrorCode.CORRUPT_RECORD);
    expect(error.message).toContain('record "run1/parse" is corrupt');
    await expect(results.cleanup({ olderThan: 0 })).resolves.toBe(0);
  });

  it('rejects a file-system failure with WEIR_STORE naming the key, the original error as cause', async () => {
    await writeFile(join(dir, 'not-a-dir'), '');
    const results = track(ResultsManager.disk(join(dir, 'not-a-dir')));
    const error = await rejection(results.set('run1/parse', 1));
    expect(error.code).toBe(ErrorCode.STORE);
    expect(error.message).toMatch(/^results \(disk\): could not write "run1\/parse": /);
    expect((error.cause as NodeJS.ErrnoException).code).toMatch(/EEXIST|ENOTDIR/);
  });
});

describe('ResultsManager.sqlite', () => {
  it('creates nothing until the first call, then the parent directory and the file', async () => {
    const file = join(dir, 'nested', 'dir', 'runs.db');
    const results = track(ResultsManager.sqlite(file));
    expect(existsSync(join(dir, 'nested'))).toBe(false);
    await expect(results.get('k')).resolves.toBeUndefined();
    expect(existsSync(file)).toBe(true);
  });

  it('puts the file in WAL mode on first use and really closes it on close()', async () => {
    const file = join(dir, 'runs.db');
    const results = track(ResultsManager.sqlite(file, { synchronous: 'FULL' }));
    await results.set('k', 1);
    await expect(sql(file, 'PRAGMA journal_mode')).resolves.toEqual([{ journal_mode: 'wal' }]);
    expect(existsSync(`${file}-wal`)).toBe(true);
    await results.close();
    // SQLite removes the WAL file when the last connection closes.
    expect(existsSync(`${file}-wal`)).toBe(false);
  });

  it('persists values across two managers on the same file', async () => {
    const file = join(dir, 'runs.db');
    const first = track(ResultsManager.sqlite(file));
    await first.set('run1/parse', { at: new Date(5), ids: new Set([1n]) });
    await first.close();
    const second = track(ResultsManager.sqlite(file));
    await expect(second.get('run1/parse')).resolves.toEqual({ at: new Date(5), ids: new Set([1n]) });
  });

  it('stores rows in the table named by the table option', async () => {
    const file = join(dir, 'runs.db');
    const results = track(ResultsManager.sqlite(file, { table: 'my_results' }));
    await results.set('run1/parse', 1);
    await results.close();
    await expect(sql(file, 'SELECT count(*) AS n FROM my_results')).resolves.toEqual([{ n: 1 }]);
  });

  it('rejects a corrupt row with WEIR_CORRUPT_RECORD naming the key', async () => {
    const file = join(dir, 'runs.db');
    const first = track(ResultsManager.sqlite(file));
    await first.set('run1/parse', 1);
    await first.close();
    await sql(file, "UPDATE weir_results SET value = 'garbage'");
    const second = track(ResultsManager.sqlite(file));
    const error = await rejection(second.get('run1/parse'));
    expect(error.code).toBe(ErrorCode.CORRUPT_RECORD);
    expect(error.message).toContain('record "run1/parse" is corrupt');
    await expect(second.cleanup({ olderThan: 0 })).resolves.toBe(0);
  });

  it('rejects a file it cannot open with WEIR_STORE, the sqlite error as cause', async () => {
    const results = track(ResultsManager.sqlite(dir));
    const error = await rejection(results.set('run1/parse', 1));
    expect(error.code).toBe(ErrorCode.STORE);
    expect(error.message).toMatch(/^results \(sqlite\): could not write "run1\/parse": .*SQLITE_CANTOPEN/);
    expect((error.cause as { code?: string }).code).toBe('SQLITE_CANTOPEN');
  });
});

describe('ResultsManager.keyv', () => {
  it('rejects a value the Keyv holds that is not our record with WEIR_CORRUPT_RECORD', async () => {
    const keyv = new Keyv();
    const results = track(ResultsManager.keyv(keyv));
    await keyv.set('run1/parse', 'garbage');
    const error = await rejection(results.get('run1/parse'));
    expect(error.code).toBe(ErrorCode.CORRUPT_RECORD);
    expect(error.message).toContain('record "run1/parse" is corrupt');
  });

  it('rejects a row Keyv itself cannot deserialise with WEIR_CORRUPT_RECORD', async () => {
    const store = new KeyvSqlite(`sqlite://${join(dir, 'keyv.db')}`);
    const results = track(ResultsManager.keyv(new Keyv({ store })));
    await store.set('keyv:run1/parse', 'not json');
    const error = await rejection(results.get('run1/parse'));
    expect(error.code).toBe(ErrorCode.CORRUPT_RECORD);
  });

  it('cleans up keys with colons in a Keyv without a namespace', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(0);
    const results = track(ResultsManager.keyv(new Keyv({ namespace: '' })));
    await results.set('run1:parse', 1);
    await results.set('plain', 2);
    vi.setSystemTime(10_000);
    await expect(results.cleanup({ olderThan: 5_000 })).resolves.toBe(2);
    await expect(results.has('run1:parse')).resolves.toBe(false);
  });

  it('rejects cleanup with WEIR_UNSUPPORTED when the store cannot be iterated', async () => {
    const map = new Map<string, unknown>();
    const store = {
      get: async (key: string) => map.get(key),
      set: async (key: string, value: unknown) => void map.set(key, value),
      delete: async (key: string) => map.delete(key),
      clear: async () => map.clear(),
    } as unknown as KeyvStoreAdapter;
    const results = track(ResultsManager.keyv(new Keyv({ store })));
    await results.set('k', 1);
    await expect(results.get('k')).resolves.toBe(1);
    const error = await rejection(results.cleanup({ olderThan: 0 }));
    expect(error.code).toBe(ErrorCode.UNSUPPORTED);
    expect(error.message).toContain('cannot be iterated');
  });

  it('rejects a write the store fails with WEIR_STORE, the store error as cause', async () => {
    const boom = new Error('disk full');
    const store = new Map() as unknown as KeyvStoreAdapter;
    store.set = () => Promise.reject(boom);
    const results = track(ResultsManager.keyv(new Keyv({ store, throwOnErrors: true })));
    const error = await rejection(results.set('run1/parse', 1));
    expect(error.code).toBe(ErrorCode.STORE);
    expect(error.message).toBe('results (keyv): could not write "run1/parse": disk full');
    expect(error.cause).toBe(boom);
  });

  it('disconnects the Keyv it was given on close, once', async () => {
    const keyv = new Keyv();
    const disconnect = vi.spyOn(keyv, 'disconnect');
    const results = track(ResultsManager.keyv(keyv));
    await results.set('k', 1);
    await results.close();
    await results.close();
    expect(disconnect).toHaveBeenCalledTimes(1);
  });
});

describe('ResultsManager factories', () => {
  it('throw ValidationError WEIR_INVALID_OPTIONS naming the bad argument', () => {
    const cases: [() => unknown, string][] = [
      [() => ResultsManager.disk(''), 'ResultsManager.disk(): dir: expected a non-empty path, got ""'],
      [() => ResultsManager.sqlite(''), 'ResultsManager.sqlite(): file: expected a non-empty path, got ""'],
      [
        () => ResultsManager.sqlite('x.db', { synchronous: 'fast' as 'FULL' }),
        'ResultsManager.sqlite(): options.synchronous: expected "NORMAL" or "FULL", got "fast"',
      ],
      [
        () => ResultsManager.sqlite('x.db', { cache: true } as object),
        'ResultsManager.sqlite(): options.cache: expected one of the options table, synchronous or busyTimeout, got an unknown option',
      ],
      [() => ResultsManager.sqlite('x.db', { table: 'a-b' }), 'options.table: expected a SQL identifier (letters, digits and _, not starting with a digit), got "a-b"'],
      [() => ResultsManager.sqlite('x.db', { busyTimeout: -1 }), 'options.busyTimeout: expected a whole number of milliseconds >= 0, got -1'],
      [() => ResultsManager.keyv(new Map() as unknown as Keyv), 'ResultsManager.keyv(): keyv: expected a Keyv instance, got a Map'],
      [() => ResultsManager.memory({ keepFinishedRuns: 1.5 }), 'ResultsManager.memory(): keepFinishedRuns: expected a whole number >= 0 or Infinity, got 1.5'],
      [() => ResultsManager.memory({ checkSerializable: 'no' as never }), 'ResultsManager.memory(): checkSerializable: expected true or false, got "no"'],
    ];
    for (const [call, message] of cases) {
      let thrown: unknown;
      try {
        call();
      } catch (error) {
        thrown = error;
      }
      expect(thrown).toBeInstanceOf(ValidationError);
      expect((thrown as ValidationError).code).toBe(ErrorCode.INVALID_OPTIONS);
      expect((thrown as ValidationError).message).toContain(message);
      expect((thrown as ValidationError).issues.length).toBeGreaterThan(0);
    }
    expect(existsSync('x.db')).toBe(false);
  });
});
