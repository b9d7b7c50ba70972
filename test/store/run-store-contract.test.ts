import { Buffer } from 'node:buffer';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Keyv } from 'keyv';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ErrorCode, RetryableError } from '../../src/errors/errors.js';
import { ResultsManager, runStoreOf } from '../../src/results/results-manager.js';
import { MemoryRunStore } from '../../src/storage/journal/memory-run-store.js';
import type { InputEntry, RunStore } from '../../src/storage/journal/run-store.js';
import type { WeirEvent } from '../../src/model/events.js';
import { SqliteRunStore } from '../../src/storage/journal/sqlite/sqlite-run-store.js';
import { ALICE, BOB, event, newRun, rejection, runStart, stepRecord, T0 } from './helpers.js';
import { postgresUrl, testDatabase } from '../support/postgres.js';

let dir: string;
const closers: (() => Promise<void>)[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'weir-store-'));
});

afterEach(async () => {
  await Promise.all(closers.splice(0).map((close) => close()));
  await rm(dir, { recursive: true, force: true });
});

function fromResults(results: ResultsManager): RunStore {
  closers.push(() => results.close());
  return runStoreOf(results);
}

const stores = [
  {
    kind: 'memory',
    open: (): RunStore => {
      const store = new MemoryRunStore();
      closers.push(() => store.close());
      return store;
    },
  },
  {
    kind: 'sqlite',
    open: (): RunStore => {
      const store = new SqliteRunStore(join(dir, 'runs.db'));
      closers.push(() => store.close());
      return store;
    },
  },
  { kind: 'disk', open: (): RunStore => fromResults(ResultsManager.disk(join(dir, 'results'))) },
  { kind: 'keyv', open: (): RunStore => fromResults(ResultsManager.keyv(new Keyv())) },
  // A schema of its own per test, in a database of this file's.
  { kind: 'postgres', open: (): RunStore => fromResults(ResultsManager.postgres(pg.url, { schema: `contract_${++schemas}` })) },
] as const;

let pg: { url: string; drop(): Promise<void> } = { url: '', drop: async () => undefined };
let schemas = 0;
const withPostgres = postgresUrl() !== '';
if (!withPostgres) console.warn('weir tests: the RunStore contract runs without its Postgres cases (WEIR_TEST_SKIP_POSTGRES=1)');

beforeAll(async () => {
  if (withPostgres) pg = await testDatabase();
});

afterAll(async () => {
  await pg.drop();
});

