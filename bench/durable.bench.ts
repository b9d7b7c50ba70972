/**
 * Durable runs through `FlowContext`: the cost of a durable step on SQLite (NORMAL and FULL) as a
 * ratio to the same run on the memory store (on a new file, and once its WAL has wrapped), both
 * warmed up alike, one-step runs per second started 1000 at once, and the
 * bytes a 200-step chain's journal takes against the sum of its outputs. Run alone with
 * `node --import ./bench/loader/register.mjs bench/durable.bench.ts`.
 */
import { statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import Database from 'better-sqlite3';
import { Flow, FlowContext, ResultsManager } from '../src/index.js';
import { encodeCompact } from '../src/storage/codec.js';
import { measure, perItem, row } from './harness.js';
import { Carried as N, Next, TEXT } from './processors.js';

/** Step commits after which a new file's WAL has grown to its largest and wrapped (10,000 pages, 2.5 a commit). */
const WAL_WRAPS_AFTER = 6000;

/** Steps run on each path before any is measured (the slowest process seen needed ~8,000 to settle). */
const WARMUP_STEPS = 16_000;

function chain(steps: number): Flow<N, Record<string, unknown>> {
  const root = Flow.sequential<N>(`chain-${steps}`);
  for (let i = 0; i < steps; i++) new Flow(new Next(), { name: `s${i}` }).registerTo(root);
  return root;
}

function checkpointedSize(file: string): number {
  const db = new Database(file);
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.close();
  return statSync(file).size;
}

/**
 * The floor under a durable step: the same commit written by hand with better-sqlite3 on a file of
 * its own, same pragmas (WAL, NORMAL): per transaction, the run's head read and one ~650-byte event
 * row (a step's start and completion events with its record and output, as the journal writes them).
 * Median µs per commit over `rounds` of `commits`, after a warm-up, so the WAL has wrapped as for the
 * chains' `wrapped` figure.
 */
function rawCommitFloor(file: string, commits: number, rounds: number): number {
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('wal_autocheckpoint = 10000');
  db.exec(`CREATE TABLE runs (run_id TEXT PRIMARY KEY NOT NULL, lease_token INTEGER NOT NULL);
    CREATE TABLE events (run_id TEXT NOT NULL, seq INTEGER NOT NULL, first_seq INTEGER, data TEXT NOT NULL, records TEXT, PRIMARY KEY (run_id, seq)) WITHOUT ROWID;`);
  const head = db.prepare('SELECT lease_token, coalesce((SELECT max(seq) FROM events WHERE run_id = ?), 0) AS last_seq FROM runs WHERE run_id = ?');
  const insert = db.prepare('INSERT INTO events (run_id, seq, first_seq, data, records) VALUES (?, ?, ?, ?, ?)');
  const data = 'e'.repeat(261);
  const records = 'r'.repeat(386);
  const commit = db.transaction((runId: string) => {
    const { last_seq: last } = head.get(runId, runId) as { last_seq: number };
    insert.run(runId, last + 2, last + 1, data, records);
  });
  const insertRun = db.prepare('INSERT INTO runs VALUES (?, 1)');
  let runId = '';
  const newRun = (i: number) => {
    runId = `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`;
    insertRun.run(runId);
  };
  newRun(0);
  for (let i = 0; i < WAL_WRAPS_AFTER; i++) commit(runId);
  const times: number[] = [];
  for (let r = 0; r < rounds; r++) {
    newRun(r + 1);
    const start = performance.now();
    for (let i = 0; i < commits; i++) commit(runId);
    times.push(((performance.now() - start) * 1000) / commits);
  }
  db.close();
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)]!;
}

