import { type ChildProcess, fork } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ResultsManager, runStoreOf } from '../../src/results/results-manager.js';
import type { RunStore } from '../../src/storage/journal/run-store.js';
import { SqliteRunStore } from '../../src/storage/journal/sqlite/sqlite-run-store.js';
import { newRun, T0 } from './helpers.js';

let dir: string;
const children: ChildProcess[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'weir-store-proc-'));
});

afterEach(async () => {
  for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await rm(dir, { recursive: true, force: true });
});

function start(program: string, args: string[]): ChildProcess {
  const child = fork(join(import.meta.dirname, 'programs', program), args, { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  children.push(child);
  return child;
}

function nextMessage<T>(child: ChildProcess): Promise<T> {
  return new Promise((resolve, reject) => {
    child.once('message', (message) => resolve(message as T));
    child.once('exit', (code) => reject(new Error(`the child exited with ${code} before sending a message`)));
  });
}

function exited(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });
}

describe('SqliteRunStore leases across processes', () => {
  it('gives each expired lease to exactly one of two processes racing for it', async () => {
    const file = join(dir, 'runs.db');
    const runs = 60;
    const setup = new SqliteRunStore(file);
    for (let i = 0; i < runs; i++) await setup.createRun(newRun(`run-${i}`, { leaseExpiresAt: T0 }));
    await setup.close();

    const racers = [start('lease-race.ts', [file, 'one', String(runs)]), start('lease-race.ts', [file, 'two', String(runs)])];
    await Promise.all(racers.map((child) => nextMessage(child)));
    const results = racers.map((child) => nextMessage<Record<string, number>>(child));
    for (const child of racers) child.send('go');
    const [one, two] = await Promise.all(results);
    await Promise.all(racers.map(exited));

    const check = new SqliteRunStore(file);
    try {
      for (let i = 0; i < runs; i++) {
        const runId = `run-${i}`;
        const winners = [one![runId], two![runId]].filter((token) => token !== undefined);
        expect(winners, runId).toEqual([2]);
        const run = (await check.loadRun(runId))!.run;
        expect(run).toMatchObject({ leaseToken: 2, recoveries: 1 });
        expect(run.owner?.host).toBe(one![runId] === undefined ? 'two' : 'one');
      }
    } finally {
      await check.close();
    }
  });
});

describe('SqliteRunStore input entries across processes', () => {
  it('stores each key for exactly one of two processes racing to answer it', async () => {
    const file = join(dir, 'runs.db');
    const keys = 30;
    const setup = new SqliteRunStore(file);
    await setup.createRun(newRun('r1'));
    await setup.close();

    const racers = [start('input-race.ts', [file, 'one', String(keys)]), start('input-race.ts', [file, 'two', String(keys)])];
    await Promise.all(racers.map((child) => nextMessage(child)));
    const results = racers.map((child) => nextMessage<string[]>(child));
    for (const child of racers) child.send('go');
    const [one, two] = await Promise.all(results);
    await Promise.all(racers.map(exited));

    const check = new SqliteRunStore(file);
    try {
      const entries = await check.readInputs('r1');
      expect(entries).toHaveLength(keys);
      for (let i = 0; i < keys; i++) {
        const key = `key-${i}`;
        const winners = [one!.includes(key) ? 'one' : undefined, two!.includes(key) ? 'two' : undefined].filter((w) => w !== undefined);
        expect(winners, key).toHaveLength(1);
        expect(entries.find((e) => e.key === key)?.value, key).toBe(winners[0]);
      }
    } finally {
      await check.close();
    }
  });
});

const crashCases = [
  { kind: 'sqlite', path: () => join(dir, 'runs.db'), reopen: (path: string) => ({ store: new SqliteRunStore(path) as RunStore }), commits: 400 },
  {
    kind: 'disk',
    path: () => join(dir, 'results'),
    reopen: (path: string) => ({ store: runStoreOf(ResultsManager.disk(path)) }),
    commits: 60,
  },
] as const;

describe.each(crashCases)('a $kind journal after its writer is killed with SIGKILL', ({ kind, path, reopen, commits }) => {
  it('holds complete step records, and events dense up to lastSeq', async () => {
    const target = path();
    const writer = start('crash-writer.ts', [kind, target]);
    await new Promise<void>((resolve) => {
      let seen = 0;
      writer.on('message', () => {
        if (++seen === commits) resolve();
      });
    });
    writer.kill('SIGKILL'); // while it goes on committing
    await exited(writer);

    const { store } = reopen(target);
    try {
      let steps = 0;
      for (const runId of ['a', 'b', 'c', 'd']) {
        const loaded = await store.loadRun(runId);
        expect(loaded, runId).toBeDefined();
        const { run } = loaded!;
        const events = await store.readEvents(runId);
        expect(events.map((e) => e.seq)).toEqual(Array.from({ length: run.lastSeq }, (_, i) => i + 1));
        const completedEvents = new Set(events.filter((e) => e.type === 'step_complete').map((e) => (e as { step: string }).step));
        for (const step of loaded!.steps) {
          steps += 1;
          if (step.status === 'completed') {
            expect(step.hasOutput).toBe(true);
            expect(step.attempts).toHaveLength(1);
            const output = await store.getOutput(runId, step.step);
            expect(output?.value).toMatchObject({ i: Number(step.step.slice(1)), pad: 'x'.repeat(100) });
            expect((output?.value as { at: unknown }).at).toBeInstanceOf(Date);
          } else {
            expect(step.status).toBe('running');
            expect(step.hasOutput).toBe(false);
          }
        }
        // A step_complete event is never stored without its completed step record.
        const completed = new Set(loaded!.steps.filter((s) => s.status === 'completed').map((s) => s.step));
        for (const step of completedEvents) expect(completed.has(step), `${runId}/${step}`).toBe(true);
        // SQLite writes a commit all at once: the step records and the events agree exactly.
        if (kind === 'sqlite') expect(completed).toEqual(completedEvents);
      }
      expect(steps).toBeGreaterThan(0);
    } finally {
      await store.close();
    }
  });
});