describe.each(stores.filter((s) => s.kind !== 'postgres' || withPostgres))('RunStore ($kind)', ({ open }) => {
  let store: RunStore;
  beforeEach(() => {
    store = open();
  });

  /** Creates run `runId` with its run_start event and resolves to its lease token. */
  async function started(runId: string, fields: Parameters<typeof newRun>[1] = {}): Promise<number> {
    return (await store.createRun(newRun(runId, fields), [runStart(runId)])).leaseToken;
  }

  describe('createRun and loadRun', () => {
    it('stores a run with its first events and fills in lastSeq, leaseToken and recoveries', async () => {
      const created = await store.createRun(newRun('r1'), [runStart('r1')]);
      expect(created).toMatchObject({ runId: 'r1', lastSeq: 1, leaseToken: 1, recoveries: 0, status: 'running', owner: ALICE });
      const loaded = await store.loadRun('r1');
      expect(loaded?.run).toEqual(created);
      expect(loaded?.steps).toEqual([]);
      await expect(store.readEvents('r1')).resolves.toEqual([runStart('r1')]);
    });

    it('refuses an existing runId with WEIR_RUN_CONFLICT and leaves the run as it was', async () => {
      await started('r1');
      const error = await rejection(store.createRun(newRun('r1', { flow: 'other' })));
      expect(error.code).toBe(ErrorCode.RUN_CONFLICT);
      expect(error.message).toContain('"r1" already exists');
      expect((await store.loadRun('r1'))?.run.flow).toBe('pipeline');
    });

    it('refuses first events that do not start at seq 1 with WEIR_EVENT_SEQ', async () => {
      const error = await rejection(store.createRun(newRun('r1'), [event('r1', 2)]));
      expect(error.code).toBe(ErrorCode.EVENT_SEQ);
      await expect(store.loadRun('r1')).resolves.toBeUndefined();
    });

    it('resolves undefined for a run, output or events that do not exist', async () => {
      await expect(store.loadRun('nope')).resolves.toBeUndefined();
      await expect(store.getOutput('nope', 'a')).resolves.toBeUndefined();
      await expect(store.readEvents('nope')).resolves.toEqual([]);
    });
  });

  describe('commit', () => {
    it('writes a step completion (step record, output, events) and advances lastSeq', async () => {
      const token = await started('r1');
      await store.commit({ runId: 'r1', leaseToken: token, steps: [stepRecord('r1', 'a', 'running')], events: [event('r1', 2)] });
      await store.commit({
        runId: 'r1',
        leaseToken: token,
        run: { updatedAt: T0 + 9 },
        steps: [stepRecord('r1', 'a')],
        outputs: [{ step: 'a', value: { words: 3 } }],
        events: [event('r1', 3, 'step_complete'), event('r1', 4, 'step_start', 'b')],
      });
      const loaded = await store.loadRun('r1');
      expect(loaded?.run).toMatchObject({ lastSeq: 4, updatedAt: T0 + 9 });
      expect(loaded?.steps).toEqual([stepRecord('r1', 'a')]);
      await expect(store.getOutput('r1', 'a')).resolves.toEqual({ value: { words: 3 } });
      expect((await store.readEvents('r1')).map((e) => e.seq)).toEqual([1, 2, 3, 4]);
    });

    it('round-trips Dates, Maps, Sets, BigInts, Buffers and nested objects in inputs and outputs', async () => {
      const value = {
        when: new Date('2024-02-29T12:34:56.789Z'),
        byName: new Map<string, unknown>([['nested', new Map([[2, new Set([3n])]])]]),
        tags: new Set(['x']),
        big: 12345678901234567890n,
        buf: Buffer.from('héllo'),
        deep: { list: [1, 'two', { three: [null, true] }], missing: undefined },
        text: 'ünïcödé 🚀',
      };
      const token = (await store.createRun(newRun('r1', { input: value }))).leaseToken;
      await store.commit({ runId: 'r1', leaseToken: token, steps: [stepRecord('r1', 'a')], outputs: [{ step: 'a', value }] });
      await store.commit({ runId: 'r1', leaseToken: token, steps: [stepRecord('r1', 'u')], outputs: [{ step: 'u', value: undefined }] });
      await store.commit({ runId: 'r1', leaseToken: token, run: { status: 'completed', output: { a: value } } });
      const loaded = await store.loadRun('r1');
      expect(loaded?.run.input).toStrictEqual(value);
      expect(loaded?.run.output).toStrictEqual({ a: value });
      const output = await store.getOutput('r1', 'a');
      expect(output?.value).toStrictEqual(value);
      expect(Buffer.isBuffer((output?.value as typeof value).buf)).toBe(true);
      await expect(store.getOutput('r1', 'u')).resolves.toEqual({ value: undefined });
    });

    it('applies a run patch: sets fields, and clears optional ones given as undefined', async () => {
      const token = await started('r1');
      const error = { name: 'FatalError', message: 'no', code: 'WEIR_FATAL', retryable: false };
      await store.commit({ runId: 'r1', leaseToken: token, run: { status: 'failed', endedAt: T0 + 1, error, retriedBy: 'r2' } });
      expect((await store.loadRun('r1'))?.run).toMatchObject({ status: 'failed', endedAt: T0 + 1, error, retriedBy: 'r2' });
      await store.commit({ runId: 'r1', leaseToken: token, run: { status: 'running', endedAt: undefined, error: undefined } });
      const run = (await store.loadRun('r1'))?.run;
      expect(run?.status).toBe('running');
      expect(run && 'endedAt' in run).toBe(false);
      expect(run && 'error' in run).toBe(false);
      expect(run?.retriedBy).toBe('r2');
      await store.commit({ runId: 'r1', leaseToken: token, run: { status: undefined, updatedAt: undefined, humanInLoop: undefined } });
      expect((await store.loadRun('r1'))?.run).toMatchObject({ status: 'running', updatedAt: T0, humanInLoop: false });
    });

    it('refuses a gap or a duplicate seq with WEIR_EVENT_SEQ and writes nothing of that batch', async () => {
      const token = await started('r1');
      const gap = await rejection(store.commit({ runId: 'r1', leaseToken: token, steps: [stepRecord('r1', 'a')], outputs: [{ step: 'a', value: 1 }], events: [event('r1', 3)] }));
      expect(gap.code).toBe(ErrorCode.EVENT_SEQ);
      expect(gap.message).toContain('a gap: seq 3 where 2 was expected');
      const duplicate = await rejection(store.commit({ runId: 'r1', leaseToken: token, events: [event('r1', 1)] }));
      expect(duplicate.code).toBe(ErrorCode.EVENT_SEQ);
      expect(duplicate.message).toContain('a duplicate seq 1');
      const loaded = await store.loadRun('r1');
      expect(loaded?.steps).toEqual([]);
      expect(loaded?.run.lastSeq).toBe(1);
      await expect(store.getOutput('r1', 'a')).resolves.toBeUndefined();
      await store.commit({ runId: 'r1', leaseToken: token, events: [event('r1', 2), event('r1', 3)] });
      expect((await store.readEvents('r1')).map((e) => e.seq)).toEqual([1, 2, 3]);
    });

    it('keeps seqs dense over many commits, across event chunks', async () => {
      const token = await started('r1');
      for (let seq = 2; seq <= 80; seq += 3) {
        await store.commit({ runId: 'r1', leaseToken: token, events: [event('r1', seq), event('r1', seq + 1), event('r1', seq + 2)] });
      }
      const events = await store.readEvents('r1');
      expect(events.map((e) => e.seq)).toEqual(Array.from({ length: 82 }, (_, i) => i + 1));
      expect((await store.readEvents('r1', 30, 5)).map((e) => e.seq)).toEqual([31, 32, 33, 34, 35]);
      expect((await store.readEvents('r1', 80)).map((e) => e.seq)).toEqual([81, 82]);
      expect((await store.loadRun('r1'))?.run.lastSeq).toBe(82);
    });

    it('accepts a commit made in the same tick as the createRun it follows', async () => {
      const created = store.createRun(newRun('r1'), [runStart('r1')]);
      const committed = store.commit({ runId: 'r1', leaseToken: 1, steps: [stepRecord('r1', 'a')], outputs: [{ step: 'a', value: 1 }], events: [event('r1', 2)] });
      const duplicate = store.createRun(newRun('r1'));
      await expect(created).resolves.toMatchObject({ runId: 'r1' });
      await expect(committed).resolves.toBeUndefined();
      expect((await rejection(duplicate)).code).toBe(ErrorCode.RUN_CONFLICT);
      expect((await store.loadRun('r1'))?.run.lastSeq).toBe(2);
    });

    it('refuses a commit to an unknown run with WEIR_RUN_NOT_FOUND', async () => {
      const error = await rejection(store.commit({ runId: 'nope', leaseToken: 1, events: [event('nope', 1)] }));
      expect(error.code).toBe(ErrorCode.RUN_NOT_FOUND);
    });

    it('refuses an output whose step record is not in the batch', async () => {
      const token = await started('r1');
      const error = await rejection(store.commit({ runId: 'r1', leaseToken: token, outputs: [{ step: 'a', value: 1 }] }));
      expect(error.code).toBe(ErrorCode.INVALID_OPTIONS);
      expect(error.message).toContain('the output of step "a" needs its step record');
    });

    it('drops a stored output when the step record is replaced by one without output', async () => {
      const token = await started('r1');
      await store.commit({ runId: 'r1', leaseToken: token, steps: [stepRecord('r1', 'a')], outputs: [{ step: 'a', value: 1 }] });
      await store.commit({ runId: 'r1', leaseToken: token, steps: [stepRecord('r1', 'a', 'pending')] });
      await expect(store.getOutput('r1', 'a')).resolves.toBeUndefined();
    });

    it('fails alone a bad batch among good ones committed in the same tick', async () => {
      const t1 = await started('r1');
      const t2 = await started('r2');
      const commits = [
        store.commit({ runId: 'r1', leaseToken: t1, steps: [stepRecord('r1', 'a')], outputs: [{ step: 'a', value: 'one' }], events: [event('r1', 2)] }),
        store.commit({ runId: 'r2', leaseToken: t2 + 5, steps: [stepRecord('r2', 'a')], events: [event('r2', 2)] }),
        store.commit({ runId: 'r2', leaseToken: t2, steps: [stepRecord('r2', 'b')], events: [event('r2', 2), event('r2', 3)] }),
        store.commit({ runId: 'r1', leaseToken: t1, events: [event('r1', 3)] }),
        store.commit({ runId: 'r1', leaseToken: t1, events: [event('r1', 3)] }),
      ];
      const outcomes = await Promise.allSettled(commits);
      expect(outcomes.map((o) => o.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'fulfilled', 'rejected']);
      expect(((outcomes[1] as PromiseRejectedResult).reason as { code: string }).code).toBe(ErrorCode.LEASE_LOST);
      expect(((outcomes[4] as PromiseRejectedResult).reason as { code: string }).code).toBe(ErrorCode.EVENT_SEQ);
      expect((await store.loadRun('r2'))?.steps.map((s) => s.step)).toEqual(['b']);
      expect((await store.readEvents('r1')).map((e) => e.seq)).toEqual([1, 2, 3]);
      expect((await store.readEvents('r2')).map((e) => e.seq)).toEqual([1, 2, 3]);
      await expect(store.getOutput('r1', 'a')).resolves.toEqual({ value: 'one' });
    });
  });

  describe('leases and fencing', () => {
    it('refuses a live lease held by another owner, and lets the owner itself keep its token', async () => {
      await started('r1');
      await expect(store.acquireLease('r1', BOB, 30_000, T0 + 1_000)).resolves.toBeUndefined();
      await expect(store.acquireLease('r1', ALICE, 30_000, T0 + 1_000)).resolves.toBe(1);
      await expect(store.acquireLease('nope', ALICE, 30_000, T0)).resolves.toBeUndefined();
    });

    it('takes over an expired lease: the token and recoveries grow, and the old owner is fenced out', async () => {
      const old = await started('r1');
      const token = await store.acquireLease('r1', BOB, 30_000, T0 + 60_000, { takeover: true });
      expect(token).toBe(old + 1);
      const run = (await store.loadRun('r1'))?.run;
      expect(run).toMatchObject({ owner: BOB, leaseToken: old + 1, recoveries: 1, leaseExpiresAt: T0 + 90_000 });
      const error = await rejection(store.commit({ runId: 'r1', leaseToken: old, steps: [stepRecord('r1', 'a')], events: [event('r1', 2)] }));
      expect(error.code).toBe(ErrorCode.LEASE_LOST);
      expect(error.message).toContain('another owner took the run over');
      expect((await store.loadRun('r1'))?.steps).toEqual([]);
      await store.commit({ runId: 'r1', leaseToken: token!, events: [event('r1', 2)] });
      expect((await store.loadRun('r1'))?.run.lastSeq).toBe(2);
    });

    it('takes a live lease whose token is still the one given, for an owner known to be gone, once', async () => {
      const old = await started('r1');
      await expect(store.acquireLease('r1', BOB, 30_000, T0 + 1, { takeover: true, fromToken: old + 7 })).resolves.toBeUndefined();
      const token = await store.acquireLease('r1', BOB, 30_000, T0 + 1, { takeover: true, fromToken: old });
      expect(token).toBe(old + 1);
      const third = { processId: 'carol:3', host: 'carol', pid: 3 };
      await expect(store.acquireLease('r1', third, 30_000, T0 + 2, { takeover: true, fromToken: old })).resolves.toBeUndefined();
      expect((await store.loadRun('r1'))?.run).toMatchObject({ owner: BOB, recoveries: 1 });
    });

    it('with ifToken, takes only a free lease whose token is still that one, raising it even for the same owner', async () => {
      const token = await started('r1');
      // Held (even by the caller itself): refused.
      await expect(store.acquireLease('r1', ALICE, 30_000, T0 + 1, { ifToken: token })).resolves.toBeUndefined();
      await store.releaseLease('r1', ALICE, token);
      // Free, but the token moved on: refused.
      await expect(store.acquireLease('r1', BOB, 30_000, T0 + 2, { ifToken: token - 1 })).resolves.toBeUndefined();
      // Free with that token: taken, the token raised; a second taker with the same token (the same owner too) is refused.
      await expect(store.acquireLease('r1', ALICE, 30_000, T0 + 3, { ifToken: token })).resolves.toBe(token + 1);
      await expect(store.acquireLease('r1', ALICE, 30_000, T0 + 4, { ifToken: token })).resolves.toBeUndefined();
      await expect(store.acquireLease('r1', BOB, 30_000, T0 + 4, { ifToken: token })).resolves.toBeUndefined();
      // Expired counts as free.
      await expect(store.acquireLease('r1', BOB, 30_000, T0 + 40_000, { ifToken: token + 1 })).resolves.toBe(token + 2);
      expect((await store.loadRun('r1'))?.run).toMatchObject({ owner: BOB, leaseToken: token + 2, recoveries: 0 });
    });

    it('releases a lease so another owner can take it at once, with a new token', async () => {
      const token = await started('r1');
      await expect(store.releaseLease('r1', BOB, token)).resolves.toBe(false);
      await expect(store.releaseLease('r1', ALICE, token)).resolves.toBe(true);
      const run = (await store.loadRun('r1'))?.run;
      expect(run && 'owner' in run).toBe(false);
      expect(run?.leaseExpiresAt).toBe(0);
      await expect(store.acquireLease('r1', BOB, 30_000, T0 + 1)).resolves.toBe(token + 1);
      expect((await store.loadRun('r1'))?.run.recoveries).toBe(0);
    });

    it('renews all of an owner\'s leases and reports the ones it lost', async () => {
      const t1 = await started('r1');
      const t2 = await started('r2');
      await store.acquireLease('r2', BOB, 30_000, T0 + 60_000, { takeover: true });
      const result = await store.renewLeases(
        ALICE,
        [
          { runId: 'r1', leaseToken: t1 },
          { runId: 'r2', leaseToken: t2 },
          { runId: 'gone', leaseToken: 1 },
        ],
        T0 + 99_000,
      );
      expect(result.renewed).toEqual(['r1']);
      expect([...result.lost].sort()).toEqual(['gone', 'r2']);
      expect((await store.loadRun('r1'))?.run.leaseExpiresAt).toBe(T0 + 99_000);
      expect((await store.loadRun('r2'))?.run.owner).toEqual(BOB);
    });
  });

  describe('listRuns', () => {
    async function seed(): Promise<void> {
      const rows = [
        ['a', 'running', 'pipeline', T0 + 1, T0 + 10],
        ['b', 'completed', 'pipeline', T0 + 2, 0],
        ['c', 'running', 'other', T0 + 3, T0 + 100_000],
        ['d', 'failed', 'other', T0 + 4, 0],
        ['e', 'waiting', 'pipeline', T0 + 4, T0 + 10],
        ['f', 'running', 'pipeline', T0 + 4, T0 + 20],
      ] as const;
      for (const [runId, status, flow, createdAt, leaseExpiresAt] of rows) {
        await store.createRun(newRun(runId, { status, flow, createdAt, updatedAt: createdAt, leaseExpiresAt }));
      }
    }

    it('pages through every run newest first with a stable cursor', async () => {
      await seed();
      const seen: string[] = [];
      let before: string | undefined;
      for (let page = 0; page < 10; page++) {
        const result = await store.listRuns({ limit: 4, now: T0, ...(before === undefined ? {} : { before }) });
        seen.push(...result.runs.map((r) => r.runId));
        if (result.next === undefined) break;
        before = result.next;
        // A run created meanwhile, newer than the cursor, does not shift the pages.
        if (page === 0) await store.createRun(newRun('z', { createdAt: T0 + 50 }));
      }
      expect(seen).toEqual(['f', 'e', 'd', 'c', 'b', 'a']);
      const first = await store.listRuns({ now: T0, limit: 1 });
      expect(first.runs[0]).toMatchObject({ runId: 'z', input: { text: 'a b c' } });
    });

    it('filters by status, by several statuses and by flow', async () => {
      await seed();
      const ids = async (query: Parameters<RunStore['listRuns']>[0]) => (await store.listRuns(query)).runs.map((r) => r.runId);
      await expect(ids({ status: 'running', now: T0 })).resolves.toEqual(['f', 'c', 'a']);
      await expect(ids({ status: ['completed', 'failed'], now: T0 })).resolves.toEqual(['d', 'b']);
      await expect(ids({ flow: 'other', now: T0 })).resolves.toEqual(['d', 'c']);
      await expect(ids({ flow: 'pipeline', status: 'running', limit: 1, now: T0 })).resolves.toEqual(['f']);
    });

    it('lists as stale only running runs whose lease expired', async () => {
      await seed();
      const stale = await store.listRuns({ stale: true, now: T0 + 15 });
      expect(stale.runs.map((r) => r.runId)).toEqual(['a']);
      const later = await store.listRuns({ stale: true, now: T0 + 1_000 });
      expect(later.runs.map((r) => r.runId)).toEqual(['f', 'a']);
    });

    it('refuses a cursor it did not make with WEIR_INVALID_OPTIONS', async () => {
      const error = await rejection(store.listRuns({ before: 'garbage', now: T0 }));
      expect(error.code).toBe(ErrorCode.INVALID_OPTIONS);
    });
  });

  describe('prune', () => {
    it('deletes old finished runs with their steps, outputs and events, never running or waiting ones', async () => {
      const statuses = ['completed', 'failed', 'cancelled', 'running', 'waiting', 'pending'] as const;
      for (const status of statuses) {
        const token = await started(status, { status: 'running' });
        await store.commit({
          runId: status,
          leaseToken: token,
          run: { status, updatedAt: T0 + 10, ...(status === 'completed' || status === 'failed' || status === 'cancelled' ? { endedAt: T0 + 10 } : {}) },
          steps: [stepRecord(status, 'a')],
          outputs: [{ step: 'a', value: 1 }],
          events: [event(status, 2)],
        });
      }
      await started('recent', { status: 'running' });
      await store.commit({ runId: 'recent', leaseToken: 1, run: { status: 'completed', endedAt: T0 + 5_000, updatedAt: T0 + 5_000 } });

      await expect(store.prune({ olderThan: T0 + 1_000 })).resolves.toBe(3);
      for (const gone of ['completed', 'failed', 'cancelled']) {
        await expect(store.loadRun(gone)).resolves.toBeUndefined();
        await expect(store.getOutput(gone, 'a')).resolves.toBeUndefined();
        await expect(store.readEvents(gone)).resolves.toEqual([]);
      }
      for (const kept of ['running', 'waiting', 'pending', 'recent']) expect((await store.loadRun(kept))?.run.runId).toBe(kept);
      await expect(store.getOutput('running', 'a')).resolves.toEqual({ value: 1 });
      await expect(store.prune({ olderThan: T0 + 1_000 })).resolves.toBe(0);
      // A run id pruned can be used again, with no leftovers.
      await started('completed');
      expect((await store.loadRun('completed'))?.steps).toEqual([]);
      expect(await store.readEvents('completed')).toHaveLength(1);
    });
  });

  describe('a run that ends', () => {
    it.each(['completed', 'failed', 'cancelled'] as const)('a commit to status %s releases the lease with it', async (status) => {
      const token = await started('r1');
      await store.commit({ runId: 'r1', leaseToken: token, run: { status, updatedAt: T0 + 1, endedAt: T0 + 1 }, events: [event('r1', 2)] });
      const { run } = (await store.loadRun('r1'))!;
      expect(run).toMatchObject({ status, leaseToken: token, leaseExpiresAt: 0 });
      expect(run.owner).toBeUndefined();
      // Free: the next taker raises the token by one; a second one is refused while it holds it.
      await expect(store.acquireLease('r1', BOB, 30_000, T0 + 2)).resolves.toBe(token + 1);
      await expect(store.acquireLease('r1', ALICE, 30_000, T0 + 3)).resolves.toBeUndefined();
    });

    it('keeps who ran it (ranBy) once the lease is released, and a composite record with its children', async () => {
      const token = await started('r1');
      const composite = { ...stepRecord('r1', 'group'), composite: true, hasOutput: false, children: ['a', 'b'] };
      await store.commit({
        runId: 'r1',
        leaseToken: token,
        run: { status: 'completed', updatedAt: T0 + 1, endedAt: T0 + 1, ranBy: 'alice:1' },
        steps: [composite],
        events: [event('r1', 2)],
      });
      const loaded = (await store.loadRun('r1'))!;
      expect(loaded.run).toMatchObject({ status: 'completed', ranBy: 'alice:1' });
      expect(loaded.run.owner).toBeUndefined();
      expect(loaded.steps.find((s) => s.step === 'group')).toStrictEqual(composite);
      expect((await store.listRuns({ now: T0 + 2 })).runs[0]).toMatchObject({ ranBy: 'alice:1' });
    });
  });

  describe('a run that waits', () => {
    it('a commit to status waiting releases the lease with it: owner cleared, token kept, free to take', async () => {
      const token = await started('r1');
      await store.commit({ runId: 'r1', leaseToken: token, run: { status: 'waiting', updatedAt: T0 + 1 }, events: [event('r1', 2)] });
      const { run } = (await store.loadRun('r1'))!;
      expect(run).toMatchObject({ status: 'waiting', leaseToken: token, leaseExpiresAt: 0 });
      expect(run.owner).toBeUndefined();
      await expect(store.acquireLease('r1', BOB, 30_000, T0 + 2)).resolves.toBe(token + 1);
    });
  });

  describe('input entries', () => {
    const answer = (key: string, value: unknown, at = T0 + 1): InputEntry => ({ key, outcome: 'answered', value, at });

    it('stores the first entry for a key and refuses a second one, keeping the first', async () => {
      await started('r1');
      await expect(store.putInput('r1', answer('approve', 'yes'))).resolves.toBe(true);
      await expect(store.putInput('r1', answer('approve', 'no', T0 + 2))).resolves.toBe(false);
      await expect(store.putInput('r1', { key: 'approve', outcome: 'expired', at: T0 + 3 })).resolves.toBe(false);
      await expect(store.readInputs('r1')).resolves.toStrictEqual([answer('approve', 'yes')]);
    });

    it('reads several keys in the order stored, their values as they went in', async () => {
      await started('r1');
      const nested = { a: [1, { b: 'two' }], c: { d: null }, e: undefined };
      const entries: InputEntry[] = [
        answer('when', new Date('2024-02-29T12:34:56.789Z')),
        answer('map', new Map<string, unknown>([['k', new Set([1n])]])),
        answer('nested', nested, T0 + 5),
        answer('undefined', undefined, T0 + 2),
        { key: 'expired', outcome: 'expired', at: T0 + 9 },
        { key: 'refused', outcome: 'refused', at: T0 + 3 },
      ];
      for (const entry of entries) await expect(store.putInput('r1', entry)).resolves.toBe(true);
      const read = await store.readInputs('r1');
      expect(read).toStrictEqual(entries);
      expect(read[1]?.value).toBeInstanceOf(Map);
      expect('value' in read[3]!).toBe(true);
      expect('value' in read[4]!).toBe(false);
    });

    it('clears the entries of given keys, so they can be stored again; other keys stay', async () => {
      await started('r1');
      await store.putInput('r1', { key: 'a', outcome: 'expired', at: T0 + 1 });
      await store.putInput('r1', answer('b', 'kept'));
      await store.clearInputs('r1', ['a', 'missing']);
      await expect(store.readInputs('r1')).resolves.toStrictEqual([answer('b', 'kept')]);
      await expect(store.putInput('r1', answer('a', 'now', T0 + 4))).resolves.toBe(true);
      await expect(store.clearInputs('nope', ['a'])).rejects.toMatchObject({ code: 'WEIR_RUN_NOT_FOUND' });
    });

    it('refuses an unknown run with WEIR_RUN_NOT_FOUND, and reads no entries for it', async () => {
      const error = await rejection(store.putInput('nope', answer('approve', 'yes')));
      expect(error.code).toBe(ErrorCode.RUN_NOT_FOUND);
      expect(error.message).toContain('"nope"');
      await expect(store.readInputs('nope')).resolves.toEqual([]);
    });

    it('reads no entries for a run that has none', async () => {
      await started('r1');
      await expect(store.readInputs('r1')).resolves.toEqual([]);
    });

    it('lets exactly one of 20 concurrent callers store an entry for the same key', async () => {
      await started('r1');
      const outcomes = await Promise.all(Array.from({ length: 20 }, (_, i) => store.putInput('r1', answer('approve', i))));
      expect(outcomes.filter((won) => won)).toHaveLength(1);
      await expect(store.readInputs('r1')).resolves.toStrictEqual([answer('approve', outcomes.indexOf(true))]);
    });

    it('sees a run created in the same tick, and is not fenced by the lease', async () => {
      const created = store.createRun(newRun('r1'), [runStart('r1')]);
      const put = store.putInput('r1', answer('approve', 'yes'));
      await created;
      await expect(put).resolves.toBe(true);
      await store.acquireLease('r1', BOB, 30_000, T0 + 60_000, { takeover: true });
      await expect(store.putInput('r1', answer('other', 1))).resolves.toBe(true);
      expect((await store.readInputs('r1')).map((e) => e.key)).toEqual(['approve', 'other']);
    });

    it('deletes a pruned run\'s entries', async () => {
      const token = await started('r1');
      await store.putInput('r1', answer('approve', 'yes'));
      await store.commit({ runId: 'r1', leaseToken: token, run: { status: 'completed', endedAt: T0 + 10, updatedAt: T0 + 10 } });
      await expect(store.prune({ olderThan: T0 + 1_000 })).resolves.toBe(1);
      await expect(store.readInputs('r1')).resolves.toEqual([]);
      expect((await rejection(store.putInput('r1', answer('approve', 'no')))).code).toBe(ErrorCode.RUN_NOT_FOUND);
      // A run id pruned can be used again, with no entries left over.
      await started('r1');
      await expect(store.readInputs('r1')).resolves.toEqual([]);
    });

    it('rejects with WEIR_STORE_CLOSED after close', async () => {
      await started('r1');
      await store.close();
      expect((await rejection(store.putInput('r1', answer('approve', 'yes')))).code).toBe(ErrorCode.STORE_CLOSED);
      expect((await rejection(store.readInputs('r1'))).code).toBe(ErrorCode.STORE_CLOSED);
    });
  });

  describe('close', () => {
    it('is idempotent and makes every call reject with WEIR_STORE_CLOSED', async () => {
      const token = await started('r1');
      await store.close();
      await expect(store.close()).resolves.toBeUndefined();
      const calls = [
        store.createRun(newRun('r2')),
        store.commit({ runId: 'r1', leaseToken: token, events: [event('r1', 2)] }),
        store.loadRun('r1'),
        store.getOutput('r1', 'a'),
        store.readEvents('r1'),
        store.listRuns({ now: T0 }),
        store.acquireLease('r1', ALICE, 1, T0),
        store.renewLeases(ALICE, [], T0),
        store.releaseLease('r1', ALICE, token),
        store.prune({ olderThan: T0 }),
      ];
      for (const call of calls) expect((await rejection(call)).code).toBe(ErrorCode.STORE_CLOSED);
    });

    it('writes commits still pending when it closes', async () => {
      const token = await started('r1');
      const pending = store.commit({ runId: 'r1', leaseToken: token, events: [event('r1', 2)] });
      await store.close();
      await expect(pending).resolves.toBeUndefined();
    });
  });
});

