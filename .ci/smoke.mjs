// Imports the built package as ESM (through its own name) and runs a small flow.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { Flow, FlowContext, Processor, FatalError, FlowError, ResultsManager } from 'weir';
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

// A SQLite run long enough to ask for a checkpoint (one every 1024 commits; n stays 0, so doubling
// never overflows): the checkpointer thread, built as an entry of its own, must start from dist/ and
// copy the WAL into the file (the connection's own autocheckpoint waits for 10,000 pages).
const dir = mkdtempSync(join(tmpdir(), 'weir-smoke-'));
const file = join(dir, 'runs.db');
const durable = new FlowContext({ results: ResultsManager.sqlite(file) });
const chain = Flow.sequential('chain');
for (let i = 0; i < 1200; i++) new Flow(new Double(), { name: `s${i}` }).registerTo(chain);
assert.equal((await durable.run(chain, { n: 0 })).status, 'completed');
for (let waited = 0; statSync(file).size < 64 * 1024 && waited < 10_000; waited += 20) await sleep(20);
assert.ok(statSync(file).size >= 64 * 1024, `the checkpointer thread left ${file} at ${statSync(file).size} bytes`);
await durable.close();
// The weir command, as built: the run is listed from the file.
const listed = JSON.parse(execFileSync(process.execPath, ['dist/cli.js', '--store', file, '--json', 'runs'], { encoding: 'utf8' }));
assert.equal(listed.runs.length, 1);
assert.equal(listed.runs[0].status, 'completed');
rmSync(dir, { recursive: true, force: true });
// weir/testing shares weir's classes: its context is a FlowContext, its errors are FlowErrors, its clock is virtual.
const { createTestContext } = await import('weir/testing');
const retried = Flow.sequential('retried');
let calls = 0;
class Flaky extends Processor {
  input = N;
  output = N;
  async process(input) {
    if (++calls < 3) throw new Error('not yet');
    return input;
  }
}
new Flow(new Flaky(), { name: 'flaky', retry: { maxAttempts: 3, initialInterval: 600_000 } }).registerTo(retried);
const kit = createTestContext();
assert.ok(kit.ctx instanceof FlowContext);
const tested = await kit.run(retried, { n: 1 });
assert.equal(tested.status, 'completed', JSON.stringify(tested.error));
assert.equal(calls, 3);
assert.throws(() => createTestContext({ store: 'paper' }), (error) => error instanceof FlowError);
await kit.close();
// weir/http from the built package: a run started and read over HTTP, closed with its context.
const { serve } = await import('weir/http');
const served = new FlowContext();
served.register(new Flow(new Double(), { name: 'double' }));
const { url, server } = await serve(served);
const started = await fetch(`${url}api/runs`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ flow: 'double', input: { n: 21 }, runId: 'h-1' }) });
assert.equal(started.status, 202);
let run;
for (let i = 0; i < 100 && run?.status !== 'completed'; i++) {
  run = await (await fetch(`${url}api/runs/h-1`)).json();
  await sleep(10);
}
assert.equal(run.status, 'completed');
await served.close();
assert.equal(server.listening, false);
console.log('smoke esm: ok');
