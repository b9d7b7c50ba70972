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
const LARGE = 1_000_000;
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

/**
 * Starts a child (running the chain, or recovering it) and SIGKILLs it as `killAt` says once the log
 * holds `lines` lines. For `journal`, the last logged step must read as running (logged at its
 * start) or completed (logged at its end). Resolves with the child's pid once it is dead.
 */
async function runAndKill(role: Role, args: Args, lines: number, killAt: KillAt): Promise<number> {
  const { db, log, runId } = args;
  const want = args.logAt === 'start' ? 'running' : 'completed';
  const child = spawn(process.execPath, ['--import', 'tsx', PROGRAM, role, ...argv(args)], { stdio: ['ignore', 'pipe', 'pipe'] });
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
        if (status === want) child.kill('SIGKILL');
      } while (again && alive());
    })().finally(() => (probing = undefined));
  };
  // One watcher on the directory sees the log's and the WAL's changes in the order they happened.
  const watcher = watch(dirname(db), (_, file) => {
    if (!alive()) return;
    if (file === basename(log) && armed === undefined) {
      const logged = linesOf(log);
      if (logged.length < lines) return;
      armed = logged.at(-1)!.name;
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

type Role = 'run' | 'recover' | 'auto';

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

async function recoverInChild(role: Exclude<Role, 'run'>, args: Args): Promise<ChildReport> {
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

interface Kill {
  /** Lines the killed process logs before the kill is armed. */
  readonly k: number;
  readonly killAt: KillAt;
}

interface Scenario {
  readonly title: string;
  readonly kills: readonly Kill[];
  readonly logAt: LogAt;
  readonly pad: number;
  readonly role: Exclude<Role, 'run'>;
  readonly sleep: number;
}

const scenarios: Scenario[] = [
  { title: 'early (3 steps logged), recovered by ctx.recover()', kills: [{ k: 3, killAt: 'log' }], logAt: 'start', pad: 0, role: 'recover', sleep: 20 },
  { title: 'midway (15 steps logged), recovered by recover: true', kills: [{ k: 15, killAt: 'log' }], logAt: 'start', pad: 0, role: 'auto', sleep: 20 },
  { title: 'late (28 steps logged), recovered by ctx.recover()', kills: [{ k: 28, killAt: 'log' }], logAt: 'start', pad: 0, role: 'recover', sleep: 20 },
  { title: 'at the first WAL write after step 5 began (its start record, maybe torn), recovered by ctx.recover()', kills: [{ k: 5, killAt: 'wal' }], logAt: 'start', pad: 0, role: 'recover', sleep: 40 },
  { title: 'once the start of step 6 is in the journal, recovered by recover: true', kills: [{ k: 6, killAt: 'journal' }], logAt: 'start', pad: 0, role: 'auto', sleep: 40 },
  { title: 'twice (after 8 steps, then 8 more in the recovering process), recovered by ctx.recover()', kills: [{ k: 8, killAt: 'log' }, { k: 8, killAt: 'log' }], logAt: 'start', pad: 0, role: 'recover', sleep: 20 },
  { title: 'during the checkpoint of a 1 MB output (step 20 returned), recovered by ctx.recover()', kills: [{ k: 20, killAt: 'log' }], logAt: 'end', pad: LARGE, role: 'recover', sleep: 20 },
  { title: 'just after the checkpoint of a 1 MB output (step 10 in the journal), recovered by recover: true', kills: [{ k: 10, killAt: 'journal' }], logAt: 'end', pad: LARGE, role: 'auto', sleep: 20 },
];

const SUM = ALL_STEPS.reduce((sum, _, i) => sum + (i + 1) ** 2, 0);

describe('crash recovery with a real process', () => {
  it.each(scenarios)('SIGKILLed $title: completed steps run once, the one in flight again, and the output is an uninterrupted run’s', async ({ title, kills, logAt, pad, role, sleep }) => {
    const runId = `crash-${scenarios.findIndex((s) => s.title === title)}`;
    const db = join(dir, `${runId}.db`);
    const log = join(dir, `${runId}.log`);
    writeFileSync(log, '');
    const args: Args = { db, log, runId, logAt, pad, sleep };

    // Each kill: the pid killed, the log's length after it, and what the journal held then.
    const crashes: { pid: number; end: number; atKill: RunInfo; completed: string[] }[] = [];
    for (const [i, { k, killAt }] of kills.entries()) {
      const pid = await runAndKill(i === 0 ? 'run' : role, args, linesOf(log).length + k, killAt);
      const end = linesOf(log).length;
      const atKill: RunInfo = await withFreshContext(db, (ctx) => ctx.getRun(runId));
      // A running run whose owner is gone, and a prefix of completed steps.
      expect(atKill).toMatchObject({ status: 'running', stale: true, recoveries: i });
      const completed = ALL_STEPS.filter((s) => atKill.steps[s]?.status === 'completed');
      expect(completed).toEqual(ALL_STEPS.slice(0, completed.length));
      crashes.push({ pid, end, atKill, completed });
    }

    const report = await recoverInChild(role, args);
    expect(report).toMatchObject({ status: 'completed', digest: reference.get(pad), sum: SUM, steps: STEPS });
    expect(report.resumed).toEqual([{ runId, reason: 'recovered' }]);
    if (role === 'recover') expect(report.taken).toEqual([runId]);

    // The side-effect log, one segment per process: each ran steps in order, from the first step the
    // journal did not hold as completed, so a checkpointed step never ran again.
    const lines = linesOf(log);
    const bounds = [0, ...crashes.map((c) => c.end), lines.length];
    const twice: string[] = [];
    let from = 0;
    for (let i = 0; i < bounds.length - 1; i++) {
      const segment = lines.slice(bounds[i], bounds[i + 1]);
      expect(segment.length, `process ${i + 1} logged`).toBeGreaterThan(0);
      expect(new Set(segment.map((l) => l.pid)), `process ${i + 1}`).toEqual(new Set([crashes[i]?.pid ?? segment[0]!.pid]));
      expect(segment.map((l) => l.name), `process ${i + 1}`).toEqual(ALL_STEPS.slice(from, from + segment.length));
      const last = from + segment.length;
      const crash = crashes[i];
      if (crash === undefined) {
        expect(last).toBe(STEPS);
        break;
      }
      // Each step before the last one logged was checkpointed before the next one began (start log) or returned (end log).
      const c = crash.completed.length;
      expect([last - 1, last], `completed at kill ${i + 1}`).toContain(c);
      if (c === last - 1) twice.push(ALL_STEPS[c]!);
      if (kills[i]!.killAt === 'journal' && logAt === 'start') {
        // Killed once the journal held the in-flight step's start: that step was running, not checkpointed.
        // (With the end log, the child may have finished the next step's work before the kill lands: either bound holds.)
        expect(c).toBe(last - 1);
      }
      from = c;
    }
    expect(new Set(lines.map((l) => l.pid)).size).toBe(kills.length + 1);
    const counts = new Map<string, number>();
    for (const l of lines) counts.set(l.name, (counts.get(l.name) ?? 0) + 1);
    expect(ALL_STEPS.filter((s) => counts.get(s) !== 1)).toEqual(twice);
    for (const s of ALL_STEPS) expect(counts.get(s), s).toBeLessThanOrEqual(2);

    // The file is readable by a fresh context: the run is completed, kept steps untouched, lost attempts recorded.
    await withFreshContext(db, async (ctx) => {
      expect((await ctx.listRuns({ status: 'completed' })).runs.map((r) => r.runId)).toContain(runId);
      expect((await ctx.listRuns({ stale: true })).runs).toEqual([]);
      const info = await ctx.getRun(runId);
      expect(info).toMatchObject({ status: 'completed', recoveries: kills.length, stale: false, running: [], progress: { done: STEPS, total: STEPS } });
      for (const { atKill, completed } of crashes) {
        for (const s of completed) expect(info.steps[s]!.endTime, s).toBe(atKill.steps[s]!.endTime);
      }
      for (const s of ALL_STEPS) {
        const attempts = info.steps[s]!.attempts;
        expect(attempts.at(-1)!.error, s).toBeUndefined();
        // A lost attempt is recorded when its start had reached the journal; never more attempts than executions.
        expect(attempts.length, s).toBeLessThanOrEqual(counts.get(s)!);
        for (const lost of attempts.slice(0, -1)) expect(lost.error?.code, s).toBe('WEIR_OWNER_LOST');
      }
      for (const [i, { killAt }] of kills.entries()) {
        if (killAt !== 'journal' || logAt !== 'start') continue;
        const inFlight = ALL_STEPS[crashes[i]!.completed.length]!;
        expect(crashes[i]!.atKill.steps[inFlight]).toMatchObject({ status: 'running' });
        expect(info.steps[inFlight]!.attempts.map((a) => a.error?.code)).toEqual(['WEIR_OWNER_LOST', undefined]);
      }
      const events = await storedEvents(ctx, runId);
      expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1));
      expect(events.filter((e) => e.type === 'run_resumed').map((e) => e.reason)).toEqual(kills.map(() => 'recovered'));
      expect(events.filter((e) => e.type === 'step_complete').map((e) => e.step)).toEqual(ALL_STEPS);
      expect(events.at(-1)?.type).toBe('run_complete');
    });
    if (process.env.WEIR_CRASH_VERBOSE !== undefined) {
      const seen = crashes.map(({ end, atKill, completed }) => `${completed.length} checkpointed at line ${end} (next step ${atKill.steps[ALL_STEPS[completed.length] ?? '']?.status ?? 'absent'})`);
      console.log(`${runId} ${title}: ${seen.join('; ')}; ran twice: ${twice.join(',') || 'none'}`);
    }
  }, 60_000);
});

/** Starts a `race` child: resolves once it is ready, with a function that lets it go and resolves to its report. */
async function racer(args: Args): Promise<() => Promise<ChildReport & { pid: number }>> {
  const child = spawn(process.execPath, ['--import', 'tsx', PROGRAM, 'race', ...argv(args)], { stdio: ['pipe', 'pipe', 'pipe'] });
  const failsafe = setTimeout(() => child.kill('SIGKILL'), SPAWN_TIMEOUT);
  let stdout = '';
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      if (stdout.startsWith('ready\n')) resolve();
    });
    void exited.then((code) => reject(new Error(`the racer exited (${code}) before it was ready\n${stderr}`)));
  });
  return async () => {
    child.stdin.end('go\n');
    const code = await exited;
    clearTimeout(failsafe);
    expect({ code, stderr }).toMatchObject({ code: 0 });
    return { ...(JSON.parse(stdout.slice('ready\n'.length)) as ChildReport), pid: child.pid! };
  };
}