describe.each(stores)('RunStore ($kind), values it cannot keep', ({ open }) => {
  let store: RunStore;
  beforeEach(() => {
    store = open();
  });
  const unstorable = [
    { what: 'a function', value: { deep: [{ fn: () => 1 }] }, at: '.deep[0].fn' },
    { what: 'a symbol', value: new Map([['k', Symbol('s')]]), at: '.get("k")' },
  ];

  it.each(unstorable)('refuses $what in an input, output, heartbeat or answer with WEIR_SERIALIZATION, writing nothing', async ({ what, value, at }) => {
    const create = await rejection(store.createRun(newRun('r0', { input: value })));
    expect(create).toMatchObject({ code: ErrorCode.SERIALIZATION, message: expect.stringContaining(`${what} at ${at}`) });
    await expect(store.loadRun('r0')).resolves.toBeUndefined();

    const token = (await store.createRun(newRun('r1'), [runStart('r1')])).leaseToken;
    const output = await rejection(
      store.commit({ runId: 'r1', leaseToken: token, steps: [stepRecord('r1', 'a')], outputs: [{ step: 'a', value }], events: [event('r1', 2)] }),
    );
    expect(output.code).toBe(ErrorCode.SERIALIZATION);
    expect(output.message).toContain(what);
    expect(output.message).toContain(at);
    const runOutput = await rejection(store.commit({ runId: 'r1', leaseToken: token, run: { status: 'completed', output: value }, events: [event('r1', 2)] }));
    expect(runOutput.code).toBe(ErrorCode.SERIALIZATION);
    const beat: WeirEvent = { type: 'step_heartbeat', runId: 'r1', seq: 2, time: T0, step: 'a', attempt: 1, details: value };
    expect((await rejection(store.commit({ runId: 'r1', leaseToken: token, events: [beat] }))).code).toBe(ErrorCode.SERIALIZATION);
    expect(() => store.checkStorable(value, 'heartbeat details')).toThrow(expect.objectContaining({ code: ErrorCode.SERIALIZATION }));
    expect((await rejection(store.putInput('r1', { key: 'approve', outcome: 'answered', value, at: T0 }))).code).toBe(ErrorCode.SERIALIZATION);

    const loaded = await store.loadRun('r1');
    expect(loaded?.steps).toEqual([]);
    expect(loaded?.run).toMatchObject({ status: 'running', lastSeq: 1 });
    await expect(store.readEvents('r1')).resolves.toHaveLength(1);
    await expect(store.readInputs('r1')).resolves.toEqual([]);
  });
});

