import { createHash } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { Keyv, type KeyvStoreAdapter } from 'keyv';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ErrorCode } from '../../src/errors/errors.js';
import type { StoredEntry } from '../../src/storage/kv/backend.js';
import { encode, encodeRecord } from '../../src/storage/codec.js';
import { MemoryBackend } from '../../src/storage/kv/memory-backend.js';
import { ResultsManager, runStoreOf } from '../../src/results/results-manager.js';
import { KvRunStore } from '../../src/storage/journal/kv-run-store.js';
import type { RunStore } from '../../src/storage/journal/run-store.js';
import { SqliteRunStore } from '../../src/storage/journal/sqlite/sqlite-run-store.js';
import { event, newRun, rejection, runStart, stepRecord, T0 } from './helpers.js';

let dir: string;
const closers: (() => Promise<void>)[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'weir-store-corrupt-'));
});

afterEach(async () => {
  await Promise.all(closers.splice(0).map((close) => close()));
  await rm(dir, { recursive: true, force: true });
});

type Part = 'run' | 'step' | 'event';

/** Each durable store, with a way to damage one record of run r1 behind its back. */
const damaged = [
  {
    kind: 'sqlite',
    open: () => new SqliteRunStore(join(dir, 'runs.db')),
    corrupt: async (part: Part) => {
      const db = new Database(join(dir, 'runs.db'));
      const sql = {
        run: "UPDATE weir_runs SET input = 'garbage' WHERE run_id = 'r1'",
        // Step records ride on the last event of their commit.
        step: "UPDATE weir_events SET records = 'garbage' WHERE run_id = 'r1' AND records IS NOT NULL",
        event: `UPDATE weir_events SET data = '{"json": nope' WHERE run_id = 'r1' AND seq = 2`,
      }[part];
      db.prepare(sql).run();
      db.close();
    },
    keys: { run: '"r1"', step: '"r1#2 records"', event: '"r1#2"' },
  },
  {
    kind: 'disk',
    open: () => {
      const results = ResultsManager.disk(join(dir, 'results'));
      return { store: runStoreOf(results), close: () => results.close() };
    },
    corrupt: async (part: Part) => {
      const where: Record<Part, readonly [string, string]> = {
        run: ['runs', 'weir.journal/run/"r1"'],
        step: ['data', 'weir.journal/step/["r1","a"]'],
        event: ['data', 'weir.journal/events/"r1"/0'],
      };
      const [sub, key] = where[part];
      const name = createHash('sha256').update(key).digest('hex');
      await writeFile(join(dir, 'results', 'journal', sub, `${name}.json`), '{"json": not json');
    },
    keys: { run: 'run/\\"r1\\"', step: 'step/[\\"r1\\",\\"a\\"]', event: 'events/\\"r1\\"/0' },
  },
] as const;

describe.each(damaged)('a corrupt record in the $kind store', ({ open, corrupt, keys }) => {
  let store: RunStore;

  beforeEach(async () => {
    const opened = open();
    if ('store' in opened) {
      store = opened.store;
      closers.push(opened.close);
    } else {
      store = opened;
      closers.push(() => opened.close());
    }
    for (const runId of ['r1', 'r2']) {
      const token = (await store.createRun(newRun(runId), [runStart(runId)])).leaseToken;
      await store.commit({ runId, leaseToken: token, steps: [stepRecord(runId, 'a')], outputs: [{ step: 'a', value: 1 }], events: [event(runId, 2)] });
    }
    // Let the store's own writes settle before the record is damaged behind its back.
    await store.readEvents('r1');
  });

  it.each(['run', 'step', 'event'] as const)('fails with WEIR_CORRUPT_RECORD naming the %s record, and other runs stay readable', async (part) => {
    await corrupt(part);
    const read = part === 'event' ? store.readEvents('r1') : store.loadRun('r1');
    const error = await rejection(read);
    expect(error.code).toBe(ErrorCode.CORRUPT_RECORD);
    expect(error.message).toContain(`${part} record`);
    expect(error.message).toContain(keys[part]);
    const other = await store.loadRun('r2');
    expect(other?.steps).toHaveLength(1);
    await expect(store.getOutput('r2', 'a')).resolves.toEqual({ value: 1 });
    await expect(store.readEvents('r2')).resolves.toHaveLength(2);
    const listed = await store.listRuns({ now: T0 });
    expect(listed.runs.map((r) => r.runId)).toContain('r2');
  });
});

