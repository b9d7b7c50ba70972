import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, watch, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FlowContext, ResultsManager, type FlowContextOptions, type WeirEvent } from '../../src/index.js';
import { fcParams, Tally, testTimeout } from '../support/property.js';
import { brokenEventRule } from './check-events.js';
import { expectModel } from './compare.js';
import type { CrashCase, KillPoint } from './crash-case.js';
import { expectedRun, type Expected } from './model.js';
import { buildFlow, casePlan, leavesOf, nameTree, type CasePlan, type CompositePlan, type Named, type NodePlan } from './plan.js';
import { TEST_HOOKS, WRITES } from './programs/store-writes.js';
import type { RunStore } from '../../src/storage/journal/run-store.js';
import type { Effect } from './scripted.js';

// Random flows on a SQLite file, run by a child process that is SIGKILLed up to three times (at a
// random store write, before it or once durable, or inside a commit as the WAL changes) and
// recovered by a new process each time: no completed step runs again, the run ends as an
// uninterrupted one does, its events stay dense and ordered.

const PROGRAM = join(import.meta.dirname, 'programs', 'crash-case.ts');
const CHILD_TIMEOUT = 60_000;
let dir: string;
let cases = 0;
const tally = new Tally('crash points');

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'weir-crash-points-'));
});
afterAll(() => {
  tally.report();
  rmSync(dir, { recursive: true, force: true });
});

interface Exit {
  readonly pid: number;
  readonly killed: boolean;
  readonly stdout: string;
}

/**
 * Runs one child. A kill point inside the child dies around its `n`-th store write; a `wal` one is
 * SIGKILLed from here at the first change of the WAL file once the effects file has `n` more lines
 * (a commit under way, maybe torn).
 */
async function child(c: CrashCase, file: string, role: 'run' | 'recover', n: number, when: KillPoint['when'] | 'never'): Promise<Exit> {
  const inChild = when === 'before' || when === 'after';
  const proc = spawn(process.execPath, ['--import', 'tsx', PROGRAM, role, file, String(inChild ? n : 0), inChild ? when : 'after'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  proc.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  proc.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const effectsBefore = effectsOf(c.effects).length;
  let armed = false;
  const watcher =
    when === 'wal'
      ? watch(dir, (_, name) => {
          if (name === basename(c.effects)) armed ||= effectsOf(c.effects).length >= effectsBefore + n - 1;
          else if (armed && name === `${basename(c.db)}-wal`) proc.kill('SIGKILL');
        })
      : undefined;
  const failsafe = setTimeout(() => proc.kill('SIGKILL'), CHILD_TIMEOUT);
  try {
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => proc.on('exit', (c, s) => resolve([c, s])));
    if (signal !== 'SIGKILL' && code !== 0) throw new Error(`the ${role} child exited with ${code ?? signal}: ${stderr}`);
    return { pid: proc.pid!, killed: signal === 'SIGKILL', stdout };
  } finally {
    watcher?.close();
    clearTimeout(failsafe);
  }
}

async function withContext<T>(db: string, fn: (ctx: FlowContext) => Promise<T>): Promise<T> {
  const ctx = new FlowContext({ results: ResultsManager.sqlite(db) });
  try {
    return await fn(ctx);
  } finally {
    await ctx.close();
  }
}

function effectsOf(file: string): Effect[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Effect);
}

/** Runs the case uninterrupted here, on a file of its own: it ends as the model says; resolves to the store writes it made. */
async function uninterruptedWrites(c: CrashCase, root: Named, expected: Expected): Promise<number> {
  let writes = 0;
  const counting = (store: RunStore): RunStore =>
    new Proxy(store, {
      get(target, key) {
        const value: unknown = Reflect.get(target, key);
        if (typeof value !== 'function') return value;
        if (typeof key === 'string' && WRITES.has(key)) writes++;
        return (value as (...a: unknown[]) => unknown).bind(target);
      },
    });
  const ctx = new FlowContext({ results: ResultsManager.sqlite(`${c.db}.uninterrupted`), [TEST_HOOKS]: { wrapStore: counting } } as FlowContextOptions);
  try {
    expectModel(await ctx.run(buildFlow(root), c.input, { runId: c.runId, mode: 'batch' }), expected, root);
  } finally {
    await ctx.close();
  }
  return writes;
}

