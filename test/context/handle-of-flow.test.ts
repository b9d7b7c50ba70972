import { afterEach, describe, expect, it } from 'vitest';
import { Flow, FlowContext } from '../../src/index.js';
import { AddOne, deferred, Fn, type Num } from '../fixtures/processors.js';

let ctx: FlowContext | undefined;
afterEach(async () => {
  await ctx?.close();
  ctx = undefined;
});

/** A sequential composite of two AddOne steps, typed as the caller declares it. */
function twice(): Flow<Num, Record<string, Num>> {
  const flow = Flow.sequential<Num, Record<string, Num>>('twice');
  new Flow(new AddOne(), { name: 'first' }).registerTo(flow);
  new Flow(new AddOne(), { name: 'second' }).registerTo(flow);
  return flow;
}

describe('ctx.handle(runId, flow)', () => {
  it('gives the handle of a run of that flow, while it runs and once it is only in the store', async () => {
    ctx = new FlowContext();
    const gate = deferred();
    const flow = Flow.parallel<unknown, Record<string, unknown>>('gated');
    new Flow(new Fn(() => gate.promise.then(() => 'done')), { name: 'wait' }).registerTo(flow);
    ctx.start(flow, {}, { runId: 'live' });
    const live = await ctx.handle('live', flow);
    gate.resolve();
    expect((await live.result()).output).toEqual({ wait: 'done' });

    const pipeline = twice();
    await ctx.run(pipeline, { n: 0 }, { runId: 'stored' });
    const stored = await ctx.handle('stored', pipeline);
    expect((await stored.result()).output?.second).toEqual({ n: 2 });
  });

  it('takes the flow by name, as recovery does, so another Flow object of the same name gives the handle too', async () => {
    ctx = new FlowContext();
    await ctx.run(twice(), { n: 1 }, { runId: 'r1' });
    expect((await (await ctx.handle('r1', twice())).result()).output).toEqual({ first: { n: 2 }, second: { n: 3 } });
  });

  it('rejects with WEIR_RUN_CONFLICT when the run is of another flow, live or stored', async () => {
    ctx = new FlowContext();
    const gate = deferred();
    const other = new Flow(new AddOne(), { name: 'other' });
    const handle = ctx.start(new Flow(new Fn(() => gate.promise), { name: 'wait' }), {}, { runId: 'r1' });
    await expect(ctx.handle('r1', other)).rejects.toMatchObject({ code: 'WEIR_RUN_CONFLICT', message: expect.stringMatching(/run "r1" is a run of flow "wait", not of "other"/) });
    gate.resolve();
    await handle.result();
    await expect(ctx.handle('r1', other)).rejects.toMatchObject({ code: 'WEIR_RUN_CONFLICT' });
  });

  it('rejects with WEIR_RUN_NOT_FOUND for an unknown run, and WEIR_INVALID_OPTIONS for a flow that is not a Flow', async () => {
    ctx = new FlowContext();
    await expect(ctx.handle('nope', twice())).rejects.toMatchObject({ code: 'WEIR_RUN_NOT_FOUND' });
    await ctx.run(twice(), { n: 0 }, { runId: 'r1' });
    await expect(ctx.handle('r1', { name: 'twice' } as never)).rejects.toMatchObject({ code: 'WEIR_INVALID_OPTIONS' });
  });
});
