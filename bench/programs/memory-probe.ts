// The memory benchmark's child process: measures the heap after a forced full GC, and prints one
// JSON line per measurement. Run with `node --expose-gc --import ./bench/loader/register.mjs`.
// argv: runs <memory|sqlite file> <total> <samples, comma-separated> <turn|busy>
//   one long-lived context runs `total` one-step runs, 1000 started at once then awaited; `turn`
//   gives the event loop one turn between batches (as any app that serves requests does), `busy`
//   never leaves the microtask queue. Prints `{ runs, heap, ms }` at each sample, then `{ kept }`:
//   how many runs the store lists.
// argv: chain <steps>
//   one run of a `steps`-step sequential chain; prints `{ steps, base, live, stored, pruned, ms }`:
//   the heap before it, at its last step, once it ended (kept in the store), and once pruned.
import { setTimeout as sleep } from 'node:timers/promises';
import { setImmediate as turn } from 'node:timers/promises';
import { Flow, FlowContext, ResultsManager } from '../../src/index.js';
import { Carried as N, Next, TEXT } from '../processors.js';

const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error('run the memory probe with node --expose-gc');

/** Heap used after full collections (several, so finalizers and weak references are done). */
function heap(): number {
  for (let i = 0; i < 4; i++) gc!();
  return process.memoryUsage().heapUsed;
}

const print = (line: object): void => void process.stdout.write(`${JSON.stringify(line)}\n`);
const [, , mode, ...args] = process.argv as [string, string, string, ...string[]];

async function manyRuns(store: string, total: number, samples: readonly number[], between: 'turn' | 'busy'): Promise<void> {
  const results = store === 'memory' ? ResultsManager.memory() : ResultsManager.sqlite(store);
  const ctx = new FlowContext({ results, concurrency: 1000 });
  const one = new Flow(new Next(), { name: 'one' });
  const start = performance.now();
  const sample = (runs: number): void => print({ runs, heap: heap(), ms: Math.round(performance.now() - start) });
  if (samples.includes(0)) sample(0);
  for (let done = 0; done < total; ) {
    const batch = Math.min(1000, total - done);
    await Promise.all(Array.from({ length: batch }, (_, i) => ctx.start(one, { n: i, text: TEXT }).result()));
    done += batch;
    if (between === 'turn') await turn();
    if (samples.includes(done)) sample(done);
  }
  let kept = 0;
  for (let before: string | undefined; ; ) {
    const page = await ctx.listRuns({ limit: 1000, ...(before === undefined ? {} : { before }) });
    kept += page.runs.length;
    if (page.next === undefined) break;
    before = page.next;
  }
  print({ kept });
  await ctx.close();
}

async function chain(steps: number): Promise<void> {
  const build = (n: number): Flow<N, Record<string, unknown>> => {
    const root = Flow.sequential<N>(`chain-${n}`);
    for (let i = 0; i < n; i++) new Flow(new Next(), { name: `s${i}` }).registerTo(root);
    return root;
  };
  const ctx = new FlowContext();
  // A warm-up chain first, so what the first run of any chain compiles and caches is not counted.
  await ctx.run(build(100), { n: 0, text: TEXT });
  const flow = build(steps);
  ctx.register(flow);
  await sleep(50);
  await ctx.prune({ olderThan: new Date(Date.now() + 1) });
  const base = heap();
  let live = 0;
  const last = `s${steps - 1}`;
  ctx.on('step_start', (event) => {
    if (event.step === last) live = heap();
  });
  const begun = performance.now();
  const status = (await ctx.run(flow, { n: 0, text: TEXT })).status;
  const ms = Math.round(performance.now() - begun);
  if (status !== 'completed') throw new Error(`the ${steps}-step chain ended ${status}`);
  // Past the journal's lazy flush (20 ms), so the run is held by the store alone.
  await sleep(50);
  const stored = heap();
  await ctx.prune({ olderThan: new Date(Date.now() + 1) });
  await sleep(50);
  const pruned = heap();
  print({ steps, base, live, stored, pruned, ms });
  await ctx.close();
}

if (mode === 'runs') {
  const [store, total, samples, between] = args as [string, string, string, string];
  await manyRuns(store, Number(total), samples.split(',').map(Number), between === 'busy' ? 'busy' : 'turn');
} else if (mode === 'chain') {
  await chain(Number(args[0]));
} else {
  throw new Error(`unknown mode ${mode}: runs or chain`);
}
