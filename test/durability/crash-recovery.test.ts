import { execFile, spawn } from 'node:child_process';
import { readFileSync, watch, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FlowContext, ResultsManager, type WeirEvent } from '../../src/index.js';
import { buildChain, CHAIN_INPUT, digestOf, STEPS, stepName, type LogAt } from '../fixtures/crash-chain.js';

const PROGRAM = join(import.meta.dirname, '..', 'fixtures', 'programs', 'crash-chain.ts');
const SPAWN_TIMEOUT = 30_000;
/** The large variant: each output carries this many characters, so a checkpoint takes milliseconds to write. */
const LARGE = 2_000_000;
// `RunInfo` is not exported from the package's index.
type RunInfo = Awaited<ReturnType<FlowContext['getRun']>>;
const ALL_STEPS = Array.from({ length: STEPS }, (_, i) => stepName(i + 1));

let dir: string;
/** Digests of uninterrupted runs' outputs, by pad size. */
const reference = new Map<number, string>();

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'weir-crash-'));
  // The uninterrupted run, in this process on a memory store: same flow, same input.
  for (const pad of [0, LARGE]) {
    const log = join(dir, `reference-${pad}.log`);
    writeFileSync(log, '');
    const ctx = new FlowContext();
    try {
      const result = await ctx.run(buildChain({ log, logAt: 'end', pad, sleep: 1 }), CHAIN_INPUT);
      expect(result.status).toBe('completed');
      expect(namesIn(log)).toEqual(ALL_STEPS);
      reference.set(pad, digestOf(result.output));
    } finally {
      await ctx.close();
    }
  }
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

interface Line {
  readonly name: string;
  readonly pid: number;
}

function linesOf(log: string): Line[] {
  return readFileSync(log, 'utf8')
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => {
      const [name, pid] = l.split(' ');
      return { name: name!, pid: Number(pid) };
    });
}

function namesIn(log: string): string[] {
  return linesOf(log).map((l) => l.name);
}

/**
 * When the parent kills, once the log holds `k` lines: at once (`log`); at the first write to the WAL
 * after that, which may tear the transaction (`wal`); or once a fresh context reads the last logged
 * step as running in the journal (`journal`).
 */
type KillAt = 'log' | 'wal' | 'journal';

