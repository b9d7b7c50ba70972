/**
 * Memory held by a long-lived context, measured in a child process after forced full GCs: the heap
 * across 1,000,000 one-step runs on the memory store (whose history keeps the 10,000 most recent
 * finished runs, `keepFinishedRuns`) and 50,000 on a SQLite file, against the heap once the
 * history is full; the same without ever giving the event loop a turn; and the heap one run of a
 * sequential chain takes per step, live and once stored, from 1,000 to 10,000 steps. Run alone with
 * `node --import ./bench/loader/register.mjs bench/memory.bench.ts`.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { row, TS_LOADER } from './harness.js';

const PROBE = fileURLToPath(new URL('./programs/memory-probe.ts', import.meta.url));
/** The memory store's default history: finished runs kept. */
const HISTORY = 10_000;
const MB = 2 ** 20;

interface Sample {
  readonly runs: number;
  readonly heap: number;
  readonly ms: number;
}

interface ChainSample {
  readonly steps: number;
  readonly base: number;
  readonly live: number;
  readonly stored: number;
  readonly pruned: number;
  readonly ms: number;
}

/** Runs the probe with `--expose-gc` and returns the JSON lines it printed. */
async function probe(args: readonly string[]): Promise<Record<string, number>[]> {
  // A larger young generation only makes the probe faster: the heap is read after full collections.
  const child = spawn(process.execPath, ['--expose-gc', '--max-semi-space-size=32', ...TS_LOADER, PROBE, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
  const code = await new Promise<number | null>((resolve, reject) => child.on('error', reject).on('exit', resolve));
  if (code !== 0) throw new Error(`memory probe ${args.join(' ')} exited with ${code}`);
  return out
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as Record<string, number>);
}

const mb = (bytes: number): string => `${(bytes / MB).toFixed(1)} MB`;

/** Prints one series' samples against the heap once the history is full, its growth per run past that, and how many runs the store lists. */
async function series(title: string, args: readonly string[]): Promise<void> {
  const lines = await probe(args);
  const samples = lines.filter((l): l is Record<string, number> & Sample => 'runs' in l);
  const kept = lines.find((l) => 'kept' in l)?.kept;
  const full = samples.find((s) => s.runs >= HISTORY) ?? samples[0]!;
  for (const s of samples) {
    const rate = s.runs === 0 ? '' : `${Math.round(s.runs / (s.ms / 1000))}/s`;
    row(`${title}, ${s.runs.toLocaleString('en')} runs`, mb(s.heap), s.runs < full.runs ? '' : `${(s.heap / full.heap).toFixed(2)}x`, rate);
  }
  const last = samples.at(-1)!;
  if (last.runs > full.runs) {
    row(`  growth past ${full.runs.toLocaleString('en')} runs, per run`, '', `${((last.heap - full.heap) / (last.runs - full.runs)).toFixed(1)} B`, '');
  }
  row(`  runs the store lists at the end`, String(kept), '', `${(last.ms / 1000).toFixed(0)} s in all`);
}

export async function memoryBench(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'weir-memory-bench-'));
  try {
    console.log(`\n## Heap after forced GC, one long-lived context, one-step runs started 1000 at once (memory store keeps ${HISTORY.toLocaleString('en')} finished runs)\n`);
    row('case', 'heap', `vs ${HISTORY / 1000}k runs`, 'runs/s');
    await series('memory store', ['runs', 'memory', '1000000', '0,10000,100000,250000,500000,750000,1000000', 'turn']);
    await series('SQLite file', ['runs', join(dir, 'runs.db'), '50000', '0,10000,25000,50000', 'turn']);
    // Never a turn of the event loop between batches: what a tight loop of awaited runs holds.
    await series('memory, never a turn of the loop', ['runs', 'memory', '30000', '0,10000,20000,30000', 'busy']);

    console.log('\n## One run of a sequential chain, ~100-byte outputs: heap after forced GC, per step\n');
    row('case', 'live', 'stored', 'after prune');
    for (const steps of [1000, 2500, 5000, 10_000]) {
      const [s] = (await probe(['chain', String(steps)])) as unknown as [ChainSample];
      const per = (bytes: number): string => `${Math.round((bytes - s.base) / steps)} B`;
      row(`${steps.toLocaleString('en')}-step chain (${mb(s.live - s.base)} live, ${s.ms} ms)`, per(s.live), per(s.stored), mb(s.pruned - s.base));
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await memoryBench();
