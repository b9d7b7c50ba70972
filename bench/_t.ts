import { z } from 'zod';
import { Flow, FlowContext, Processor } from '../src/index.js';
const N = z.object({ n: z.number() });
class AddOne extends Processor<typeof N, typeof N> { readonly input = N; readonly output = N; async process(i: z.infer<typeof N>) { return { n: i.n + 1 }; } }
const steps = Number(process.argv[2] ?? 200);
const root = Flow.sequential('chain');
for (let i = 0; i < steps; i++) new Flow(new AddOne(), { name: `s${i}` }).registerTo(root);
const ctx = new FlowContext();
const out: string[] = [];
for (let r = 0; r < 40; r++) {
  const t = performance.now();
  await ctx.run(root, { n: 0 });
  out.push((performance.now() - t).toFixed(1));
}
console.log(out.join(' '));
await ctx.close();
