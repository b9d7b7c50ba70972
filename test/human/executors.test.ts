import { afterEach, describe, expect, it } from 'vitest';
import { Flow, FlowContext, ResultsManager, type WeirEvent } from '../../src/index.js';
import { AskEven, AskTwice } from '../fixtures/remote.js';
import { nextWaiting } from '../fixtures/waiting.js';

let ctx: FlowContext;
afterEach(() => ctx.close());


describe.each(['thread', 'process'] as const)('waitForInput on a %s', (type) => {
  it('waits without holding the worker, validates answers by the JSON Schema, and runs the step again with them', async () => {
    ctx = new FlowContext({ results: ResultsManager.memory(), threads: { max: 1 }, processes: { max: 1 } });
    const flow = new Flow(new AskTwice(), { name: 'ask', type });
    const events: WeirEvent[] = [];
    ctx.on('event', (e) => events.push(e));
    const waiting = nextWaiting(ctx);
    const handle = ctx.start(flow, null, { mode: 'interactive' });
    const parked = await waiting;
    // Both asks made together wait together.
    expect(parked.waitingFor).toEqual([
      { step: 'ask', key: 'approval' },
      { step: 'ask', key: 'note' },
    ]);
    expect(events.filter((e) => e.type === 'input_required').map((e) => [e.key, (e as { hasDefault: boolean }).hasDefault])).toEqual([
      ['approval', false],
      ['note', true],
    ]);
    // The worker is not held, nor ended: it is idle in the pool.
    expect(type === 'thread' ? ctx.workers.threads : ctx.workers.processes).toBe(1);

    await expect(ctx.submitInput(handle.runId, 'approval', { ok: 'yes' })).rejects.toMatchObject({ code: 'WEIR_VALIDATION' });
    await expect(ctx.submitInput(handle.runId, 'note', 'x'.repeat(21))).rejects.toMatchObject({ code: 'WEIR_VALIDATION' });
    await ctx.submitInput(handle.runId, 'note', 'ship it');
    // One of two answered: it still waits, for the other only.
    expect((await ctx.getRun(handle.runId)).status).toBe('waiting');
    expect((await ctx.listRuns({ status: 'waiting' })).runs[0]?.waitingFor?.map((w) => w.key)).toEqual(['approval']);
    await ctx.submitInput(handle.runId, 'approval', { ok: true });
    const result = await handle.result();
    expect(result.status).toBe('completed');
    const output = result.output as { approval: unknown; note: string; attempt: number; pid: number; threadId: number };
    expect(output).toMatchObject({ approval: { ok: true }, note: 'ship it', attempt: 2 });
    if (type === 'thread') expect(output.threadId).not.toBe(0);
    else expect(output.pid).not.toBe(process.pid);
    expect(result.attempts.map((a) => a.waitedFor)).toEqual([['approval', 'note'], undefined]);
    expect(events.some((e) => e.type === 'step_failed' || e.type === 'step_retry')).toBe(false);
  });

  it('drops an answer that fails the ask\'s own schema, and asks again saying why', async () => {
    ctx = new FlowContext({ results: ResultsManager.memory(), threads: { max: 1 }, processes: { max: 1 } });
    const flow = new Flow(new AskEven(), { name: 'even', type });
    let waiting = nextWaiting(ctx);
    const asks: WeirEvent[] = [];
    ctx.on('input_required', (e) => asks.push(e));
    const handle = ctx.start(flow, null, { mode: 'interactive' });
    await waiting;
    waiting = nextWaiting(ctx);
    await ctx.submitInput(handle.runId, 'count', 3);
    await waiting;
    expect(asks[1]).toMatchObject({ key: 'count', rejected: { code: 'WEIR_VALIDATION', message: expect.stringContaining('must be even') } });
    await ctx.submitInput(handle.runId, 'count', 8);
    expect(await handle.result()).toMatchObject({ status: 'completed', output: 8 });
  });

  it('takes the default of an ask in a hybrid run without a person in the loop', async () => {
    ctx = new FlowContext({ results: ResultsManager.memory(), threads: { max: 1 }, processes: { max: 1 } });
    const flow = new Flow(new AskTwice(), { name: 'ask', type });
    const waiting = nextWaiting(ctx);
    const handle = ctx.start(flow, null, { mode: 'hybrid' });
    await waiting;
    await ctx.submitInput(handle.runId, 'approval', { ok: false });
    // The note still waits; with the person out of the loop it takes its default.
    await ctx.setHumanInLoop(handle.runId, false);
    const result = await handle.result();
    expect(result.error).toBeUndefined();
    expect(result.output).toMatchObject({ approval: { ok: false }, note: 'none' });
  });
});
