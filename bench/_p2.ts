import { z } from 'zod';
import { Flow, FlowContext, Processor } from '../src/index.js';
const N = z.object({ n: z.number() });
class AddOne extends Processor<typeof N, typeof N> { readonly input = N; readonly output = N; async process(i: z.infer<typeof N>) { return { n: i.n + 1 }; } }
const one = new Flow(new AddOne(), { name: 'one' });
const ctx = new FlowContext({ concurrency: 1000 });
const batch = () => Promise.all(Array.from({ length: 1000 }, (_, i) => ctx.start(one, { n: i }).result()));
for (let r = 0; r < 30; r++) { await batch(); await ctx.prune({ olderThan: new Date(Date.now() + 1) }); }
const t = performance.now();
for (let r = 0; r < 30; r++) { await batch(); await ctx.prune({ olderThan: new Date(Date.now() + 1) }); }
console.log('runs/s', (30000 / ((performance.now() - t) / 1000)).toFixed(0));
await ctx.close();
