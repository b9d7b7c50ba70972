// Imports the built package as ESM (through its own name) and runs a small flow.
import assert from 'node:assert/strict';
import { z } from 'zod';
import { Flow, FlowContext, Processor, FatalError, FlowError } from 'weir';

const N = z.object({ n: z.number() });
class Double extends Processor {
  input = N;
  output = N;
  async process(input) {
    return { n: input.n * 2 };
  }
}

const ctx = new FlowContext();
const pipeline = Flow.sequential('pipeline');
new Flow(new Double(), { name: 'one' }).registerTo(pipeline);
new Flow(new Double(), { name: 'two' }).registerTo(pipeline);
const result = await ctx.run(pipeline, { n: 1 });
assert.equal(result.status, 'completed');
assert.deepEqual(result.output, { one: { n: 2 }, two: { n: 4 } });
assert.ok(new FatalError('x') instanceof FlowError);
await ctx.close();
console.log('smoke esm: ok');