describe('a corrupt output in the sqlite store', () => {
  it('fails getOutput with WEIR_CORRUPT_RECORD naming the output record', async () => {
    const store = new SqliteRunStore(join(dir, 'runs.db'));
    closers.push(() => store.close());
    const token = (await store.createRun(newRun('r1'))).leaseToken;
    await store.commit({ runId: 'r1', leaseToken: token, steps: [stepRecord('r1', 'a')], outputs: [{ step: 'a', value: 1 }] });
    const db = new Database(join(dir, 'runs.db'));
    db.prepare("UPDATE weir_outputs SET value = 'garbage'").run();
    db.close();
    const error = await rejection(store.getOutput('r1', 'a'));
    expect(error.code).toBe(ErrorCode.CORRUPT_RECORD);
    expect(error.message).toContain('output record "r1/a"');
  });

  it('fails loadRun with WEIR_CORRUPT_RECORD naming a step record stored without events', async () => {
    const store = new SqliteRunStore(join(dir, 'runs.db'));
    closers.push(() => store.close());
    const token = (await store.createRun(newRun('r1'))).leaseToken;
    await store.commit({ runId: 'r1', leaseToken: token, steps: [stepRecord('r1', 'a')], outputs: [{ step: 'a', value: 1 }] });
    const db = new Database(join(dir, 'runs.db'));
    db.prepare("UPDATE weir_steps SET data = 'garbage'").run();
    db.close();
    const error = await rejection(store.loadRun('r1'));
    expect(error.code).toBe(ErrorCode.CORRUPT_RECORD);
    expect(error.message).toContain('step record "r1/a"');
  });

  it('fails getOutput with WEIR_CORRUPT_RECORD naming the records an event carries when they are corrupt', async () => {
    const store = new SqliteRunStore(join(dir, 'runs.db'));
    closers.push(() => store.close());
    const token = (await store.createRun(newRun('r1'), [runStart('r1')])).leaseToken;
    await store.commit({ runId: 'r1', leaseToken: token, steps: [stepRecord('r1', 'a')], outputs: [{ step: 'a', value: 1 }], events: [event('r1', 2)] });
    const db = new Database(join(dir, 'runs.db'));
    db.prepare('UPDATE weir_events SET records = \'{"s": 1}\' WHERE seq = 2').run();
    db.close();
    const error = await rejection(store.getOutput('r1', 'a'));
    expect(error.code).toBe(ErrorCode.CORRUPT_RECORD);
    expect(error.message).toContain('step record "r1#2 records"');
    await expect(store.readEvents('r1')).resolves.toHaveLength(2);
  });

  it('fails readInputs with WEIR_CORRUPT_RECORD naming the input entry, and other runs\' entries stay readable', async () => {
    const store = new SqliteRunStore(join(dir, 'runs.db'));
    closers.push(() => store.close());
    for (const runId of ['r1', 'r2']) {
      await store.createRun(newRun(runId));
      await store.putInput(runId, { key: 'approve', outcome: 'answered', value: { ok: true }, at: T0 });
    }
    const db = new Database(join(dir, 'runs.db'));
    db.prepare("UPDATE weir_inputs SET value = '{\"json\": nope' WHERE run_id = 'r1'").run();
    db.close();
    const error = await rejection(store.readInputs('r1'));
    expect(error.code).toBe(ErrorCode.CORRUPT_RECORD);
    expect(error.message).toContain('input record "r1/approve"');
    await expect(store.readInputs('r2')).resolves.toEqual([{ key: 'approve', outcome: 'answered', value: { ok: true }, at: T0 }]);
  });
});

describe('a corrupt record in a Keyv store', () => {
  it('fails with WEIR_CORRUPT_RECORD naming the step record', async () => {
    const keyv = new Keyv();
    const results = ResultsManager.keyv(keyv);
    closers.push(() => results.close());
    const store = runStoreOf(results);
    const token = (await store.createRun(newRun('r1'))).leaseToken;
    await store.commit({ runId: 'r1', leaseToken: token, steps: [stepRecord('r1', 'a')], outputs: [{ step: 'a', value: 1 }] });
    await keyv.set('weir.journal/step/["r1","a"]', 'garbage');
    const error = await rejection(store.loadRun('r1'));
    expect(error.code).toBe(ErrorCode.CORRUPT_RECORD);
    expect(error.message).toContain('step record');
  });

  it('fails readInputs with WEIR_CORRUPT_RECORD naming the input entry that cannot be read', async () => {
    const keyv = new Keyv();
    const results = ResultsManager.keyv(keyv);
    closers.push(() => results.close());
    const store = runStoreOf(results);
    await store.createRun(newRun('r1'));
    await store.putInput('r1', { key: 'approve', outcome: 'answered', value: 1, at: T0 });
    // A well-formed record whose one entry is not.
    const key = 'weir.journal/inputs/"r1"';
    await keyv.set(key, encodeRecord(key, { value: encode([['approve', '{"json": nope']]), writtenAt: T0 }));
    const error = await rejection(store.readInputs('r1'));
    expect(error.code).toBe(ErrorCode.CORRUPT_RECORD);
    expect(error.message).toContain('input record');
    expect(error.message).toContain('approve');
  });

  it('rejects listRuns with WEIR_UNSUPPORTED when the store cannot be iterated', async () => {
    const map = new Map<string, unknown>();
    const adapter = {
      get: async (key: string) => map.get(key),
      set: async (key: string, value: unknown) => void map.set(key, value),
      delete: async (key: string) => map.delete(key),
      clear: async () => map.clear(),
    } as unknown as KeyvStoreAdapter;
    const results = ResultsManager.keyv(new Keyv({ store: adapter }));
    closers.push(() => results.close());
    const store = runStoreOf(results);
    await store.createRun(newRun('r1'));
    await expect(store.loadRun('r1')).resolves.toBeDefined();
    const error = await rejection(store.listRuns({ now: T0 }));
    expect(error.code).toBe(ErrorCode.UNSUPPORTED);
    expect(error.message).toContain('cannot be iterated');
  });
});