describe('two processes recovering at once', () => {
  it('lets exactly one of them take the crashed run, and neither runs a checkpointed step again', async () => {
    const runId = 'crash-race';
    const args: Args = { db: join(dir, `${runId}.db`), log: join(dir, `${runId}.log`), runId, logAt: 'start', pad: 0, sleep: 20 };
    writeFileSync(args.log, '');
    await runAndKill('run', args, 10, 'log');
    const n1 = linesOf(args.log).length;
    const atKill: RunInfo = await withFreshContext(args.db, (ctx) => ctx.getRun(runId));
    const c = ALL_STEPS.filter((s) => atKill.steps[s]?.status === 'completed').length;

    const go = await Promise.all([racer(args), racer(args)]);
    const reports = await Promise.all(go.map((release) => release()));
    const winners = reports.filter((r) => r.taken.length > 0);
    expect(winners).toHaveLength(1);
    expect(winners[0]).toMatchObject({ taken: [runId], status: 'completed', digest: reference.get(0), sum: SUM, resumed: [{ runId, reason: 'recovered' }] });
    expect(reports.find((r) => r !== winners[0])).toMatchObject({ taken: [], resumed: [] });

    const after = linesOf(args.log).slice(n1);
    expect(new Set(after.map((l) => l.pid))).toEqual(new Set([winners[0]!.pid]));
    expect(after.map((l) => l.name)).toEqual(ALL_STEPS.slice(c));
    await withFreshContext(args.db, async (ctx) => {
      expect(await ctx.getRun(runId)).toMatchObject({ status: 'completed', recoveries: 1 });
      const events = await storedEvents(ctx, runId);
      expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1));
      expect(events.filter((e) => e.type === 'run_resumed')).toHaveLength(1);
    });
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
