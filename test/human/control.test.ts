import { z } from 'zod';
import { describe, expect, it, vi } from 'vitest';
import { FatalError, Flow, type Step } from '../../src/index.js';
import { Fn } from '../fixtures/processors.js';
import { sqliteContexts } from '../fixtures/sqlite-contexts.js';
import { nextWaiting } from '../fixtures/waiting.js';

const temp = sqliteContexts('hitl-control');


/** sequential(first, parallel(ask, other), last), counting calls. */
function nested(calls: Record<string, number>, failFirstAsk = false) {
  const count = (name: string) => (calls[name] = (calls[name] ?? 0) + 1);
  const s = Flow.sequential('outer');
  new Flow(new Fn(() => (count('first'), 1)), { name: 'first' }).registerTo(s);
  const p = Flow.parallel('inner').registerTo(s);
  new Flow(
    new Fn(async (_i, step: Step) => {
      const n = count('ask');
      if (failFirstAsk && n === 1) throw new Error('flaky before asking');
      return step.waitForInput('size', z.number().int());
    }),
    { name: 'ask', retry: { maxAttempts: 2, initialInterval: 1 } },
  ).registerTo(p);
  new Flow(new Fn(() => (count('other'), 'o')), { name: 'other' }).registerTo(p);
  new Flow(new Fn((input) => (count('last'), input)), { name: 'last' }).registerTo(s);
  return s;
}

describe('waits in composites, with retries, and under manual control', () => {
  it('waits inside a parallel inside a sequential; a failure before the ask is retried per policy, and waiting costs no attempt of it', async () => {
    const calls: Record<string, number> = {};
    const ctx = temp.context().register(nested(calls, true));
    const waiting = nextWaiting(ctx);
    const handle = ctx.start(ctx.getFlow('outer')!, {}, { mode: 'interactive' });
    await waiting;
    await ctx.submitInput(handle.runId, 'size', 7);
    const result = await handle.result();
    expect(result.status).toBe('completed');
    expect(result.output).toMatchObject({ first: 1, inner: { ask: 7, other: 'o' }, last: { ask: 7, other: 'o' } });
    // A failure, a wait, then the answered run: three attempts, of which the policy (2 attempts) counts two.
    expect(result.steps.ask?.attempts.map((a) => [a.error?.message, a.waitedFor])).toEqual([
      ['flaky before asking', undefined],
      [undefined, ['size']],
      [undefined, undefined],
    ]);
    expect(calls).toEqual({ first: 1, ask: 3, other: 1, last: 1 });
  });

  it('skips a waiting step of a parked run from another context: the run goes on with the given output', async () => {
    const calls: Record<string, number> = {};
    const ctx = temp.context().register(nested(calls));
    const waiting = nextWaiting(ctx);
    const handle = ctx.start(ctx.getFlow('outer')!, {}, { mode: 'interactive' });
    await waiting;
    const other = temp.context().register(nested(calls));
    await other.skip(handle.runId, 'ask', 3);
    const result = await (await other.handle(handle.runId)).result();
    expect(result.status).toBe('completed');
    expect(result.output).toMatchObject({ inner: { ask: 3 } });
    expect(result.steps.ask?.status).toBe('completed');
    expect(calls.ask).toBe(1);
    // The original handle follows it too.
    expect((await handle.result()).status).toBe('completed');
    await expect(other.submitInput(handle.runId, 'size', 1)).rejects.toMatchObject({ code: 'WEIR_RUN_STATE' });
  });

  it('skips a waiting step of a run still going on here', async () => {
    const ctx = temp.context();
    const p = Flow.parallel('pair');
    new Flow(new Fn(async (_i, step: Step) => step.waitForInput('k', z.string())), { name: 'asks' }).registerTo(p);
    let release!: () => void;
    new Flow(new Fn(() => new Promise<string>((r) => (release = () => r('slow')))), { name: 'slow' }).registerTo(p);
    const handle = ctx.start(p, {}, { mode: 'interactive' });
    // The asking attempt ended to wait; the run goes on (its other step is busy).
    await vi.waitFor(async () => expect((await ctx.getRun(handle.runId)).steps.asks?.status).toBe('waiting'));
    await ctx.skip(handle.runId, 'asks', 'given');
    release();
    const result = await handle.result();
    expect(result.output).toEqual({ asks: 'given', slow: 'slow' });
  });

  it('refuses resume and retry of a run that waits, naming what to do', async () => {
    const calls: Record<string, number> = {};
    const ctx = temp.context().register(nested(calls));
    const waiting = nextWaiting(ctx);
    const handle = ctx.start(ctx.getFlow('outer')!, {}, { mode: 'interactive' });
    await waiting;
    await expect(ctx.resume(handle.runId)).rejects.toMatchObject({ code: 'WEIR_RUN_STATE', message: expect.stringContaining('submitInput') });
    await expect(ctx.retry(handle.runId)).rejects.toMatchObject({ code: 'WEIR_RUN_STATE' });
  });

  it('a step that fails for good after its answer keeps it: resume from it gets the same answer at once', async () => {
    const ctx = temp.context();
    let fail = true;
    const flow = new Flow(
      new Fn(async (_i, step: Step) => {
        const n = await step.waitForInput('n', z.number());
        if (fail) throw new FatalError('not today');
        return n * 2;
      }),
      { name: 'double' },
    );
    ctx.register(flow);
    const waiting = nextWaiting(ctx);
    const handle = ctx.start(flow, {}, { mode: 'interactive' });
    await waiting;
    await ctx.submitInput(handle.runId, 'n', 21);
    expect((await handle.result()).status).toBe('failed');
    fail = false;
    const resumed = await (await ctx.resume(handle.runId, { from: 'double' })).result();
    expect(resumed).toMatchObject({ status: 'completed', output: 42 });
  });
});

describe('resuming after a wait expired', () => {
  it('asks again: the expiry ended that attempt, not the question', async () => {
    const ctx = temp.context();
    const flow = new Flow(new Fn(async (_i, step: Step) => step.waitForInput('n', z.number(), { timeout: 30 })), { name: 'timed' });
    ctx.register(flow);
    const first = await ctx.run(flow, {}, { mode: 'interactive' });
    expect(first.error).toMatchObject({ code: 'WEIR_INPUT_TIMEOUT' });
    const waiting = nextWaiting(ctx);
    const resumed = await ctx.resume(first.runId);
    await waiting;
    await ctx.submitInput(first.runId, 'n', 5);
    expect(await resumed.result()).toMatchObject({ status: 'completed', output: 5 });
  });
});
