// Run by test/package/bench-loader.test.ts under the benchmarks' loader (bench/loader): runs a flow
// inline, on a thread and in a child process from weir's sources, and prints one JSON line saying
// how each ran and whether the code was compiled with kept names (tsx wraps named closures in `__name`).
import { Flow, FlowContext } from '../../../src/index.js';
import { Multiply } from '../../fixtures/remote.js';

function outer(): () => number {
  const inner = (): number => 1;
  return inner;
}

const ctx = new FlowContext({ threads: { max: 1 }, processes: { max: 1, execArgv: process.execArgv } });
const outputs: Record<string, unknown> = {};
for (const type of ['inline', 'thread', 'process'] as const) {
  const result = await ctx.run(new Flow(new Multiply(3), { name: `triple-${type}`, type }), { n: 2 });
  outputs[type] = result.status === 'completed' ? result.output : `${result.status}: ${result.error?.message}`;
}
await ctx.close();
process.stdout.write(`${JSON.stringify({ outputs, keptNames: String(outer).includes('__name') })}\n`);
