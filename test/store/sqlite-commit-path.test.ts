import { type ChildProcess, fork } from 'node:child_process';
import { once } from 'node:events';
import { renameSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setImmediate as nextTurn } from 'node:timers/promises';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { SqliteRunStore } from '../../src/storage/journal/sqlite/sqlite-run-store.js';
import type { StepRecord } from '../../src/storage/journal/run-store.js';
import type { WeirEvent } from '../../src/model/events.js';
import { ALICE, event, newRun, runStart, stepRecord, T0 } from './helpers.js';

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

  it("commits a run writing alone without waiting for the loop's turn, yet lets the loop run every so many commits", async () => {
    await store.createRun(newRun('r1'), [runStart('r1')]);
    await store.commit({ runId: 'r1', leaseToken: 1, events: [event('r1', 2)] });
    // A turn of the loop in which r1 alone wrote: from the next on, its commits go at once.
    await nextTurn();
    const turnsAt: number[] = [];
    const probe = (): void => {
      setImmediate(() => {
        turnsAt.push(seq);
        if (turnsAt.length < 4) probe();
      });
    };
    probe();
    let seq = 3;
    for (; seq < 400; seq++) await store.commit({ runId: 'r1', leaseToken: 1, events: [event('r1', seq)] });
    // Many commits went between two turns of the loop, not one in two; but never all of them.
    expect(turnsAt).toHaveLength(4);
    const gaps = turnsAt.map((at, i) => at - (turnsAt[i - 1] ?? 3));
    for (const gap of gaps) {
      expect(gap).toBeGreaterThan(2);
      expect(gap).toBeLessThanOrEqual(2 * 64 + 1);
    }
    expect((await store.loadRun('r1'))?.run.lastSeq).toBe(399);
  });

  it('goes on at once only for the run that wrote alone in the last turn with writes', async () => {
    for (const r of ['r0', 'r1']) await store.createRun(newRun(r), [runStart(r)]);
    let turns = 0;
    let ticking = true;
    const tick = (): void => {
      turns++;
      if (ticking) setImmediate(tick);
    };
    setImmediate(tick);
    /** The loop turns counted after each of `count` awaited commits of `runId`, from `seq` on. */
    const commits = async (runId: string, seq: number, count: number): Promise<number[]> => {
      const at: number[] = [];
      for (let i = 0; i < count; i++) {
        await store.commit({ runId, leaseToken: 1, events: [event(runId, seq + i)] });
        at.push(turns);
      }
      return at;
    };
    // A turn in which both wrote: r0's second commit waits for the turn's end, then r0 goes on at once.
    await Promise.all([store.commit({ runId: 'r0', leaseToken: 1, events: [event('r0', 2)] }), store.commit({ runId: 'r1', leaseToken: 1, events: [event('r1', 2)] })]);
    await nextTurn();
    const afterMixed = await commits('r0', 3, 6);
    expect(afterMixed[1]).toBeGreaterThan(afterMixed[0]!);
    expect(afterMixed[5]).toBe(afterMixed[1]);
    // r0 wrote alone in the last turn: r1, alone now, waits for the turn's end once before it goes on at once.
    await nextTurn();
    const afterOther = await commits('r1', 3, 6);
    expect(afterOther[1]).toBeGreaterThan(afterOther[0]!);
    expect(afterOther[5]).toBe(afterOther[1]);
    ticking = false;
  });

  it('gathers again once a second run writes in the turn', async () => {
    const seen = await watchCommits(3);
    await store.commit({ runId: 'r0', leaseToken: 1, events: [event('r0', 2)] });
    await nextTurn();
    await store.commit({ runId: 'r0', leaseToken: 1, events: [event('r0', 3)] });
    // r1 makes the turn one of two writers: its commit waits for the turn's end, and r2's, made
    // some promise jobs later, joins it there.
    const second = store.commit({ runId: 'r1', leaseToken: 1, events: [event('r1', 2)] });
    for (let i = 0; i < 3; i++) await Promise.resolve();
    const third = store.commit({ runId: 'r2', leaseToken: 1, events: [event('r2', 2)] });
    await Promise.all([second, third]);
    expect(seen).toEqual([3, 4, 5, 5]);
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
    for (let seq = 2; seq <= 2500; seq++) await store.commit({ runId: 'r1', leaseToken: 1, run: { updatedAt: T0 + seq }, events: [event('r1', seq)] });
    expect((await store.readEvents('r1')).map((e) => e.seq)).toEqual(Array.from({ length: 2500 }, (_, i) => i + 1));
    await store.close();
    store = new SqliteRunStore(join(dir, 'runs.db'));
    const loaded = await store.loadRun('r1');
    expect(loaded?.run).toMatchObject({ lastSeq: 2500, updatedAt: T0 + 2500 });
    expect(await store.readEvents('r1', 2495)).toHaveLength(5);
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
      expect((await reader.loadRun('chain'))?.run.lastSeq).toBe(2499);
    } finally {
      await reader.close();
    }
  });
});

