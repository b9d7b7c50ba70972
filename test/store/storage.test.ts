import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Keyv } from 'keyv';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { KvRunStore } from '../../src/storage/journal/kv-run-store.js';
import { MemoryRunStore } from '../../src/storage/journal/memory-run-store.js';
import { SqliteRunStore } from '../../src/storage/journal/sqlite/sqlite-run-store.js';
import { diskStorage, keyvStorage, memoryStorage, sqliteStorage, type Storage } from '../../src/storage/storage.js';
import { newRun, runStart } from './helpers.js';

let dir: string;
const opened: Storage[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'weir-storage-'));
});

afterEach(async () => {
  await Promise.all(opened.splice(0).map((s) => s.close()));
  await rm(dir, { recursive: true, force: true });
});

function track(storage: Storage): Storage {
  opened.push(storage);
  return storage;
}

const SQLITE = { table: 'weir_results', synchronous: 'NORMAL', busyTimeout: 5000 } as const;

describe('a storage', () => {
  it('pairs each backend with the journal that goes with it, durable unless in memory', () => {
    const memory = track(memoryStorage({ keepFinishedRuns: 10, checkSerializable: true }));
    const disk = track(diskStorage(join(dir, 'results')));
    const sqlite = track(sqliteStorage(join(dir, 'runs.db'), SQLITE));
    const keyv = track(keyvStorage(new Keyv()));
    expect([memory, disk, sqlite, keyv].map((s) => [s.kind, s.backend.kind, s.durable])).toEqual([
      ['memory', 'memory', false],
      ['disk', 'disk', true],
      ['sqlite', 'sqlite', true],
      ['keyv', 'keyv', true],
    ]);
    expect(memory.journal).toBeInstanceOf(MemoryRunStore);
    expect(disk.journal).toBeInstanceOf(KvRunStore);
    expect(sqlite.journal).toBeInstanceOf(SqliteRunStore);
    expect(keyv.journal).toBeInstanceOf(KvRunStore);
  });

  it('writes the journal\'s pending commits and the values when it closes, before the backend goes', async () => {
    const file = join(dir, 'runs.db');
    const storage = sqliteStorage(file, SQLITE);
    await storage.backend.set('k', { value: 1, writtenAt: 0 });
    const created = storage.journal.createRun(newRun('r1'), [runStart('r1')]);
    await storage.close();
    await created;
    const again = track(sqliteStorage(file, SQLITE));
    expect((await again.journal.loadRun('r1'))?.run.lastSeq).toBe(1);
    expect((await again.backend.get('k'))?.value).toBe(1);
  });
});
