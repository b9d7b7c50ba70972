/**
 * The thread and process executors: dispatch cost per step against raw Piscina and a raw
 * `child_process.fork` round trip, idle (a chain: each step awaited in turn, so the worker sleeps
 * between tasks) and awake (a wide parallel graph: every step in flight at once, the pool kept busy),
 * and a CPU-heavy graph (gzip of the TypeScript compiler's files) inline, on threads, in processes,
 * and as a hand-written Piscina script.
 */
import { fork } from 'node:child_process';
import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import { Flow, FlowContext, type LeafType } from '../src/index.js';
import { measure, perItem, row, TS_LOADER, type Measurement } from './harness.js';
import { GzipFiles, gzipFiles, Inc, rawGzipWorker, rawIncChild, rawIncWorker } from './processors.js';

const STEPS = 200;

/** Rounds run before any is timed: weir's step path settles into optimised code after some thousands of steps. */
const WARMUP_ROUNDS = 40;

/** Keeps the main thread busy for `us` microseconds, as a run's bookkeeping between two tasks would. */
function spin(us: number): void {
  const end = performance.now() + us / 1000;
  while (performance.now() < end);
}

type Counter = { n: number };

/** `STEPS` raw round trips, each awaited before the next, the main thread busy `busy()` µs after each (none when 0). */
function awaitedInTurn(roundTrip: (value: Counter) => Promise<Counter>, busy: () => number): () => Promise<void> {
  return async () => {
    let value = { n: 0 };
    for (let i = 0; i < STEPS; i++) {
      value = await roundTrip(value);
      const us = busy();
      if (us > 0) spin(us);
    }
  };
}

function chain(type: LeafType): Flow<unknown, Record<string, unknown>> {
  const root = Flow.sequential(`chain-${type}`);
  for (let i = 0; i < STEPS; i++) new Flow(new Inc(), { name: `s${i}`, type }).registerTo(root);
  return root;
}

/** `STEPS` independent steps: all start at once, so the pool always has a task waiting. */
function wide(type: LeafType): Flow<unknown, Record<string, unknown>> {
  const root = Flow.parallel(`wide-${type}`);
  for (let i = 0; i < STEPS; i++) new Flow(new Inc(), { name: `w${i}`, type }).registerTo(root);
  return root;
}

/** Splits files into `bins` groups of about equal size, largest group first. */
async function binsOf(dir: string, bins: number): Promise<string[][]> {
  const files: { file: string; size: number }[] = [];
  for (const name of await readdir(dir)) {
    const file = join(dir, name);
    const info = await stat(file);
    if (info.isFile()) files.push({ file, size: info.size });
  }
  files.sort((a, b) => b.size - a.size);
  const groups = Array.from({ length: bins }, () => ({ files: [] as string[], size: 0 }));
  for (const f of files) {
    const smallest = groups.reduce((min, g) => (g.size < min.size ? g : min));
    smallest.files.push(f.file);
    smallest.size += f.size;
  }
  return groups.sort((a, b) => b.size - a.size).map((g) => g.files);
}