/** A memory backend whose writes fail, as a crash between two writes would cut them, while `failing` matches. */
class FlakyBackend extends MemoryBackend {
  failing: ((key: string) => boolean) | undefined;
  override async set(key: string, entry: StoredEntry): Promise<void> {
    if (this.failing?.(key) === true) throw new Error(`write of ${key} cut short`);
    return super.set(key, entry);
  }
}

describe('KvRunStore, a commit cut short between two writes', () => {
  async function setUp() {
    const backend = new FlakyBackend();
    const store = new KvRunStore({ runs: backend });
    closers.push(() => store.close());
    const token = (await store.createRun(newRun('r1'), [runStart('r1')])).leaseToken;
    const batch = {
      runId: 'r1',
      leaseToken: token,
      run: { status: 'completed' as const, endedAt: T0 + 9 },
      steps: [stepRecord('r1', 'a')],
      outputs: [{ step: 'a', value: 'out' }],
      events: [event('r1', 2, 'step_complete')],
    };
    return { backend, store, token, batch };
  }

  it('after its events: keeps step and events, and recomputes lastSeq from the event chunks', async () => {
    const { backend, store, token, batch } = await setUp();
    let runWrites = 0;
    // The first write of the run record (adding the step's name) goes through; the last one fails.
    backend.failing = (key) => key.startsWith('weir.journal/run/') && ++runWrites === 2;
    const error = await rejection(store.commit(batch));
    expect(error.code).toBe(ErrorCode.STORE);
    backend.failing = undefined;
    const loaded = await store.loadRun('r1');
    expect(loaded?.steps).toEqual([stepRecord('r1', 'a')]);
    expect(loaded?.run.status).toBe('running'); // the run patch was lost: recovery derives it from the steps
    expect(loaded?.run.lastSeq).toBe(2);
    await expect(store.getOutput('r1', 'a')).resolves.toEqual({ value: 'out' });
    expect((await store.readEvents('r1')).map((e) => e.seq)).toEqual([1, 2]);
    await store.commit({ runId: 'r1', leaseToken: token, events: [event('r1', 3)] });
    expect((await store.readEvents('r1')).map((e) => e.seq)).toEqual([1, 2, 3]);
  });

  it('before its events: keeps the step, loses the events, and the seq goes on from the last stored one', async () => {
    const { backend, store, token, batch } = await setUp();
    backend.failing = (key) => key.startsWith('weir.journal/events/');
    await rejection(store.commit(batch));
    backend.failing = undefined;
    const loaded = await store.loadRun('r1');
    expect(loaded?.steps).toEqual([stepRecord('r1', 'a')]);
    expect(loaded?.run.lastSeq).toBe(1);
    await expect(store.getOutput('r1', 'a')).resolves.toEqual({ value: 'out' });
    await store.commit({ runId: 'r1', leaseToken: token, events: [event('r1', 2)] });
    expect((await store.readEvents('r1')).map((e) => e.seq)).toEqual([1, 2]);
  });

  it('before its step record: writes nothing but the step name, which reads as absent', async () => {
    const { backend, store, batch } = await setUp();
    backend.failing = (key) => key.startsWith('weir.journal/step/');
    await rejection(store.commit(batch));
    backend.failing = undefined;
    const loaded = await store.loadRun('r1');
    expect(loaded?.steps).toEqual([]);
    expect(loaded?.run.lastSeq).toBe(1);
  });
});
