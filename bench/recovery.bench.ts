/**
 * Recovery after a crash, on SQLite NORMAL: a child starts RUNS short chains and is SIGKILLed midway;
 * a new context on the same file then recovers them. Measures the time from calling `recover()` to
 * the first `step_start` of a resumed run, to `recover()` resolving, and to every run completing.
 * Run alone with `node --import ./bench/loader/register.mjs bench/recovery.bench.ts`.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { FlowContext, ResultsManager } from '../src/index.js';
import { row, TS_LOADER } from './harness.js';
import { CHAIN_STEPS, recoveryChain, RUNS, STEP_MS } from './recovery-flow.js';

const CHILD = join(import.meta.dirname, 'programs', 'recovery-child.ts');
const ROUNDS = 5;
/** Steps completed (durably) across all runs before the kill: about 1.5 of each run's steps. */
const COMPLETED_BEFORE_KILL = Math.floor(RUNS * 1.5);

interface Round {
  readonly firstStep: number;
  readonly recovered: number;
  readonly allDone: number;
  /** Steps kept from the journal, and steps run in the recovering process. */
  readonly kept: number;
  readonly ran: number;
}

/** Starts the child and SIGKILLs it once it says every run started and enough steps completed. */
async function crashChild(db: string): Promise<void> {
  const child = spawn(process.execPath, [...TS_LOADER, CHILD, db, String(COMPLETED_BEFORE_KILL)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const failsafe = setTimeout(() => child.kill('SIGKILL'), 60_000);
  child.stdout.on('data', (chunk: Buffer) => {
    if (chunk.toString().includes('ready')) child.kill('SIGKILL');
  });
  const signal = await new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_, s) => resolve(s)));
  clearTimeout(failsafe);
  if (signal !== 'SIGKILL') throw new Error(`the child ended by itself (${String(signal)}) instead of being killed`);
}

async function round(dir: string, i: number): Promise<Round> {
  const db = join(dir, `recovery-${i}.db`);
  await crashChild(db);
  const ctx = new FlowContext({ results: ResultsManager.sqlite(db) });
  try {
    ctx.register(recoveryChain());
    let firstStep: number | undefined;
    let ran = 0;
    // The chain's root composite emits no step_start: every one is a leaf's attempt in this process.
    ctx.on('step_start', () => {
      firstStep ??= performance.now();
      ran++;
    });
    const start = performance.now();
    const handles = await ctx.recover();
    const recovered = performance.now();
    const results = await Promise.all(handles.map((h) => h.result()));
    const allDone = performance.now();
    if (handles.length !== RUNS || results.some((r) => r.status !== 'completed' || (r.output as Record<string, { n: number }>)[`s${CHAIN_STEPS - 1}`]?.n !== CHAIN_STEPS)) {
      throw new Error(`recovery went wrong: ${handles.length} runs taken, statuses ${[...new Set(results.map((r) => r.status))].join(', ')}`);
    }
    if (firstStep === undefined) throw new Error('no step started after recover()');
    return { firstStep: firstStep - start, recovered: recovered - start, allDone: allDone - start, kept: RUNS * CHAIN_STEPS - ran, ran };
  } finally {
    await ctx.close();
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

export async function recoveryBench(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'weir-recovery-bench-'));
  try {
    console.log(`\n## Recovery after kill -9: ${RUNS} runs of a ${CHAIN_STEPS}-step chain (${STEP_MS} ms a step), SQLite NORMAL\n`);
    row('round', 'first step ms', 'recover() ms', 'all done ms', 'kept/re-run');
    const rounds: Round[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      const r = await round(dir, i);
      rounds.push(r);
      row(String(i + 1), r.firstStep.toFixed(1), r.recovered.toFixed(1), r.allDone.toFixed(1), `${r.kept}/${r.ran}`);
    }
    const first = median(rounds.map((r) => r.firstStep));
    row(`median of ${ROUNDS}`, first.toFixed(1), median(rounds.map((r) => r.recovered)).toFixed(1), median(rounds.map((r) => r.allDone)).toFixed(1), '');
    console.log(`\naim: first resumed step within 60 ms of recover() (median: ${first.toFixed(1)} ms)`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  console.log(`weir recovery benchmark on Node ${process.version}`);
  await recoveryBench();
}
