// Requires the built package as CommonJS (through its own name) and runs a small flow.
const assert = require('node:assert/strict');
const { z } = require('zod');
const { Flow, FlowContext, Processor, ResultsManager } = require('weir');
const { mkdtempSync, rmSync } = require('node:fs');
const { tmpdir } = require('node:os');
const { join } = require('node:path');

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
  assert.deepEqual(await ctx.results.get(`${result.runId}/one`), { n: 2 });
  await ctx.close();
  rmSync(dir, { recursive: true, force: true });
  console.log('smoke cjs: ok');
})().catch((error) => {
  console.error(error);
  process.exit(1);
});