describe('SQLite events, one row per commit', () => {
  it("writes a commit's events as one row, and reads them back from any seq, up to any limit", async () => {
    await store.createRun(newRun('r1'), [runStart('r1')]);
    const commits = [[2, 3, 4], [5], [6, 7]];
    for (const seqs of commits) await store.commit({ runId: 'r1', leaseToken: 1, events: seqs.map((seq) => event('r1', seq)) });
    const db = await store.database();
    const rows = db.prepare("SELECT first_seq, seq FROM weir_events WHERE run_id = 'r1' ORDER BY seq").raw().all();
    expect(rows).toEqual([[null, 1], [2, 4], [null, 5], [6, 7]]);
    const all = await store.readEvents('r1');
    expect(all.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(all[2]).toEqual(event('r1', 3));
    for (let after = 0; after <= 7; after++) {
      expect((await store.readEvents('r1', after)).map((e) => e.seq)).toEqual(all.slice(after).map((e) => e.seq));
      for (const limit of [0, 1, 2, 3]) expect(await store.readEvents('r1', after, limit)).toEqual(all.slice(after, after + limit));
    }
    expect((await store.loadRun('r1'))?.run.lastSeq).toBe(7);
  });

  it('keeps events that need more than JSON in one row, values intact', async () => {
    await store.createRun(newRun('r1'), [runStart('r1')]);
    const when = new Date(T0);
    const odd = { ...event('r1', 3), note: { when, big: 10n } } as unknown as WeirEvent;
    await store.commit({ runId: 'r1', leaseToken: 1, events: [event('r1', 2), odd] });
    expect(await store.readEvents('r1', 1)).toEqual([event('r1', 2), odd]);
  });

  it('refuses a row whose events do not match its seqs as corrupt, naming them', async () => {
    await store.createRun(newRun('r1'), [runStart('r1')]);
    await store.commit({ runId: 'r1', leaseToken: 1, events: [event('r1', 2), event('r1', 3)] });
    const db = await store.database();
    db.prepare("UPDATE weir_events SET data = ? WHERE run_id = 'r1' AND seq = 3").run(JSON.stringify([event('r1', 2)]));
    await expect(store.readEvents('r1')).rejects.toMatchObject({ code: 'WEIR_CORRUPT_RECORD', message: expect.stringContaining('"r1#2-3"') });
  });
});

describe('SQLite file replaced after the last write', () => {
  it('close() leaves what was committed in the file it opened, not in a WAL beside the file now at the path', async () => {
    const file = join(dir, 'runs.db');
    await store.createRun(newRun('r1'), [runStart('r1')]);
    await store.commit({ runId: 'r1', leaseToken: 1, events: [event('r1', 2), event('r1', 3)] });
    // No write after this, so no write's check sees the swap: only close() can.
    renameSync(file, join(dir, 'aside.db'));
    const other = new Database(file);
    other.exec('CREATE TABLE marker (x TEXT)');
    other.close();
    await store.close();
    const aside = new SqliteRunStore(join(dir, 'aside.db'));
    const atPath = new SqliteRunStore(file);
    try {
      expect((await aside.readEvents('r1')).map((e) => e.seq)).toEqual([1, 2, 3]);
      expect(await atPath.loadRun('r1')).toBeUndefined();
    } finally {
      await aside.close();
      await atPath.close();
    }
  });
});

describe('SQLite step records riding on events', () => {
  it('writes a step commit with events to the events table only, its records on the last event', async () => {
    await store.createRun(newRun('r1'), [runStart('r1')]);
    const db = await store.database();
    const before = db.prepare('SELECT (SELECT count(*) FROM weir_steps) + (SELECT count(*) FROM weir_outputs)').pluck();
    const runRow = db.prepare("SELECT updated_at, last_seq FROM weir_runs WHERE run_id = 'r1'");
    const untouched = runRow.get();
    await store.commit({
      runId: 'r1',
      leaseToken: 1,
      steps: [stepRecord('r1', 'a')],
      outputs: [{ step: 'a', value: 1 }],
      events: [event('r1', 2, 'step_complete'), event('r1', 3, 'step_start', 'b')],
    });
    expect(before.get()).toBe(0);
    expect(runRow.get()).toEqual(untouched);
    expect(db.prepare("SELECT seq FROM weir_events WHERE run_id = 'r1' AND records IS NOT NULL").pluck().all()).toEqual([3]);
    expect((await store.loadRun('r1'))?.run.lastSeq).toBe(3);
    expect((await store.listRuns({ now: T0 })).runs[0]?.lastSeq).toBe(3);
  });

  it('folds records carried by events and records stored without events in the order they were written', async () => {
    await store.createRun(newRun('r1'), [runStart('r1')]);
    const commit = (seqs: number[], record: StepRecord, output?: unknown) =>
      store.commit({
        runId: 'r1',
        leaseToken: 1,
        steps: [record],
        ...(output === undefined ? {} : { outputs: [{ step: record.step, value: output }] }),
        events: seqs.map((seq) => event('r1', seq)),
      });
    const stepOf = async () => (await store.loadRun('r1'))?.steps.find((s) => s.step === 'a');
    await commit([2], stepRecord('r1', 'a'), 'one');
    await expect(store.getOutput('r1', 'a')).resolves.toEqual({ value: 'one' });
    // Without events, at the same last seq: the table row wins over the event's records.
    await commit([], stepRecord('r1', 'a', 'pending'));
    expect((await stepOf())?.status).toBe('pending');
    await expect(store.getOutput('r1', 'a')).resolves.toBeUndefined();
    await commit([3], stepRecord('r1', 'a'), 'two');
    expect((await stepOf())?.status).toBe('completed');
    await expect(store.getOutput('r1', 'a')).resolves.toEqual({ value: 'two' });
    // A record with hasOutput and no output in its batch keeps the stored one, wherever it is.
    await commit([], { ...stepRecord('r1', 'a'), updatedAt: T0 + 9 });
    expect((await stepOf())?.updatedAt).toBe(T0 + 9);
    await expect(store.getOutput('r1', 'a')).resolves.toEqual({ value: 'two' });
    await commit([4], { ...stepRecord('r1', 'a'), updatedAt: T0 + 10 }, undefined);
    expect((await stepOf())?.updatedAt).toBe(T0 + 10);
    await expect(store.getOutput('r1', 'a')).resolves.toEqual({ value: 'two' });
    await store.close();
    store = new SqliteRunStore(join(dir, 'runs.db'));
    expect((await stepOf())?.updatedAt).toBe(T0 + 10);
    await expect(store.getOutput('r1', 'a')).resolves.toEqual({ value: 'two' });
  });

  it('reads outputs another connection committed since it last read the run', async () => {
    await store.createRun(newRun('r1'), [runStart('r1')]);
    await store.commit({ runId: 'r1', leaseToken: 1, steps: [stepRecord('r1', 'a')], outputs: [{ step: 'a', value: 1 }], events: [event('r1', 2)] });
    await expect(store.getOutput('r1', 'a')).resolves.toEqual({ value: 1 });
    const other = new SqliteRunStore(join(dir, 'runs.db'));
    try {
      await other.commit({ runId: 'r1', leaseToken: 1, steps: [stepRecord('r1', 'a')], outputs: [{ step: 'a', value: 2 }], events: [event('r1', 3)] });
    } finally {
      await other.close();
    }
    await expect(store.getOutput('r1', 'a')).resolves.toEqual({ value: 2 });
  });

  it('opens a file made before records rode on events, and goes on with its runs', async () => {
    const file = join(dir, 'old.db');
    const old = new Database(file);
    old.exec(`
      CREATE TABLE weir_runs (run_id TEXT PRIMARY KEY NOT NULL, flow TEXT NOT NULL, fingerprint TEXT NOT NULL, mode TEXT NOT NULL,
        human_in_loop INTEGER NOT NULL, status TEXT NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, ended_at INTEGER,
        error TEXT, output TEXT, retry_of TEXT, retried_by TEXT, owner_id TEXT, owner TEXT, lease_token INTEGER NOT NULL,
        lease_expires_at INTEGER NOT NULL, recoveries INTEGER NOT NULL, last_seq INTEGER NOT NULL, input TEXT NOT NULL);
      CREATE TABLE weir_steps (run_id TEXT NOT NULL, step TEXT NOT NULL, data TEXT NOT NULL, PRIMARY KEY (run_id, step)) WITHOUT ROWID;
      CREATE TABLE weir_outputs (run_id TEXT NOT NULL, step TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (run_id, step)) WITHOUT ROWID;
      CREATE TABLE weir_events (run_id TEXT NOT NULL, seq INTEGER NOT NULL, data TEXT NOT NULL, PRIMARY KEY (run_id, seq)) WITHOUT ROWID;
    `);
    old
      .prepare(
        `INSERT INTO weir_runs VALUES ('r1', 'pipeline', 'fp1', 'batch', 0, 'running', ${T0}, ${T0}, NULL, NULL, NULL, NULL, NULL,
          'alice:1', ?, 1, ${T0 + 30_000}, 0, 2, '{"text":"a b c"}')`,
      )
      .run(JSON.stringify(ALICE));
    old.prepare("INSERT INTO weir_events VALUES ('r1', 1, ?), ('r1', 2, ?)").run(JSON.stringify(runStart('r1')), JSON.stringify(event('r1', 2)));
    old.prepare("INSERT INTO weir_steps VALUES ('r1', 'a', ?)").run(JSON.stringify(stepRecord('r1', 'a')));
    old.prepare("INSERT INTO weir_outputs VALUES ('r1', 'a', '\"old\"')").run();
    old.close();
    const reopened = new SqliteRunStore(file);
    try {
      expect(await reopened.loadRun('r1')).toMatchObject({ run: { lastSeq: 2 }, steps: [{ step: 'a', status: 'completed' }] });
      await expect(reopened.getOutput('r1', 'a')).resolves.toEqual({ value: 'old' });
      await reopened.commit({ runId: 'r1', leaseToken: 1, steps: [stepRecord('r1', 'b')], outputs: [{ step: 'b', value: 'new' }], events: [event('r1', 3)] });
      const loaded = await reopened.loadRun('r1');
      expect(loaded?.run.lastSeq).toBe(3);
      expect(loaded?.steps.map((s) => s.step).sort()).toEqual(['a', 'b']);
      await expect(reopened.getOutput('r1', 'b')).resolves.toEqual({ value: 'new' });
      // Rows of one event each, as before, and a commit's events in one row, read together.
      await reopened.commit({ runId: 'r1', leaseToken: 1, events: [event('r1', 4), event('r1', 5)] });
      expect((await reopened.readEvents('r1')).map((e) => e.seq)).toEqual([1, 2, 3, 4, 5]);
      // A column added since: who ran the run is kept once it ends.
      await reopened.commit({ runId: 'r1', leaseToken: 1, run: { status: 'completed', updatedAt: T0 + 9, endedAt: T0 + 9, ranBy: 'alice:1' }, events: [event('r1', 6)] });
      expect((await reopened.loadRun('r1'))?.run).toMatchObject({ status: 'completed', ranBy: 'alice:1' });
    } finally {
      await reopened.close();
    }
  });
});