async function checkCrashes(plan: CasePlan, points: readonly KillPoint[]): Promise<void> {
  const prefix = `x${++cases}.`;
  const c: CrashCase = { plan, prefix, input: { case: cases }, runId: `${prefix}run`, db: join(dir, `${prefix}db`), effects: join(dir, `${prefix}effects`) };
  const file = join(dir, `${prefix}json`);
  writeFileSync(file, JSON.stringify(c));
  const root = nameTree(plan.root, prefix);
  const expected = expectedRun(root, c.input, 'batch');
  const writes = await uninterruptedWrites(c, root, expected);

  // After each kill: the pids that ran so far, and the steps the journal held as completed.
  const crashes: { pids: Set<number>; completed: Set<string> }[] = [];
  const pids = new Set<number>();
  let finished: Exit | undefined;
  let created = false;
  let ended = false;
  for (const point of points) {
    const n = 1 + Math.floor(point.at * (point.when === 'wal' ? 2 * leavesOf(root).length : writes));
    const exit = await child(c, file, created ? 'recover' : 'run', n, point.when);
    pids.add(exit.pid);
    if (!exit.killed) {
      finished = exit;
      break;
    }
    tally.add('kills');
    tally.add(`kills ${point.when}`);
    const info = await withContext(c.db, (ctx) => ctx.getRun(c.runId).catch(() => undefined));
    // Killed before the run was created: the next process starts it again.
    if (info === undefined) {
      expect(effectsOf(c.effects)).toEqual([]);
      pids.clear();
      continue;
    }
    created = true;
    // Killed once its end was durable: nothing is left to recover.
    if (info.status === 'completed' || info.status === 'failed') {
      ended = true;
      break;
    }
    if (Object.values(info.steps).some((s) => s.status === 'completed')) tally.add('kills after a completed step');
    crashes.push({ pids: new Set(pids), completed: new Set(Object.entries(info.steps).filter(([, s]) => s.status === 'completed').map(([name]) => name)) });
  }
  if (!ended) {
    finished ??= await child(c, file, created ? 'recover' : 'run', 0, 'never');
    expect(JSON.parse(finished.stdout)).toMatchObject({ status: expected.status });
  }

  await withContext(c.db, async (ctx) => {
    const result = await (await ctx.handle(c.runId)).result();
    expectModel(result, expected, root, { lostAttempts: true });
    const lost = Object.values(result.steps).map((s) => s.attempts.filter((a) => a.error?.code === 'WEIR_OWNER_LOST').length);
    tally.add('lost attempts', lost.reduce((a, b) => a + b, 0));
    // A kill loses at most the attempt each step had in flight.
    expect(Math.max(0, ...lost)).toBeLessThanOrEqual(crashes.length);
    const events: WeirEvent[] = [];
    for await (const e of (await ctx.handle(c.runId)).events({ after: 0 })) events.push(e);
    const attempts = new Map(leavesOf(root).map((leaf) => [leaf.name, result.steps[leaf.name]?.attempts.length ?? 0]));
    expect(brokenEventRule(events, root, attempts)).toBeUndefined();
  });

  tally.add('cases');
  tally.add('steps', leavesOf(root).length);
  // No step the journal held as completed at a kill ran again in a later process.
  const effects = effectsOf(c.effects);
  for (const crash of crashes) {
    const again = effects.filter((e) => !crash.pids.has(e.pid) && e.phase === 'start' && crash.completed.has(e.step));
    expect(again).toEqual([]);
  }
}

/**
 * A flaky step that fails more often than it may retry fails every attempt here: a lost attempt
 * shifts the attempt numbers it sees, so failing "the first N" could pass on the last counted one.
 */
function mustFail(plan: CompositePlan): CompositePlan {
  const children = plan.children.map((child): NodePlan => {
    if (child.kind !== 'leaf') return mustFail(child);
    const b = child.behaviour;
    return b.kind === 'flaky' && b.failures > child.retries ? { ...child, behaviour: { kind: 'flaky', failures: 99 } } : child;
  });
  return { ...plan, children };
}

const killPoint: fc.Arbitrary<KillPoint> = fc.record({
  at: fc.integer({ min: 0, max: 999 }).map((n) => n / 1000),
  when: fc.constantFrom('before' as const, 'after' as const, 'wal' as const),
});

describe('crash points on SQLite', () => {
  it('a run SIGKILLed up to three times at random writes ends as an uninterrupted run, and no completed step runs again', async () => {
    await fc.assert(
      fc.asyncProperty(
        casePlan({ executors: ['inline', 'thread'], depth: 3 }).map((p): CasePlan => ({ root: mustFail(p.root), mode: 'batch' })),
        fc.array(killPoint, { minLength: 1, maxLength: 3 }),
        checkCrashes,
      ),
      // A failure shrinks for as long as the time left allows (each try spawns processes), then reports the smallest case found.
      fcParams(6, { timeout: 120_000, interruptAfterTimeLimit: testTimeout(200_000) }),
    );
    expect(tally.get('kills')).toBeGreaterThan(0);
  }, testTimeout(240_000));
});
