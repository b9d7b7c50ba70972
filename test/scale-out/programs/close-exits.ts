// A worker on Postgres (listening for notices, polling, announced) takes a queued run, closes, and
// relies on the process exiting by itself. argv: <postgres url> <schema>
import { z } from 'zod';
import { Flow, FlowContext, Processor, ResultsManager } from '../../../src/index.js';

const N = z.object({ n: z.number() });
class Double extends Processor<typeof N, typeof N> {
  readonly input = N;
  readonly output = N;
  async process(input: z.infer<typeof N>) {
    return { n: input.n * 2 };
  }
}

const [, , url, schema] = process.argv as [string, string, string, string];
const ctx = new FlowContext({ results: ResultsManager.postgres(url, { schema }), recover: true, queue: { pollInterval: 50 } });
const double = new Flow(new Double(), { name: 'double' });
ctx.register(double);
const result = await (await ctx.enqueue(double, { n: 21 })).result();
await ctx.close();
process.stdout.write(JSON.stringify({ status: result.status, output: result.output }));
