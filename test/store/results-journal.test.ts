import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { Keyv } from 'keyv';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { ErrorCode } from '../../src/errors/errors.js';
import { ResultsManager, runStoreOf } from '../../src/results/results-manager.js';
import { KvRunStore } from '../../src/storage/journal/kv-run-store.js';
import { MemoryRunStore } from '../../src/storage/journal/memory-run-store.js';
import { SqliteRunStore } from '../../src/storage/journal/sqlite/sqlite-run-store.js';
import { newRun, rejection, runStart, T0 } from './helpers.js';

let dir: string;
const managers: ResultsManager[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'weir-journal-'));
});

afterEach(async () => {
  vi.useRealTimers();
  await Promise.all(managers.splice(0).map((m) => m.close()));
  await rm(dir, { recursive: true, force: true });
});

function track(results: ResultsManager): ResultsManager {
  managers.push(results);
  return results;
}

describe('the journal of a ResultsManager', () => {
  it('is a memory store for memory, SQLite for sqlite, and key-value for disk and Keyv', () => {
    expect(runStoreOf(track(ResultsManager.memory()))).toBeInstanceOf(MemoryRunStore);
    expect(runStoreOf(track(ResultsManager.sqlite(join(dir, 'runs.db'))))).toBeInstanceOf(SqliteRunStore);
    expect(runStoreOf(track(ResultsManager.disk(join(dir, 'results'))))).toBeInstanceOf(KvRunStore);
    expect(runStoreOf(track(ResultsManager.keyv(new Keyv())))).toBeInstanceOf(KvRunStore);
  });

  it('shares the SQLite file with the results, on one connection', async () => {
    const file = join(dir, 'runs.db');
    const results = track(ResultsManager.sqlite(file, { table: 'my_results' }));
    await results.set('k', { v: 1 });
    await runStoreOf(results).createRun(newRun('r1'), [runStart('r1')]);
    await results.close();
    const db = new Database(file);
    expect(db.prepare('SELECT count(*) FROM my_results').pluck().get()).toBe(1);
    expect(db.prepare('SELECT run_id FROM weir_runs').pluck().all()).toEqual(['r1']);
    db.close();
  });

  it('closes with its manager: afterwards it rejects with WEIR_STORE_CLOSED', async () => {
    const results = ResultsManager.sqlite(join(dir, 'runs.db'));
    const journal = runStoreOf(results);
    await journal.createRun(newRun('r1'));
    await results.close();
    expect((await rejection(journal.loadRun('r1'))).code).toBe(ErrorCode.STORE_CLOSED);
  });

  it.each([
    ['disk', () => ResultsManager.disk(join(dir, 'results'))],
    ['keyv', () => ResultsManager.keyv(new Keyv())],
  ] as const)('survives cleanup of the %s results: runs go only with prune', async (_kind, open) => {
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(0);
    const results = track(open());
    await results.set('old', 1);
    await runStoreOf(results).createRun(newRun('r1'), [runStart('r1')]);
    vi.setSystemTime(T0 + 1_000_000);
    await expect(results.cleanup({ olderThan: 1000 })).resolves.toBe(1);
    await expect(results.has('old')).resolves.toBe(false);
    expect((await runStoreOf(results).loadRun('r1'))?.run.runId).toBe('r1');
    await expect(runStoreOf(results).readEvents('r1')).resolves.toHaveLength(1);
  });
});
