import { z } from 'zod';
import { Flow, FlowContext, Processor } from '../src/index.js';
const N = z.object({ n: z.number() });
class AddOne extends Processor<typeof N, typeof N> { readonly input = N; readonly output = N; async process(i: z.infer<typeof N>) { return { n: i.n + 1 }; } }
const root = Flow.sequential('chain');
for (let i = 0; i < 1000; i++) new Flow(new AddOne(), { name: `s${i}` }).registerTo(root);
const ctx = new FlowContext();
for (let r = 0; r < 200; r++) { await ctx.run(root, { n: 0 }); if (r % 10 === 0) await ctx.prune({ olderThan: new Date(Date.now() + 1) }); }
const t = performance.now();
for (let r = 0; r < 100; r++) { await ctx.run(root, { n: 0 }); if (r % 10 === 0) await ctx.prune({ olderThan: new Date(Date.now() + 1) }); }
console.log('µs/step', ((performance.now() - t) / 100).toFixed(2));
await ctx.close();
