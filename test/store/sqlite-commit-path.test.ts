import { type ChildProcess, fork } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { SqliteRunStore } from '../../src/store/sqlite-run-store.js';
import { event, newRun, runStart, T0 } from './helpers.js';

let dir: string;
let store: SqliteRunStore;
let reader: Database.Database | undefined;
const children: ChildProcess[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'weir-group-commit-'));
  store = new SqliteRunStore(join(dir, 'runs.db'));
});

afterEach(async () => {
  vi.useRealTimers();
  for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  reader?.close();
  reader = undefined;
  await store.close();
  await rm(dir, { recursive: true, force: true });
});

/** Runs r0..r(n-1), each with its run_start; returns what a second connection saw committed at each event insert. */
async function watchCommits(n: number): Promise<number[]> {
  for (let r = 0; r < n; r++) await store.createRun(newRun(`r${r}`), [runStart(`r${r}`)]);
  const db = await store.database();
  const other = new Database(join(dir, 'runs.db'), { readonly: true });
  reader = other;
  const count = other.prepare('SELECT count(*) FROM weir_events').pluck();
  const seen: number[] = [];
  // Called inside the writing transaction: the other connection sees only what was committed before it.
  db.function('weir_test_seen', () => {
    seen.push(count.get() as number);
    return 0;
  });
  db.exec('CREATE TEMP TRIGGER weir_test_note AFTER INSERT ON weir_events BEGIN SELECT weir_test_seen(); END');
  return seen;
}

describe('SQLite group commit', () => {
  it('writes the commits made in one tick in one transaction', async () => {
    const seen = await watchCommits(10);
    await Promise.all(Array.from({ length: 10 }, (_, r) => store.commit({ runId: `r${r}`, leaseToken: 1, events: [event(`r${r}`, 2)] })));
    expect(seen).toEqual(Array.from({ length: 10 }, () => 10));
  });

  it('writes each awaited commit in its own transaction', async () => {
    const seen = await watchCommits(3);
    for (let r = 0; r < 3; r++) await store.commit({ runId: `r${r}`, leaseToken: 1, events: [event(`r${r}`, 2)] });
    expect(seen).toEqual([3, 4, 5]);
  });

  it('gathers the commits that follow a flush in the same event-loop turn into one transaction', async () => {
    const seen = await watchCommits(4);
    const first = store.commit({ runId: 'r0', leaseToken: 1, events: [event('r0', 2)] });
    // Queued behind the first flush in this turn's microtasks: they come after it, but together.
    const rest = first.then(() => Promise.all([1, 2, 3].map((r) => store.commit({ runId: `r${r}`, leaseToken: 1, events: [event(`r${r}`, 2)] }))));
    await rest;
    expect(seen).toEqual([4, 5, 5, 5]);
  });

  it('is never held back by fake timers or a faked queueMicrotask', async () => {
    await store.createRun(newRun('r1'), [runStart('r1')]);
    vi.useFakeTimers({ toFake: ['setTimeout', 'setInterval', 'setImmediate', 'queueMicrotask', 'Date'] });
    // Awaited one after another in one turn: the first on a promise job, the others at the turn's end.
    for (let seq = 2; seq < 6; seq++) await store.commit({ runId: 'r1', leaseToken: 1, events: [event('r1', seq)] });
    expect((await store.loadRun('r1'))?.run.lastSeq).toBe(5);
  });
});

describe('SQLite checkpoints on their own thread', () => {
  it('keeps every commit of a long chain, and all of it is there after reopening', async () => {
    await store.createRun(newRun('r1'), [runStart('r1')]);
    for (let seq = 2; seq <= 1200; seq++) await store.commit({ runId: 'r1', leaseToken: 1, run: { updatedAt: T0 + seq }, events: [event('r1', seq)] });
    expect((await store.readEvents('r1')).map((e) => e.seq)).toEqual(Array.from({ length: 1200 }, (_, i) => i + 1));
    await store.close();
    store = new SqliteRunStore(join(dir, 'runs.db'));
    const loaded = await store.loadRun('r1');
    expect(loaded?.run).toMatchObject({ lastSeq: 1200, updatedAt: T0 + 1200 });
    expect(await store.readEvents('r1', 1195)).toHaveLength(5);
  });

  it.each(['close', 'leave open'])('lets a process exit on its own once it is done (%s)', async (mode) => {
    const child = fork(join(import.meta.dirname, 'programs', 'checkpointed-writer.ts'), [join(dir, 'runs.db'), mode === 'close' ? 'close' : 'open'], {
      execArgv: ['--import', 'tsx'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    children.push(child);
    const [message] = (await once(child, 'message')) as [string];
    expect(message).toBe('done');
    child.disconnect();
    const [code] = (await once(child, 'exit')) as [number | null];
    expect(code).toBe(0);
    const reader = new SqliteRunStore(join(dir, 'runs.db'));
    try {
      expect((await reader.loadRun('chain'))?.run.lastSeq).toBe(999);
    } finally {
      await reader.close();
    }
  });
});
