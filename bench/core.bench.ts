/**
 * Core engine overhead: a 1000-step chain and a 10,000-flow wide graph of trivial inline steps,
 * against calling the same async function directly (memory store; durable stores are in durable.bench.ts).
 */
import { z } from 'zod';
import { Flow, FlowContext, Processor } from '../src/index.js';
import { measure, perItem, row } from './harness.js';

const N = z.object({ n: z.number() });
type N = z.infer<typeof N>;

async function addOne(input: N): Promise<N> {
  return { n: input.n + 1 };
}

class AddOne extends Processor<typeof N, typeof N> {
  readonly input = N;
  readonly output = N;
  process(input: N): Promise<N> {
    return addOne(input);
  }
}

function chain(steps: number): Flow<unknown, Record<string, unknown>> {
  const root = Flow.sequential(`chain-${steps}`);
  for (let i = 0; i < steps; i++) new Flow(new AddOne(), { name: `s${i}` }).registerTo(root);
  return root;
}

function wide(flows: number): Flow<unknown, Record<string, unknown>> {
  const root = Flow.parallel(`wide-${flows}`);
  for (let i = 0; i < flows; i++) new Flow(new AddOne(), { name: `w${i}` }).registerTo(root);
  return root;
}

async function directChain(steps: number): Promise<N> {
  let value: N = { n: 0 };
  for (let i = 0; i < steps; i++) value = await addOne(value);
  return value;
}

async function directWide(flows: number): Promise<N[]> {
  const all: Promise<N>[] = [];
  for (let i = 0; i < flows; i++) all.push(addOne({ n: 0 }));
  return Promise.all(all);
}

export async function coreBench(): Promise<void> {
  console.log('\n## Core engine: inline steps, memory results, default context (concurrency 100)\n');
  row('case', 'median', 'per step', 'ratio');
  const ctx = new FlowContext();
  // Each repetition's runs are pruned (untimed), so a growing journal does not skew later figures.
  const clear = (c: FlowContext) => () => c.prune({ olderThan: new Date(Date.now() + 1) });
  const after = clear(ctx);

  const chain1k = chain(1000);
  const chainBase = await measure('direct chain 1000', () => directChain(1000));
  const chainRun = await measure('weir chain 1000', () => ctx.run(chain1k, { n: 0 }), { after });
  row('1000 async calls in a loop (baseline)', `${chainBase.ms.toFixed(2)} ms`, perItem(chainBase, 1000), '1.0x');
  row('1000-step sequential chain', `${chainRun.ms.toFixed(2)} ms`, perItem(chainRun, 1000), `${(chainRun.ms / chainBase.ms).toFixed(1)}x`);
  const chainOverhead = ((chainRun.ms - chainBase.ms) * 1000) / 1000;

  const wideBase1k = await measure('direct wide 1000', () => directWide(1000));
  const wide1k = wide(1000);
  const wideRun1k = await measure('weir wide 1000', () => ctx.run(wide1k, { n: 0 }), { after });
  const wideBase = await measure('direct wide 10000', () => directWide(10_000));
  const wide10k = wide(10_000);
  const wideRun = await measure('weir wide 10000', () => ctx.run(wide10k, { n: 0 }), { warmup: 5, runs: 11, after });
  row('10,000 async calls (baseline)', `${wideBase.ms.toFixed(2)} ms`, perItem(wideBase, 10_000), '1.0x');
  row('10,000-flow wide graph', `${wideRun.ms.toFixed(2)} ms`, perItem(wideRun, 10_000), `${(wideRun.ms / wideBase.ms).toFixed(1)}x`);
  row('1,000-flow wide graph (for scaling)', `${wideRun1k.ms.toFixed(2)} ms`, perItem(wideRun1k, 1000), `${(wideRun1k.ms / wideBase1k.ms).toFixed(1)}x`);
  const wideOverhead = ((wideRun.ms - wideBase.ms) * 1000) / 10_000;

  const unbounded = new FlowContext({ concurrency: Infinity });
  const wideUnbounded = await measure('weir wide 10000 (unbounded)', () => unbounded.run(wide10k, { n: 0 }), { warmup: 5, runs: 11, after: clear(unbounded) });
  row('10,000-flow wide graph, concurrency Infinity', `${wideUnbounded.ms.toFixed(2)} ms`, perItem(wideUnbounded, 10_000), `${(wideUnbounded.ms / wideBase.ms).toFixed(1)}x`);
  await unbounded.close();
  await ctx.close();

  console.log(`\noverhead per inline step: chain ${chainOverhead.toFixed(2)} µs, wide ${wideOverhead.toFixed(2)} µs (aim: < 20 µs)`);
  console.log(`scaling 1,000 -> 10,000 flows: ${(wideRun.ms / wideRun1k.ms).toFixed(1)}x the time for 10x the flows (aim: about 10x)`);
}
