// Requires the built package as CommonJS (through its own name) and runs a small flow.
const assert = require('node:assert/strict');
const { z } = require('zod');
const { Flow, FlowContext, FlowError, Processor, ResultsManager } = require('weir');
const { createTestContext } = require('weir/testing');
const { serve } = require('weir/http');
const { mkdtempSync, rmSync, statSync } = require('node:fs');
const { setTimeout: sleep } = require('node:timers/promises');
const { tmpdir } = require('node:os');
const { join } = require('node:path');
const { Scale } = require('./processors.cjs');

const N = z.object({ n: z.number() });
class Double extends Processor {
  input = N;
  output = N;
  async process(input) {
    return { n: input.n * 2 };
  }
}

(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'weir-smoke-'));
  const ctx = new FlowContext({ results: ResultsManager.sqlite(join(dir, 'runs.db')) });
  const pipeline = Flow.parallel('pipeline');
  const one = new Flow(new Double(), { name: 'one' }).registerTo(pipeline);
  new Flow(new Double(), { name: 'two' }).registerTo(pipeline, { required: [one] });
  const result = await ctx.run(pipeline, { n: 1 });
  assert.equal(result.status, 'completed');
  assert.deepEqual(result.output, { one: { n: 2 }, two: { n: 2 } });
  ctx.register(pipeline);
  const stored = await (await ctx.handle(result.runId)).result();
  assert.deepEqual(stored.steps.one.output, { n: 2 });
  assert.equal((await ctx.getRun(result.runId)).status, 'completed');
  await ctx.close();

  // A SQLite run long enough to ask for a checkpoint (one every 1024 commits; n stays 0, so doubling
  // never overflows): the checkpointer thread, built as an entry of its own, must start from dist/ and
  // copy the WAL into the file (the connection's own autocheckpoint waits for 10,000 pages).
  const file = join(dir, 'chain.db');
  const durable = new FlowContext({ results: ResultsManager.sqlite(file) });
  const chain = Flow.sequential('chain');
  for (let i = 0; i < 1200; i++) new Flow(new Double(), { name: `s${i}` }).registerTo(chain);
  assert.equal((await durable.run(chain, { n: 0 })).status, 'completed');
  for (let waited = 0; statSync(file).size < 64 * 1024 && waited < 10_000; waited += 20) await sleep(20);
  assert.ok(statSync(file).size >= 64 * 1024, `the checkpointer thread left ${file} at ${statSync(file).size} bytes`);
  await durable.close();

  // A thread flow and a process flow from the built package, the second reading the first's output.
  const remote = new FlowContext({ threads: { max: 1 }, processes: { max: 1 } });
  const mixed = Flow.parallel('mixed');
  const onThread = Object.assign(new Scale(), { factor: 3 });
  const t = new Flow(onThread, { name: 'thread', type: 'thread' }).registerTo(mixed);
  new Flow(new Scale(), { name: 'process', type: 'process' }).registerTo(mixed, { required: [t] });
  const both = await remote.run(mixed, { n: 2 });
  assert.equal(both.status, 'completed', JSON.stringify(both.error));
  assert.deepEqual(both.output, { thread: { n: 6 }, process: { n: 8 } });
  await remote.close();
  rmSync(dir, { recursive: true, force: true });

  // weir/testing shares weir's classes and runs a 10-minute backoff on its virtual clock.
  let calls = 0;
  class Flaky extends Processor {
    input = z.object({ n: z.number() });
    output = z.object({ n: z.number() });
    async process(input) {
      if (++calls < 2) throw new Error('not yet');
      return input;
    }
  }
  const flaky = new Flow(new Flaky(), { name: 'flaky', retry: { maxAttempts: 2, initialInterval: 600_000 } });
  const kit = createTestContext();
  assert.ok(kit.ctx instanceof FlowContext);
  assert.equal((await kit.run(flaky, { n: 1 })).status, 'completed');
  assert.equal(calls, 2);
  assert.throws(() => createTestContext({ store: 'paper' }), (error) => error instanceof FlowError);
  await kit.close();

  // weir/http: the list of flows over HTTP, closed with its context.
  const served = new FlowContext();
  served.register(flaky);
  const { url, server } = await serve(served);
  const flows = await (await fetch(`${url}api/flows`)).json();
  assert.equal(flows.flows[0].name, 'flaky');
  await served.close();
  assert.equal(server.listening, false);
  console.log('smoke cjs: ok');
})().catch((error) => {
  console.error(error);
  process.exit(1);
});
