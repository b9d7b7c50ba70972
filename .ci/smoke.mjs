// Imports the built package as ESM (through its own name) and runs a small flow.
import assert from 'node:assert/strict';
import { z } from 'zod';
import { Flow, FlowContext, Processor, FatalError, FlowError } from 'weir';
import { Scale } from './processors.mjs';

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

// A thread flow and a process flow from the built package, the second reading the first's output.
const remote = new FlowContext({ threads: { max: 1 }, processes: { max: 1 } });
const mixed = Flow.parallel('mixed');
const onThread = Object.assign(new Scale(), { factor: 3 });
const t = new Flow(onThread, { name: 'thread', type: 'thread' }).registerTo(mixed);
new Flow(new Scale(), { name: 'process', type: 'process' }).registerTo(mixed, { required: [t] });
const progress = [];
remote.on('step_progress', (event) => progress.push(event.step));
const both = await remote.run(mixed, { n: 2 });
assert.equal(both.status, 'completed', JSON.stringify(both.error));
assert.deepEqual(both.output, { thread: { n: 6 }, process: { n: 8 } });
assert.deepEqual(progress.sort(), ['process', 'thread']);
await remote.close();
await ctx.close();
console.log('smoke esm: ok');
