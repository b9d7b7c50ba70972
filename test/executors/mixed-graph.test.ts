import { afterEach, expect, it } from 'vitest';
import { Flow, FlowContext, type LeafType } from '../../src/index.js';
import { Multiply, SumDeps } from '../fixtures/remote.js';

let ctx: FlowContext;
afterEach(() => ctx.close());

/** A graph with dependencies across executors, a nested sequential chain, and an optional edge. */
function graph(types: readonly [LeafType, LeafType, LeafType, LeafType, LeafType]): Flow<unknown, Record<string, unknown>> {
  const root = Flow.parallel('mixed');
  const a = new Flow(new Multiply(2), { name: 'a', type: types[0] }).registerTo(root);
  const b = new Flow(new Multiply(3), { name: 'b', type: types[1] }).registerTo(root);
  const c = new Flow(new SumDeps(), { name: 'c', type: types[2] }).registerTo(root, { required: [a, b] });
  const chain = Flow.sequential('chain');
  new Flow(new Multiply(5), { name: 'x5', type: types[3] }).registerTo(chain);
  new Flow(new Multiply(7), { name: 'x7', type: types[4] }).registerTo(chain);
  chain.registerTo(root, { required: [c] });
  new Flow(new SumDeps(), { name: 'd', type: types[3] }).registerTo(root, { required: [c], optional: [a, 'absent'] });
  return root;
}

it('gives the same results inline and spread over inline, thread and process', async () => {
  ctx = new FlowContext({ threads: { max: 2 }, processes: { max: 2 } });
  const inline = await ctx.run(graph(['inline', 'inline', 'inline', 'inline', 'inline']), { n: 1 });
  const mixed = await ctx.run(graph(['inline', 'thread', 'process', 'thread', 'process']), { n: 1 });
  expect(inline.status).toBe('completed');
  expect(mixed.status).toBe('completed');
  expect(mixed.output).toEqual(inline.output);
  expect(inline.output).toEqual({ a: { n: 2 }, b: { n: 3 }, c: { n: 6 }, chain: { x5: { n: 5 }, x7: { n: 35 } }, d: { n: 9 } });
});