/** Starts the chain in a child and SIGKILLs it as `killAt` says. Resolves with its pid once it is dead. */
async function runAndKill(args: Args, k: number, killAt: KillAt): Promise<number> {
  const { db, log, runId } = args;
  const child = spawn(process.execPath, ['--import', 'tsx', PROGRAM, 'run', ...argv(args)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const alive = (): boolean => child.exitCode === null && child.signalCode === null;
  let armed: string | undefined;
  let probe: FlowContext | undefined;
  let probing: Promise<void> | undefined;
  let again = false;
  // Reads the journal through the public API, one read at a time, again after each WAL write seen meanwhile.
  const probeJournal = (): void => {
    if (probing !== undefined) {
      again = true;
      return;
    }
    probing = (async () => {
      do {
        again = false;
        probe ??= new FlowContext({ results: ResultsManager.sqlite(db) });
        const info = await probe.getRun(runId).catch(() => undefined);
        const status = info?.steps[armed!]?.status;
        if (status === 'running' || status === 'completed') child.kill('SIGKILL');
      } while (again && alive());
    })().finally(() => (probing = undefined));
  };
  // One watcher on the directory sees the log's and the WAL's changes in the order they happened.
  const watcher = watch(dirname(db), (_, file) => {
    if (!alive()) return;
    if (file === basename(log) && armed === undefined) {
      const lines = linesOf(log).length;
      if (lines < k) return;
      armed = stepName(lines);
      if (killAt === 'log') child.kill('SIGKILL');
      else if (killAt === 'journal') probeJournal();
    } else if (file === `${basename(db)}-wal` && armed !== undefined) {
      if (killAt === 'wal') child.kill('SIGKILL');
      else if (killAt === 'journal') probeJournal();
    }
  });
  const failsafe = setTimeout(() => child.kill('SIGKILL'), SPAWN_TIMEOUT);
  try {
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.on('exit', (c, s) => resolve([c, s])));
    expect({ code, signal, stderr }).toMatchObject({ code: null, signal: 'SIGKILL' });
  } finally {
    watcher.close();
    clearTimeout(failsafe);
    await probing;
    await probe?.close();
  }
  expect(child.pid).toBeDefined();
  return child.pid!;
}

interface Args {
  readonly db: string;
  readonly log: string;
  readonly runId: string;
  readonly logAt: LogAt;
  readonly pad: number;
  readonly sleep: number;
}

function argv({ db, log, runId, logAt, pad, sleep }: Args): string[] {
  return [db, log, runId, logAt, String(pad), String(sleep)];
}

interface ChildReport {
  status: string;
  digest: string;
  sum: number;
  steps: number;
  taken: string[];
  resumed: { runId: string; reason: string }[];
}

async function recoverInChild(role: 'recover' | 'auto', args: Args): Promise<ChildReport> {
  const { stdout } = await new Promise<{ stdout: string }>((resolve, reject) => {
    execFile(process.execPath, ['--import', 'tsx', PROGRAM, role, ...argv(args)], { timeout: SPAWN_TIMEOUT, maxBuffer: 1 << 20 }, (error, out, err) => {
      if (error !== null) reject(new Error(`the recovering child failed: ${error.message}\n${err}`));
      else resolve({ stdout: out });
    });
  });
  return JSON.parse(stdout) as ChildReport;
}

/** Reads the journal through a fresh context on the same file, with the chain registered (or not). */
async function withFreshContext<T>(db: string, fn: (ctx: FlowContext) => Promise<T>, register = true): Promise<T> {
  const ctx = new FlowContext({ results: ResultsManager.sqlite(db) });
  if (register) ctx.register(buildChain({ log: join(dir, 'unused.log'), logAt: 'start', pad: 0, sleep: 0 }));
  try {
    return await fn(ctx);
  } finally {
    await ctx.close();
  }
}

async function storedEvents(ctx: FlowContext, runId: string): Promise<WeirEvent[]> {
  const events: WeirEvent[] = [];
  for await (const event of (await ctx.handle(runId)).events()) events.push(event);
  return events;
}

interface Scenario {
  readonly title: string;
  readonly k: number;
  readonly logAt: LogAt;
  readonly pad: number;
  readonly role: 'recover' | 'auto';
  readonly sleep: number;
  readonly killAt: KillAt;
}

const scenarios: Scenario[] = [
  { title: 'early (3 steps logged), recovered by ctx.recover()', k: 3, logAt: 'start', pad: 0, role: 'recover', sleep: 20, killAt: 'log' },
  { title: 'midway (15 steps logged), recovered by recover: true', k: 15, logAt: 'start', pad: 0, role: 'auto', sleep: 20, killAt: 'log' },
  { title: 'late (28 steps logged), recovered by ctx.recover()', k: 28, logAt: 'start', pad: 0, role: 'recover', sleep: 20, killAt: 'log' },
  { title: 'at the first WAL write after step 5 began (its start record, maybe torn), recovered by ctx.recover()', k: 5, logAt: 'start', pad: 0, role: 'recover', sleep: 60, killAt: 'wal' },
  { title: 'once the start of step 6 is in the journal, recovered by recover: true', k: 6, logAt: 'start', pad: 0, role: 'auto', sleep: 60, killAt: 'journal' },
  { title: 'during the checkpoint of a 2 MB output (step 8 returned), recovered by recover: true', k: 8, logAt: 'end', pad: LARGE, role: 'auto', sleep: 20, killAt: 'log' },
  { title: 'during the checkpoint of a 2 MB output (step 20 returned), recovered by ctx.recover()', k: 20, logAt: 'end', pad: LARGE, role: 'recover', sleep: 20, killAt: 'log' },
];

describe('crash recovery with a real process', () => {
  it.each(scenarios)('SIGKILLed $title: completed steps run once, the one in flight again, and the output is an uninterrupted run’s', async ({ k, logAt, pad, role, sleep, killAt }) => {
    const runId = `crash-${killAt}-${logAt}-${k}`;
    const db = join(dir, `${runId}.db`);
    const log = join(dir, `${runId}.log`);
    writeFileSync(log, '');
    const args: Args = { db, log, runId, logAt, pad, sleep };

    const firstPid = await runAndKill(args, k, killAt);
    const before = linesOf(log);
    const n1 = before.length;
    expect(n1).toBeGreaterThanOrEqual(k);
    expect(n1).toBeLessThan(STEPS);
    expect(before.every((l) => l.pid === firstPid)).toBe(true);
    // The dead process ran the steps in order, each once.
    expect(before.map((l) => l.name)).toEqual(ALL_STEPS.slice(0, n1));

    // What the journal held at the kill: a running run whose owner is gone, and a prefix of completed steps.
    const atKill: RunInfo = await withFreshContext(db, (ctx) => ctx.getRun(runId));
    expect(atKill).toMatchObject({ status: 'running', stale: true, recoveries: 0 });
    const completed = ALL_STEPS.filter((s) => atKill.steps[s]?.status === 'completed');
    const c = completed.length;
    expect(completed).toEqual(ALL_STEPS.slice(0, c));
    // Every step that began (start log) or returned (end log) before the last logged one was checkpointed before its dependant started.
    expect(c === n1 - 1 || c === n1).toBe(true);

    const report = await recoverInChild(role, args);
    expect(report).toMatchObject({ status: 'completed', digest: reference.get(pad), sum: ALL_STEPS.reduce((s, _, i) => s + (i + 1) ** 2, 0), steps: STEPS });
    expect(report.resumed).toEqual([{ runId, reason: 'recovered' }]);
    if (role === 'recover') expect(report.taken).toEqual([runId]);

    // The side-effect log: completed steps never ran again; the recovery began at the first step not checkpointed.
    const after = linesOf(log).slice(n1);
    const secondPid = after[0]?.pid;
    expect(secondPid).not.toBe(firstPid);
    expect(after.every((l) => l.pid === secondPid)).toBe(true);
    expect(after.map((l) => l.name)).toEqual(ALL_STEPS.slice(c));
    const counts = new Map<string, number>();
    for (const l of linesOf(log)) counts.set(l.name, (counts.get(l.name) ?? 0) + 1);
    for (const s of completed) expect(counts.get(s), s).toBe(1);
    const twice = ALL_STEPS.filter((s) => counts.get(s) !== 1);
    // At most one step ran twice: the one in flight at the kill (its checkpoint had not landed).
    expect(twice).toEqual(c === n1 ? [] : [stepName(n1)]);
    for (const s of ALL_STEPS) expect(counts.get(s), s).toBeGreaterThanOrEqual(1);

    // The file is readable by a fresh context: the run is completed, kept steps untouched, the lost attempt recorded.
    await withFreshContext(db, async (ctx) => {
      const listed = await ctx.listRuns({ status: 'completed' });
      expect(listed.runs.map((r) => r.runId)).toContain(runId);
      expect((await ctx.listRuns({ stale: true })).runs).toEqual([]);
      const info = await ctx.getRun(runId);
      expect(info).toMatchObject({ status: 'completed', recoveries: 1, stale: false, progress: { done: STEPS, total: STEPS } });
      for (const s of completed) {
        expect(info.steps[s]!.attempts, s).toHaveLength(1);
        expect(info.steps[s]!.attempts[0]!.error, s).toBeUndefined();
        expect(info.steps[s]!.endTime, s).toBe(atKill.steps[s]!.endTime);
      }
      for (const s of ALL_STEPS.slice(c)) {
        const attempts = info.steps[s]!.attempts;
        expect(attempts.at(-1)!.error, s).toBeUndefined();
        // The attempt lost with its process is recorded when its start had reached the journal; never more attempts than executions.
        expect(attempts.length, s).toBeLessThanOrEqual(counts.get(s)!);
        for (const lost of attempts.slice(0, -1)) expect(lost.error?.code, s).toBe('WEIR_OWNER_LOST');
      }
      const events = await storedEvents(ctx, runId);
      expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1));
      expect(events.filter((e) => e.type === 'run_resumed')).toMatchObject([{ reason: 'recovered' }]);
      expect(events.filter((e) => e.type === 'step_complete').map((e) => e.step)).toEqual(ALL_STEPS);
      expect(events.at(-1)?.type).toBe('run_complete');
    });
    if (killAt === 'journal') {
      // Killed at the journal write after step n1 began: its start was recorded, so its lost attempt is too.
      expect(atKill.steps[stepName(n1)]).toMatchObject({ status: 'running' });
      expect(twice).toEqual([stepName(n1)]);
      await withFreshContext(db, async (ctx) => {
        const attempts = (await ctx.getRun(runId)).steps[stepName(n1)]!.attempts;
        expect(attempts).toHaveLength(2);
        expect(attempts[0]!.error).toMatchObject({ code: 'WEIR_OWNER_LOST' });
        expect(attempts[1]!.error).toBeUndefined();
      });
    }
    if (process.env.WEIR_CRASH_VERBOSE !== undefined) {
      const inFlight = atKill.steps[stepName(n1)];
      console.log(`${runId}: ${n1} logged, ${c} checkpointed at the kill, step ${n1} record ${inFlight?.status ?? 'absent'}; ran twice: ${twice.join(',') || 'none'}`);
    }
  }, 60_000);
});

describe('reading a stored run without its flow', () => {
  it('counts only leaf steps in getRun progress, even when the reading context has not registered the flow', async () => {
    const db = join(dir, 'unregistered.db');
    const log = join(dir, 'unregistered.log');
    writeFileSync(log, '');
    const ctx = new FlowContext({ results: ResultsManager.sqlite(db) });
    try {
      expect((await ctx.run(buildChain({ log, logAt: 'end', pad: 0, sleep: 0 }), CHAIN_INPUT, { runId: 'plain' })).status).toBe('completed');
    } finally {
      await ctx.close();
    }
    const registered = await withFreshContext(db, (fresh) => fresh.getRun('plain'));
    const unregistered = await withFreshContext(db, (fresh) => fresh.getRun('plain'), false);
    expect(registered.progress).toEqual({ done: STEPS, total: STEPS });
    // The composite `chain` has a step record too; it is not a leaf step.
    expect(unregistered.progress).toEqual(registered.progress);
  });
});
