import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode, Flow, FlowContext } from '../../src/index.js';
import { Echo, Report } from './fixtures/dispatch.js';

let ctx: FlowContext;
afterEach(() => ctx.close());

describe.each(['thread', 'process'] as const)('dispatch to a %s', (type) => {
  it('runs a wide graph on a pool of two, every step once and with its own fields', async () => {
    ctx = new FlowContext({ threads: { max: 2 }, processes: { max: 2 } });
    const root = Flow.parallel('wide');
    for (let i = 0; i < 40; i++) new Flow(Object.assign(new Report(), { add: i, later: i % 3 === 0 }), { name: `r${i}`, type }).registerTo(root);
    const started: string[] = [];
    ctx.on('step_start', (event) => started.push(event.step));
    const result = await ctx.run(root, { n: 1000 });
    expect(result.status).toBe('completed');
    expect(started).toHaveLength(40);
    expect(result.output).toEqual(Object.fromEntries(Array.from({ length: 40 }, (_, i) => [`r${i}`, { n: 1000 + i }])));
  });

  it('gives each instance of one class its own fields, task after task in the same worker', async () => {
    ctx = new FlowContext({ threads: { max: 1 }, processes: { max: 1 } });
    const chain = Flow.sequential('chain');
    const adds = [1, 10, 100, 1, 10, 100];
    adds.forEach((add, i) => new Flow(Object.assign(new Report(), { add }), { name: `s${i}`, type }).registerTo(chain));
    const result = await ctx.run(chain, { n: 0 });
    expect(result.output).toMatchObject({ s5: { n: 222 } });
  });

  it('delivers the progress and heartbeats of a synchronous step before it completes', async () => {
    ctx = new FlowContext({ threads: { max: 1 }, processes: { max: 1 } });
    const flow = new Flow(new Report(), { name: 'report', type });
    const events: { type: string; progress?: number; message?: string }[] = [];
    ctx.on('step_progress', (event) => events.push(event));
    ctx.on('step_complete', (event) => events.push(event));
    // The second run finds the processor built: it answers without waiting a turn.
    for (const n of [1, 2]) {
      events.length = 0;
      const result = await ctx.run(flow, { n });
      expect(result.output).toEqual({ n: n + 1 });
      expect(events.map((e) => e.type)).toEqual(['step_progress', 'step_complete']);
      expect(events[0]).toMatchObject({ progress: 0.5, message: 'adding 1' });
    }
  });

  it('fails a synchronous step whose output is invalid with a ValidationError, every time', async () => {
    ctx = new FlowContext({ threads: { max: 1 }, processes: { max: 1 } });
    const flow = new Flow(new Echo(), { name: 'echo', type, retry: 0 });
    expect((await ctx.run(flow, { n: 1 })).output).toEqual({ n: 1 });
    for (const input of [{ n: 'one' }, null]) {
      const result = await ctx.run(flow, input);
      expect(result.error).toMatchObject({ name: 'ValidationError', code: ErrorCode.VALIDATION });
    }
    expect((await ctx.run(flow, { n: 2 })).output).toEqual({ n: 2 });
  });
});

describe('dispatch to a child process', () => {
  it('still runs a class in a child after the first task naming it could not be copied there', async () => {
    ctx = new FlowContext({ processes: { max: 1 } });
    const echo = new Echo();
    const flow = new Flow(echo, { name: 'echo', type: 'process', retry: 0 });
    ctx.register(flow);
    // A field that cannot be copied, set after registration checked the fields: the send itself fails.
    Object.assign(echo, { late: () => 1 });
    const failed = await ctx.run(flow, { n: 1 });
    expect(failed.error).toMatchObject({ code: ErrorCode.SERIALIZATION });
    expect(ctx.workers.processes).toBe(1);
    delete (echo as { late?: unknown }).late;
    expect((await ctx.run(flow, { n: 2 })).output).toEqual({ n: 2 });
    expect((await ctx.run(flow, { n: 3 })).output).toEqual({ n: 3 });
  });
});