export async function executorsBench(): Promise<void> {
  const cores = availableParallelism();
  const dir = await mkdtemp(join(tmpdir(), 'weir-bench-exec-'));
  try {
    await writeFile(join(dir, 'inc-worker.mjs'), rawIncWorker);
    await writeFile(join(dir, 'inc-child.mjs'), rawIncChild);
    await writeFile(join(dir, 'gzip-worker.mjs'), rawGzipWorker);

    console.log(`\n## Executors: dispatch cost, ${STEPS}-step sequential chain of a trivial step, pools of ${cores}\n`);
    console.log('(each case measured in turn, round after round, so load from elsewhere hits all of them alike)\n');
    // Child processes compile weir's sources as the build does, like this process (threads inherit its hooks).
    const ctx = new FlowContext({ threads: { max: cores }, processes: { max: cores, execArgv: [...TS_LOADER] } });
    const after = () => ctx.results.cleanup({ olderThan: new Date(Date.now() + 1) });
    const piscina = new Piscina({ filename: join(dir, 'inc-worker.mjs'), minThreads: cores, maxThreads: cores });
    const child = fork(join(dir, 'inc-child.mjs'), [], { serialization: 'advanced', execArgv: [] });
    await new Promise((resolve) => child.once('spawn', resolve));
    const roundTrip = (value: { n: number }) =>
      new Promise<{ n: number }>((resolve) => {
        child.once('message', resolve as (m: unknown) => void);
        child.send(value);
      });
    const chains = { inline: chain('inline'), thread: chain('thread'), process: chain('process') };
    const wides = { inline: wide('inline'), thread: wide('thread') };
    const piscinaTrip = (value: Counter) => piscina.run(value) as Promise<Counter>;
    /** An inline step's time, measured in the warm-up: what a run books per step on the main thread. */
    let booking = 0;
    const cases: Record<string, () => Promise<unknown>> = {
      inline: () => ctx.run(chains.inline, { n: 0 }),
      thread: () => ctx.run(chains.thread, { n: 0 }),
      process: () => ctx.run(chains.process, { n: 0 }),
      piscina: awaitedInTurn(piscinaTrip, () => 0),
      fork: awaitedInTurn(roundTrip, () => 0),
      // The floor for a step that books as much as an inline one: the main thread is busy that long between tasks, and the worker sleeps meanwhile.
      piscinaBooked: awaitedInTurn(piscinaTrip, () => booking),
      forkBooked: awaitedInTurn(roundTrip, () => booking),
      wideInline: () => ctx.run(wides.inline, { n: 0 }),
      wideThread: () => ctx.run(wides.thread, { n: 0 }),
      widePiscina: () => Promise.all(Array.from({ length: STEPS }, () => piscina.run({ n: 0 }))),
    };
    const times: Record<string, number[]> = Object.fromEntries(Object.keys(cases).map((k) => [k, []]));
    const warmInline: number[] = [];
    for (let round = 0; round < WARMUP_ROUNDS + 21; round++) {
      if (round === WARMUP_ROUNDS) booking = (warmInline.sort((a, b) => a - b)[warmInline.length >> 1]! * 1000) / STEPS;
      for (const [name, fn] of Object.entries(cases)) {
        const start = performance.now();
        await fn();
        const ms = performance.now() - start;
        if (round >= WARMUP_ROUNDS) times[name]!.push(ms);
        else if (name === 'inline' && round >= WARMUP_ROUNDS / 2) warmInline.push(ms);
        await after();
      }
    }
    const median = (name: string) => {
      const sorted = [...times[name]!].sort((a, b) => a - b);
      return { name, ms: sorted[Math.floor(sorted.length / 2)]!, runs: sorted.length };
    };
    const [inline, thread, proc, raw, rawFork] = ['inline', 'thread', 'process', 'piscina', 'fork'].map(median) as [Measurement, Measurement, Measurement, Measurement, Measurement];
    const [wideInline, wideThread, wideRaw] = ['wideInline', 'wideThread', 'widePiscina'].map(median) as [Measurement, Measurement, Measurement];
    const [rawBooked, forkBooked] = ['piscinaBooked', 'forkBooked'].map(median) as [Measurement, Measurement];
    child.kill();
    await piscina.destroy();
    await ctx.close();
    row('case', 'median', 'per step', 'ratio');
    row('weir inline chain', `${inline.ms.toFixed(2)} ms`, perItem(inline, STEPS), '');
    row('raw Piscina, same function, awaited in turn', `${raw.ms.toFixed(2)} ms`, perItem(raw, STEPS), '1.00x');
    row('weir thread chain', `${thread.ms.toFixed(2)} ms`, perItem(thread, STEPS), `${(thread.ms / raw.ms).toFixed(2)}x`);
    row('  its dispatch alone (thread - inline)', `${(thread.ms - inline.ms).toFixed(2)} ms`, perItem({ ...thread, ms: thread.ms - inline.ms }, STEPS), `${((thread.ms - inline.ms) / raw.ms).toFixed(2)}x`);
    row(`  floor: raw, main thread busy ${booking.toFixed(1)} µs a task`, `${rawBooked.ms.toFixed(2)} ms`, perItem(rawBooked, STEPS), `${(rawBooked.ms / raw.ms).toFixed(2)}x`);
    row('raw child_process.fork round trip (advanced)', `${rawFork.ms.toFixed(2)} ms`, perItem(rawFork, STEPS), '1.00x');
    row('weir process chain', `${proc.ms.toFixed(2)} ms`, perItem(proc, STEPS), `${(proc.ms / rawFork.ms).toFixed(2)}x`);
    row('  its dispatch alone (process - inline)', `${(proc.ms - inline.ms).toFixed(2)} ms`, perItem({ ...proc, ms: proc.ms - inline.ms }, STEPS), `${((proc.ms - inline.ms) / rawFork.ms).toFixed(2)}x`);
    row(`  floor: raw, main thread busy ${booking.toFixed(1)} µs a task`, `${forkBooked.ms.toFixed(2)} ms`, perItem(forkBooked, STEPS), `${(forkBooked.ms / rawFork.ms).toFixed(2)}x`);
    console.log("\n(a floor is the raw round trip plus an inline step's time spent on the main thread between tasks, as weir books a step there: what a step costs at least while the worker sleeps meanwhile; weir's threads and children check for their next task for a few microseconds before they sleep, and the main thread for their answer (threads.spinMicros, processes.spinMicros), which raw Piscina and a raw fork do not, so a weir chain can come in under its floor and its raw round trip)");
    console.log(`\nAwake: ${STEPS} independent steps in flight at once (a parallel composite), the pool never idle\n`);
    row('case', 'median', 'per step', 'ratio');
    row('weir inline, parallel', `${wideInline.ms.toFixed(2)} ms`, perItem(wideInline, STEPS), '');
    row(`raw Piscina, ${STEPS} runs at once (Promise.all)`, `${wideRaw.ms.toFixed(2)} ms`, perItem(wideRaw, STEPS), '1.00x');
    row('weir thread, parallel', `${wideThread.ms.toFixed(2)} ms`, perItem(wideThread, STEPS), `${(wideThread.ms / wideRaw.ms).toFixed(2)}x`);
    row('  its dispatch alone (thread - inline)', `${(wideThread.ms - wideInline.ms).toFixed(2)} ms`, perItem({ ...wideThread, ms: wideThread.ms - wideInline.ms }, STEPS), `${((wideThread.ms - wideInline.ms) / wideRaw.ms).toFixed(2)}x`);
    console.log('\n(aim: within 1.3x of raw Piscina and of a raw fork round trip per dispatch)');

    const lib = fileURLToPath(new URL('../node_modules/typescript/lib', import.meta.url));
    const bins = await binsOf(lib, 8);
    const rounds = 2;
    console.log(`\n## Executors: CPU-heavy graph, gzip of node_modules/typescript/lib x${rounds} in ${bins.length} parallel flows, ${cores} cores\n`);
    row('case', 'median', '', 'speed-up');
    const heavy = (type: LeafType) => {
      const root = Flow.parallel(`gzip-${type}`);
      bins.forEach((files, i) => new Flow(Object.assign(new GzipFiles(), { files, rounds }), { name: `bin${i}`, type }).registerTo(root));
      return root;
    };
    const cpu = new FlowContext({ threads: { max: cores }, processes: { max: cores, execArgv: [...TS_LOADER] } });
    const options = { warmup: 1, runs: 5 };
    const direct = await measure('direct', async () => bins.map((files) => gzipFiles(files, rounds)), options);
    const cpuInline = await measure('inline', () => cpu.run(heavy('inline'), null), options);
    const cpuThread = await measure('thread', () => cpu.run(heavy('thread'), null), options);
    const cpuProcess = await measure('process', () => cpu.run(heavy('process'), null), options);
    const gzipPool = new Piscina({ filename: join(dir, 'gzip-worker.mjs'), minThreads: cores, maxThreads: cores });
    const cpuPiscina = await measure('piscina', () => Promise.all(bins.map((files) => gzipPool.run({ files, rounds }))), options);
    await gzipPool.destroy();
    await cpu.close();
    row('direct loop on the main thread', `${direct.ms.toFixed(0)} ms`, '', `${(cpuInline.ms / direct.ms).toFixed(2)}x`);
    row('weir inline', `${cpuInline.ms.toFixed(0)} ms`, '', '1.00x');
    row('weir thread', `${cpuThread.ms.toFixed(0)} ms`, '', `${(cpuInline.ms / cpuThread.ms).toFixed(2)}x`);
    row('weir process', `${cpuProcess.ms.toFixed(0)} ms`, '', `${(cpuInline.ms / cpuProcess.ms).toFixed(2)}x`);
    row('hand-written Piscina script', `${cpuPiscina.ms.toFixed(0)} ms`, '', `${(cpuInline.ms / cpuPiscina.ms).toFixed(2)}x`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