export async function durableBench(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'weir-durable-bench-'));
  try {
    console.log('\n## Durable runs: sequential chains through FlowContext, ~100-byte outputs\n');
    row('case', 'median', 'per step', 'vs memory');
    const flows = { 200: chain(200), 1000: chain(1000) };
    // V8 compiles a function to optimised code only after some thousands of calls, and a chain step
    // runs a few hundred small ones: the memory path and the durable path (on a file of its own) are
    // both run WARMUP_STEPS steps first, or the case measured first pays for their compilation.
    const prune = (c: FlowContext) => () => c.prune({ olderThan: new Date(Date.now() + 1) });
    const memory = new FlowContext();
    const warm = new FlowContext({ results: ResultsManager.sqlite(join(dir, 'warm-up.db')) });
    for (let i = 0; i < WARMUP_STEPS / 200; i++) {
      for (const c of [memory, warm]) {
        await c.run(flows[200], { n: 0, text: TEXT });
        await prune(c)();
      }
    }
    await warm.close();
    for (const steps of [200, 1000] as const) {
      const flow = flows[steps];
      const mem = await measure(`memory ${steps}`, () => memory.run(flow, { n: 0, text: TEXT }), { warmup: 5, runs: 21, after: prune(memory) });
      row(`${steps}-step chain, memory store (baseline)`, `${mem.ms.toFixed(2)} ms`, perItem(mem, steps), '1.0x');
      for (const synchronous of ['NORMAL', 'FULL'] as const) {
        const ctx = new FlowContext({ results: ResultsManager.sqlite(join(dir, `chain-${steps}-${synchronous}.db`), { synchronous }) });
        const runs = synchronous === 'FULL' && steps === 1000 ? 3 : 7;
        const m = await measure(`sqlite ${synchronous} ${steps}`, () => ctx.run(flow, { n: 0, text: TEXT }), { warmup: 2, runs, after: prune(ctx) });
        const overhead = ((m.ms - mem.ms) * 1000) / steps;
        row(`${steps}-step chain, SQLite ${synchronous}`, `${m.ms.toFixed(2)} ms`, perItem(m, steps), `${(m.ms / mem.ms).toFixed(1)}x`);
        row(`  durability overhead per step`, '', `${overhead.toFixed(1)} µs`, '');
        if (synchronous === 'NORMAL') {
          // A new file's WAL grows (each commit appends to it) until it first wraps, after about 4,000
          // step commits; from then on commits overwrite it. The same chain once it has wrapped:
          const wrapped = await measure(`sqlite wrapped ${steps}`, () => ctx.run(flow, { n: 0, text: TEXT }), { warmup: Math.ceil(WAL_WRAPS_AFTER / steps), runs: 7, after: prune(ctx) });
          row(`  the same once the WAL has wrapped`, `${wrapped.ms.toFixed(2)} ms`, perItem(wrapped, steps), `${(wrapped.ms / mem.ms).toFixed(1)}x`);
          row(`  durability overhead per step`, '', `${(((wrapped.ms - mem.ms) * 1000) / steps).toFixed(1)} µs`, '');
        }
        await ctx.close();
      }
    }
    await memory.close();
    const floor = rawCommitFloor(join(dir, 'raw-floor.db'), 1000, 7);
    row('raw better-sqlite3, the same commit by hand (floor)', '', `${floor.toFixed(1)} µs`, '');
    console.log('(aim: under 50 µs of durability overhead per step, NORMAL, for 200 and 1000 steps)');

    console.log('\n## One-step runs, 1000 started at once (ctx.start), then all awaited\n');
    row('case', 'median', 'runs/s', '');
    const one = new Flow(new Next(), { name: 'one' });
    for (const kind of ['memory', 'sqlite'] as const) {
      const ctx = new FlowContext({ results: kind === 'memory' ? ResultsManager.memory() : ResultsManager.sqlite(join(dir, 'one-step.db')), concurrency: 1000 });
      const m = await measure(
        `one-step ${kind}`,
        () => Promise.all(Array.from({ length: 1000 }, (_, i) => ctx.start(one, { n: i, text: TEXT }).result())),
        // Ten rounds first: the first few run code not yet optimised (two warm-up rounds left it at half speed).
        { warmup: 10, runs: 7, after: () => ctx.prune({ olderThan: new Date(Date.now() + 1) }) },
      );
      await ctx.close();
      row(`1000 one-step runs, ${kind === 'memory' ? 'memory store' : 'SQLite NORMAL'}`, `${m.ms.toFixed(1)} ms`, (1000 / (m.ms / 1000)).toFixed(0), '');
    }

    console.log('\n## Bytes stored for one chain (SQLite, file growth after a checkpoint of the WAL)\n');
    row('case', 'bytes', 'outputs', 'ratio');
    for (const steps of [100, 200, 400]) {
      const file = join(dir, `bytes-${steps}.db`);
      const warm = new FlowContext({ results: ResultsManager.sqlite(file) });
      await warm.run(new Flow(new Next(), { name: 'warm' }), { n: 0, text: TEXT });
      await warm.close();
      const empty = checkpointedSize(file);
      const ctx = new FlowContext({ results: ResultsManager.sqlite(file) });
      const result = await ctx.run(chain(steps), { n: 0, text: TEXT });
      await ctx.close();
      const grown = checkpointedSize(file) - empty;
      const outputs = Object.values(result.output as Record<string, unknown>).reduce<number>((sum, o) => sum + encodeCompact(o).length, 0);
      row(`${steps}-step chain journal`, String(grown), String(outputs), `${(grown / outputs).toFixed(1)}x`);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await durableBench();
