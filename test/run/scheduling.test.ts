import { afterEach, describe, expect, it } from 'vitest';
import { Flow, FlowContext } from '../../src/index.js';
import { deferred, Fn } from '../fixtures/processors.js';

let ctx: FlowContext;
afterEach(async () => {
  await ctx.close();
});

describe('scheduling', () => {
  it('runs independent flows concurrently, bounded by the context concurrency', async () => {
    ctx = new FlowContext({ concurrency: 3 });
    const p = Flow.parallel('p');
    let running = 0;
    let peak = 0;
    const gate = deferred();
    for (let i = 0; i < 10; i++) {
      new Flow(
        new Fn(async () => {
          running++;
          peak = Math.max(peak, running);
          if (peak === 3) gate.resolve();
          await gate.promise;
          running--;
          return i;
        }),
        { name: `f${i}` },
      ).registerTo(p);
    }
    const result = await ctx.run(p, {});
    expect(result.status).toBe('completed');
    expect(peak).toBe(3);
    expect(Object.keys(result.output as object)).toHaveLength(10);
  });

  it('bounds one run by its own concurrency inside the context limit', async () => {
    ctx = new FlowContext({ concurrency: 10 });
    const p = Flow.parallel('p');
    let running = 0;
    let peak = 0;
    for (let i = 0; i < 6; i++) {
      new Flow(
        new Fn(async () => {
          running++;
          peak = Math.max(peak, running);
          await new Promise((r) => setImmediate(r));
          running--;
        }),
        { name: `f${i}` },
      ).registerTo(p);
    }
    await ctx.run(p, {}, { concurrency: 2 });
    expect(peak).toBe(2);
  });

  it('starts a flow as soon as its required dependencies completed, not when everything did', async () => {
    ctx = new FlowContext();
    const p = Flow.parallel('p');
    const slowGate = deferred();
    const order: string[] = [];
    const fast = new Flow(new Fn(() => order.push('fast')), { name: 'fast' }).registerTo(p);
    new Flow(new Fn(async () => { await slowGate.promise; order.push('slow'); }), { name: 'slow' }).registerTo(p);
    new Flow(
      new Fn(() => {
        order.push('after-fast');
        slowGate.resolve();
      }),
      { name: 'after-fast' },
    ).registerTo(p, { required: [fast] });
    const result = await ctx.run(p, {});
    expect(result.status).toBe('completed');
    expect(order).toEqual(['fast', 'after-fast', 'slow']);
  });

  it('waits for optional dependencies to finish either way before starting', async () => {
    ctx = new FlowContext();
    const p = Flow.parallel('p');
    const gate = deferred();
    const order: string[] = [];
    new Flow(new Fn(async () => { await gate.promise; order.push('enrich'); return { extra: 1 }; }), { name: 'enrich' }).registerTo(p);
    new Flow(new Fn(() => { order.push('kick'); gate.resolve(); }), { name: 'kick' }).registerTo(p);
    new Flow(
      new Fn(async (_input, step) => {
        order.push('report');
        return step.deps.get('enrich');
      }),
      { name: 'report' },
    ).registerTo(p, { optional: ['enrich'] });
    const result = await ctx.run(p, {});
    expect(order).toEqual(['kick', 'enrich', 'report']);
    expect(result.steps.report?.output).toEqual({ extra: 1 });
  });

  it('runs a sequential composite in registration order, each child getting the previous output', async () => {
    ctx = new FlowContext();
    const s = Flow.sequential('s');
    const seen: unknown[] = [];
    for (const name of ['one', 'two', 'three']) {
      new Flow(
        new Fn((input) => {
          seen.push(input);
          return `${String(input)}>${name}`;
        }),
        { name },
      ).registerTo(s);
    }
    const result = await ctx.run(s, 'in');
    expect(seen).toEqual(['in', 'in>one', 'in>one>two']);
    expect(result.output).toEqual({ one: 'in>one', two: 'in>one>two', three: 'in>one>two>three' });
  });

  it('gives every child of a parallel composite the run input and dependencies through step.deps', async () => {
    ctx = new FlowContext();
    const p = Flow.parallel('p');
    const a = new Flow(new Fn((input) => ({ from: 'a', input })), { name: 'a' }).registerTo(p);
    const b = new Flow(new Fn((input) => ({ from: 'b', input })), { name: 'b' }).registerTo(p);
    new Flow(
      new Fn(async (input, step) => ({ input, a: await step.deps.get(a), all: await step.deps.getAll() })),
      { name: 'c' },
    ).registerTo(p, { required: [a, b] });
    const result = await ctx.run(p, 7);
    expect(result.steps.c?.output).toEqual({
      input: 7,
      a: { from: 'a', input: 7 },
      all: { a: { from: 'a', input: 7 }, b: { from: 'b', input: 7 } },
    });
  });

  it('nests a parallel composite in a sequential one, and the reverse', async () => {
    ctx = new FlowContext();
    const root = Flow.sequential('root');
    new Flow(new Fn((n) => (n as number) + 1), { name: 'inc' }).registerTo(root);
    const fan = Flow.parallel('fan').registerTo(root);
    new Flow(new Fn((n) => (n as number) * 2), { name: 'double' }).registerTo(fan);
    new Flow(new Fn((n) => (n as number) * 3), { name: 'triple' }).registerTo(fan);
    const inner = Flow.sequential('inner').registerTo(fan);
    new Flow(new Fn((n) => (n as number) - 1), { name: 'dec' }).registerTo(inner);
    new Flow(new Fn((o) => o), { name: 'last' }).registerTo(root);
    const result = await ctx.run(root, 1);
    expect(result.status).toBe('completed');
    expect(result.output).toEqual({
      inc: 2,
      fan: { double: 4, triple: 6, inner: { dec: 1 } },
      last: { double: 4, triple: 6, inner: { dec: 1 } },
    });
  });

  it('refuses deps.get of a flow that is not a dependency, naming it', async () => {
    ctx = new FlowContext();
    const p = Flow.parallel('p');
    new Flow(new Fn(() => 1), { name: 'a' }).registerTo(p);
    new Flow(new Fn(async (_i, step) => step.deps.get('a')), { name: 'b' }).registerTo(p);
    const result = await ctx.run(p, {});
    expect(result.steps.b?.error).toMatchObject({ code: 'WEIR_DEPENDENCY', name: 'DependencyError' });
    expect(result.steps.b?.error?.message).toContain('"a" is not one of its dependencies');
  });
});
