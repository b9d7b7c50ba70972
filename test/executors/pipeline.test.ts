import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Flow, FlowContext, type RunHandle } from '../../src/index.js';
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
    expect(await pipelinedDuring(asynchronous, null)).toBe(0);
    expect(await pipelinedDuring(asynchronous, null)).toBe(0);
    const timed = wide('timed', 40, () => new Busy(), { timeout: 60_000 });
    expect(await pipelinedDuring(timed, {})).toBe(0);
    expect(await pipelinedDuring(timed, {})).toBe(0);
    await ctx.close();
    // 20 ms a step, from the first: past what a task may wait behind on a busy thread.
    ctx = new FlowContext({ threads: { max: 2 } });
    const long = wide('long', 6, () => new Busy());
    expect(await pipelinedDuring(long, { ms: 20 })).toBe(0);
    expect(await pipelinedDuring(long, { ms: 20 })).toBe(0);
  });

  /** A context of one thread, which has learned that `Busy` is short, and a `Busy` step that holds the thread (as `hold` says). */
  async function stuckThread(hold: { ms: number } | { until: string }): Promise<{ readonly stuck: RunHandle }> {
    ctx = new FlowContext({ threads: { max: 1, abortGrace: 20 } });
    await ctx.run(wide('learn', 8, () => new Busy()), {});
    const busy = deferred();
    ctx.on('step_progress', () => busy.resolve());
    // The stuck step is of the short class too: it blocks its thread, ignoring any abort.
    const stuck = ctx.start(new Flow(new Busy(), { name: 'stuck', type: 'thread' }), { ...hold, announce: true });
    await busy.promise;
    return { stuck };
  }

  /** Starts a `Busy` step and waits until it is pipelined behind the stuck one. */
  async function pipelinedBehind(input: unknown): Promise<RunHandle> {
    const before = pipelinedTasks();
    const next = ctx!.start(new Flow(new Busy(), { name: 'next', type: 'thread' }), input);
    const deadline = Date.now() + 5_000;
    while (pipelinedTasks() === before) {
      if (Date.now() > deadline) throw new Error('the step was not pipelined within 5 s');
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    return next;
  }

  it('posts again, on a new thread, a pipelined task whose thread was ended before it started, instead of failing it', async () => {
    const { stuck } = await stuckThread({ ms: 60_000 });
    const next = await pipelinedBehind({ tag: 'after' });
    await ctx!.cancel(stuck.runId);
    expect((await stuck.result()).status).toBe('cancelled');
    const result = await next.result();
    expect(result.status).toBe('completed');
    expect(result.output).toBe('after');
    expect(result.attempts).toHaveLength(1);
  });

  it('never starts a pipelined task whose run is cancelled while it waits, when its thread reaches it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'weir-pipeline-'));
    const file = join(dir, 'ran');
    await writeFile(file, '');
    const { stuck } = await stuckThread({ until: join(dir, 'go') });
    const next = await pipelinedBehind({ tag: 'cancelled', file });
    await ctx!.cancel(next.runId);
    expect((await next.result()).status).toBe('cancelled');
    // The stuck step ends by itself, and its thread goes on to the task behind it: that one answers as stopped.
    await writeFile(join(dir, 'go'), '');
    expect((await stuck.result()).status).toBe('completed');
    expect((await ctx!.run(new Flow(new Busy(), { name: 'later', type: 'thread' }), { tag: 'later', file })).output).toBe('later');
    expect(await readFile(file, 'utf8')).toBe('later\n');
  });
});
