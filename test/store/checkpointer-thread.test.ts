import { once } from 'node:events';
import { existsSync, statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { checkpointerEntry } from '../../src/storage/journal/sqlite/checkpointer.js';
import type { CheckpointerData, CheckpointerReply, CheckpointerRequest } from '../../src/storage/journal/sqlite/checkpointer-protocol.js';

let dir: string;
let db: Database.Database | undefined;
let worker: Worker | undefined;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'weir-checkpointer-'));
});

afterEach(async () => {
  await worker?.terminate();
  worker = undefined;
  db?.close();
  db = undefined;
  await rm(dir, { recursive: true, force: true });
});

/** A WAL-mode file whose writes stay in the WAL until something checkpoints them. */
function walFile(): string {
  const file = join(dir, 'runs.db');
  db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.pragma('wal_autocheckpoint = 0');
  db.exec('CREATE TABLE t (v TEXT)');
  const insert = db.prepare('INSERT INTO t (v) VALUES (?)');
  db.transaction(() => {
    for (let i = 0; i < 200; i++) insert.run('x'.repeat(1000));
  })();
  return file;
}

describe('the checkpointer thread', () => {
  it('is found next to the code that starts it', () => {
    expect(existsSync(checkpointerEntry())).toBe(true);
  });

  it('copies the WAL into the database file when asked, answers, and ends when told to close', async () => {
    const file = walFile();
    const before = statSync(file).size;
    const data: CheckpointerData = { file, synchronous: 'NORMAL', busyTimeout: 5000 };
    worker = new Worker(checkpointerEntry(), { workerData: data });
    const errors: unknown[] = [];
    worker.on('error', (error) => errors.push(error));
    const reply = once(worker, 'message') as Promise<[CheckpointerReply]>;
    worker.postMessage('checkpoint' satisfies CheckpointerRequest);
    expect((await reply)[0]).toBe('done');
    expect(statSync(file).size).toBeGreaterThan(before + 100 * 1000);
    const exited = once(worker, 'exit') as Promise<[number]>;
    worker.postMessage('close' satisfies CheckpointerRequest);
    expect((await exited)[0]).toBe(0);
    expect(errors).toEqual([]);
  });
});