describe.each(stores.filter((s) => s.kind !== 'memory'))('RunStore ($kind), durable', ({ open }) => {
  let store: RunStore;
  beforeEach(() => {
    store = open();
  });

  it('refuses a value that cannot be serialised with WEIR_SERIALIZATION before writing anything', async () => {
    const bad = {
      get boom(): never {
        throw new Error('unreadable');
      },
    };
    const create = await rejection(store.createRun(newRun('r0', { input: bad })));
    expect(create.code).toBe(ErrorCode.SERIALIZATION);
    await expect(store.loadRun('r0')).resolves.toBeUndefined();
    const token = (await store.createRun(newRun('r1'), [runStart('r1')])).leaseToken;
    const error = await rejection(
      store.commit({ runId: 'r1', leaseToken: token, steps: [stepRecord('r1', 'a')], outputs: [{ step: 'a', value: bad }], events: [event('r1', 2)] }),
    );
    expect(error.code).toBe(ErrorCode.SERIALIZATION);
    const loaded = await store.loadRun('r1');
    expect(loaded?.steps).toEqual([]);
    expect(loaded?.run.lastSeq).toBe(1);
  });

  it('refuses an input value that cannot be serialised with WEIR_SERIALIZATION and stores nothing', async () => {
    await store.createRun(newRun('r1'), [runStart('r1')]);
    const error = await rejection(store.putInput('r1', { key: 'approve', outcome: 'answered', value: { call: () => 1 }, at: T0 }));
    expect(error.code).toBe(ErrorCode.SERIALIZATION);
    await expect(store.readInputs('r1')).resolves.toEqual([]);
    await expect(store.putInput('r1', { key: 'approve', outcome: 'answered', value: 'yes', at: T0 })).resolves.toBe(true);
  });
});

