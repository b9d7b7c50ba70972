// Imports weir, then uses it step by step, printing after each step the packages loaded so far as
// one JSON line: { step, packages }. Everything after the recorder is imported dynamically, so it
// sees it load. argv: <a temporary directory>
import { join } from 'node:path';
import { loadedPackages as loaded } from './record-loads.js';

const [, , dir] = process.argv as [string, string, string];
const report = (step: string): void => {
  process.stdout.write(`${JSON.stringify({ step, packages: loaded() })}\n`);
};

report('start');
const { Flow, FlowContext, ResultsManager } = await import('../../../src/index.js');
report('import');
const { AddOne } = await import('../../fixtures/processors.js');
const { Multiply } = await import('../../fixtures/remote.js');
report('fixtures');

const results = ResultsManager.sqlite(join(dir, 'runs.db'));
const ctx = new FlowContext({ results });
report('context');
const inline = await ctx.run(new Flow(new AddOne(), { name: 'add' }), { n: 1 });
if (inline.status !== 'completed') throw new Error(`the inline run ended ${inline.status}`);
await results.set('plain', { a: [1, 'two'] });
report('inline run');
await results.set('date', { at: new Date(0) });
report('a Date stored');
const thread = await ctx.run(new Flow(new Multiply(2), { name: 'double', type: 'thread' }), { n: 2 });
if (thread.status !== 'completed') throw new Error(`the thread run ended ${thread.status}: ${thread.error?.message}`);
report('thread run');
await ctx.close();
