import { afterEach, describe, expect, it } from 'vitest';
import { Flow, FlowContext } from '../../src/index.js';
import { pipelinedTasks } from '../../src/executors/pipeline.js';
import { Busy, WhereAmI } from '../fixtures/remote.js';
import { deferred } from '../fixtures/processors.js';

let ctx: FlowContext | undefined;
afterEach(async () => {
  await ctx?.close();
  ctx = undefined;
});

/** A parallel composite of `width` thread steps of `make()`, each given `input(i)`. */
function wide(name: string, width: number, make: () => Busy | WhereAmI, config: { timeout?: number } = {}): Flow<unknown, Record<string, unknown>> {
  const root = Flow.parallel(name);
  for (let i = 0; i < width; i++) new Flow(make(), { name: `s${i}`, type: 'thread', ...config }).registerTo(root);
  return root;
}

/** Runs `flow` on `input` and returns how many tasks were pipelined meanwhile. */
async function pipelinedDuring(flow: Flow<unknown, Record<string, unknown>>, input: unknown): Promise<number> {
  const before = pipelinedTasks();
  const result = await ctx!.run(flow, input);
  expect(result.status).toBe('completed');
  return pipelinedTasks() - before;
}

describe('a saturated thread pool', () => {
  it('gives a busy thread its next task while it runs a short synchronous step, and every step answers once', async () => {
    ctx = new FlowContext({ threads: { max: 2 } });
    // The first answers teach the pool that the class is short and synchronous.
    await ctx.run(wide('learn', 4, () => new Busy()), { tag: 'x' });
    const flow = wide('wide', 60, () => new Busy());
    const before = pipelinedTasks();
    const result = await ctx.run(flow, { tag: 'done' });
    expect(result.status).toBe('completed');
    expect(Object.values(result.output as Record<string, unknown>)).toEqual(Array.from({ length: 60 }, () => 'done'));
    expect(pipelinedTasks() - before).toBeGreaterThan(0);
  });

  it('never pipelines a class that answers asynchronously, a step with a timeout, or a class of long steps', async () => {
    ctx = new FlowContext({ threads: { max: 2 } });
    const asynchronous = wide('async', 40, () => new WhereAmI());
    await ctx.run(asynchronous, null);
    expect(await pipelinedDuring(asynchronous, null)).toBe(0);
    const timed = wide('timed', 40, () => new Busy(), { timeout: 60_000 });
    await ctx.run(timed, {});
    expect(await pipelinedDuring(timed, {})).toBe(0);
    // 3 ms a step: past what a task may wait behind on a busy thread.
    const long = wide('long', 6, () => new Busy());
    await ctx.run(long, { ms: 3 });
    expect(await pipelinedDuring(long, { ms: 3 })).toBe(0);
  });

  it('posts again, on a new thread, a pipelined task whose thread was ended before it started, instead of failing it', async () => {
    ctx = new FlowContext({ threads: { max: 1, abortGrace: 20 } });
    await ctx.run(wide('learn', 8, () => new Busy()), {});
    const busy = deferred();
    ctx.on('step_progress', () => busy.resolve());
    // The stuck step is of the short class too: it blocks its thread until the thread is ended.
    const stuck = ctx.start(new Flow(new Busy(), { name: 'stuck', type: 'thread' }), { ms: 60_000, announce: true });
    await busy.promise;
    const before = pipelinedTasks();
    const next = ctx.start(new Flow(new Busy(), { name: 'next', type: 'thread' }), { tag: 'after' });
    // Handed to Piscina as soon as the run dispatches it, behind the stuck step on the one thread.
    while (pipelinedTasks() === before) await new Promise((resolve) => setTimeout(resolve, 5));
    await ctx.cancel(stuck.runId);
    expect((await stuck.result()).status).toBe('cancelled');
    const result = await next.result();
    expect(result.status).toBe('completed');
    expect(result.output).toBe('after');
    expect(result.attempts).toHaveLength(1);
  });
});