describe.each(stores.filter((s) => s.kind === 'sqlite' || s.kind === 'disk'))('RunStore ($kind), reopened', ({ open }) => {
  it('keeps input entries, and their first-come rule, across close and reopen', async () => {
    const first = open();
    await first.createRun(newRun('r1'), [runStart('r1')]);
    const entry: InputEntry = { key: 'approve', outcome: 'answered', value: new Map([['at', new Date(T0)]]), at: T0 + 1 };
    await first.putInput('r1', entry);
    await first.putInput('r1', { key: 'late', outcome: 'expired', at: T0 + 2 });
    await first.close();
    const second = open();
    await expect(second.readInputs('r1')).resolves.toStrictEqual([entry, { key: 'late', outcome: 'expired', at: T0 + 2 }]);
    await expect(second.putInput('r1', { ...entry, value: 'again' })).resolves.toBe(false);
  });
});

describe('SqliteRunStore', () => {
  it('fails alone a batch SQLite itself refuses inside a group commit, and writes the others', async () => {
    const store = new SqliteRunStore(join(dir, 'runs.db'));
    closers.push(() => store.close());
    await store.createRun(newRun('r1'), [runStart('r1')]);
    await store.createRun(newRun('r2'), [runStart('r2')]);
    const outcomes = await Promise.allSettled([
      store.commit({ runId: 'r1', leaseToken: 1, events: [event('r1', 2)] }),
      // A NOT NULL column given null: only SQLite can refuse it, after the group has begun writing.
      store.commit({ runId: 'r2', leaseToken: 1, run: { status: null as unknown as 'failed' }, events: [event('r2', 2)] }),
      store.commit({ runId: 'r2', leaseToken: 1, events: [event('r2', 2)] }),
    ]);
    expect(outcomes.map((o) => o.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    const error = (outcomes[1] as PromiseRejectedResult).reason as RetryableError;
    expect(error.code).toBe(ErrorCode.STORE);
    expect(error.cause).toBeInstanceOf(Error);
    expect((await store.readEvents('r1')).map((e) => e.seq)).toEqual([1, 2]);
    expect((await store.readEvents('r2')).map((e) => e.seq)).toEqual([1, 2]);
    expect((await store.loadRun('r2'))?.run.status).toBe('running');
  });

  it('reports a backend failure as a retryable WEIR_STORE with its cause', async () => {
    const broken = new SqliteRunStore(dir); // a directory cannot be opened as a database
    closers.push(() => broken.close());
    const error = await rejection(broken.loadRun('r1'));
    expect(error).toBeInstanceOf(RetryableError);
    expect(error.code).toBe(ErrorCode.STORE);
    expect(error.retryable).toBe(true);
    expect(error.cause).toBeInstanceOf(Error);
  });
});
