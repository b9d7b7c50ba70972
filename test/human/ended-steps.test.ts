import { z } from 'zod';
import { describe, expect, it, vi } from 'vitest';
import { FatalError, Flow, FlowContext, ResultsManager, RetryableError, type FlowContextOptions, type Step, type WeirEvent } from '../../src/index.js';
import { Fn } from '../fixtures/processors.js';
import { sqliteContexts } from '../fixtures/sqlite-contexts.js';
import { nextWaiting } from '../fixtures/waiting.js';

const temp = sqliteContexts('ended-steps');

const stores: { name: string; context: (options?: FlowContextOptions) => FlowContext }[] = [
  { name: 'memory', context: (options = {}) => temp.track(new FlowContext({ results: ResultsManager.memory(), ...options })) },
  { name: 'sqlite', context: (options = {}) => temp.context(options) },
];

/**
 * A parallel run: "charge" fails for good (a fatal error, or a retryable one `maxAttempts` times),
 * "approve" waits for input, "after-charge" depends on "charge" and is skipped.
 */
function payment(calls: { charge: number; approve: number }, error: 'fatal' | 'retryable') {
  const p = Flow.parallel('payment');
  const charge = new Flow(
    new Fn(() => {
      calls.charge++;
      throw error === 'fatal' ? new FatalError('card declined') : new RetryableError('gateway down');
    }),
    { name: 'charge', retry: { maxAttempts: 3, initialInterval: 1, jitter: 0 } },
  ).registerTo(p);
  new Flow(
    new Fn(async (_input, step: Step) => {
      calls.approve++;
      return step.waitForInput('approval', z.boolean(), { timeout: 60_000 });
    }),
    { name: 'approve' },
  ).registerTo(p);
  new Flow(new Fn(() => 'shipped'), { name: 'after-charge' }).registerTo(p, { required: [charge] });
  return p;
}

/** Starts the payment run and waits until it parked with "charge" failed and "after-charge" skipped. */
async function parkedPayment(ctx: FlowContext, error: 'fatal' | 'retryable', options: { mode?: 'interactive' | 'hybrid' } = {}) {
  const calls = { charge: 0, approve: 0 };
  const flow = payment(calls, error);
  ctx.register(flow);
  const events: WeirEvent[] = [];
  ctx.on('event', (e) => events.push(e));
  const waiting = nextWaiting(ctx);
  const handle = ctx.start(flow, {}, { mode: options.mode ?? 'interactive' });
  await waiting;
  expect(calls.charge).toBe(error === 'fatal' ? 1 : 3);
  return { calls, handle, events, flow };
}

/** What a run that went on must show: "charge" failed once for good, never run again, and the run failed with its error. */
function expectChargeKept(result: Awaited<ReturnType<FlowContext['run']>>, calls: { charge: number }, error: 'fatal' | 'retryable', events: readonly WeirEvent[]) {
  expect(calls.charge).toBe(error === 'fatal' ? 1 : 3);
  expect(result.status).toBe('failed');
  expect(result.error).toMatchObject({ step: 'charge', message: error === 'fatal' ? 'card declined' : 'gateway down' });
  expect(result.steps.charge).toMatchObject({ status: 'failed' });
  expect(result.steps.charge!.attempts).toHaveLength(error === 'fatal' ? 1 : 3);
  expect(result.steps['after-charge']).toMatchObject({ status: 'skipped' });
  // Announced once, when it failed: history is only appended to.
  expect(events.filter((e) => e.type === 'step_failed' && e.step === 'charge')).toHaveLength(1);
  expect(events.filter((e) => e.type === 'step_skipped' && e.step === 'after-charge')).toHaveLength(1);
}

describe.each(stores)('a step that ended for good stays ended when a waiting run goes on ($name store)', ({ name, context }) => {
  it.each(['fatal', 'retryable'] as const)('after an answer (%s failure)', async (error) => {
    const ctx = context();
    const { calls, handle, events } = await parkedPayment(ctx, error);
    await ctx.submitInput(handle.runId, 'approval', true);
    const result = await handle.result();
    expect(result.steps.approve).toMatchObject({ status: 'completed', output: true });
    expectChargeKept(result, calls, error, events);
  });

  it('after a skip of the waiting step', async () => {
    const ctx = context();
    const { calls, handle, events } = await parkedPayment(ctx, 'retryable');
    await ctx.skip(handle.runId, 'approve', false);
    const result = await handle.result();
    expect(result.steps.approve).toMatchObject({ status: 'completed', output: false });
    expectChargeKept(result, calls, 'retryable', events);
  });

  it('after the person is taken out of the loop', async () => {
    const ctx = context();
    const { calls, handle, events } = await parkedPayment(ctx, 'fatal', { mode: 'hybrid' });
    await ctx.setHumanInLoop(handle.runId, false);
    const result = await handle.result();
    expect(result.steps.approve).toMatchObject({ status: 'failed' });
    expect(calls.charge).toBe(1);
    expect(result.error).toMatchObject({ step: 'charge', message: 'card declined' });
    expect(events.filter((e) => e.type === 'step_failed' && e.step === 'charge')).toHaveLength(1);
  });

  it('after a cancel: it keeps its status, it is not marked cancelled', async () => {
    const ctx = context();
    const { calls, handle } = await parkedPayment(ctx, 'fatal');
    await ctx.cancel(handle.runId);
    const result = await handle.result();
    expect(result.status).toBe('cancelled');
    expect(calls.charge).toBe(1);
    expect(result.steps.charge).toMatchObject({ status: 'failed' });
    expect(result.steps['after-charge']).toMatchObject({ status: 'skipped' });
    expect((await ctx.getRun(handle.runId)).steps.charge).toMatchObject({ status: 'failed' });
  });

  it('after its wait expires', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    try {
      const ctx = context();
      const { calls, handle, events } = await parkedPayment(ctx, 'fatal');
      await vi.advanceTimersByTimeAsync(60_001);
      const result = await handle.result();
      expect(result.steps.approve).toMatchObject({ status: 'failed', error: expect.objectContaining({ code: 'WEIR_INPUT_TIMEOUT' }) });
      expectChargeKept(result, calls, 'fatal', events);
    } finally {
      vi.useRealTimers();
    }
  });

  it('after the run is orphaned (inputTimeout)', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
    try {
      const ctx = context({ inputTimeout: 1_000, inputFallback: 'batch' });
      const { calls, handle, events } = await parkedPayment(ctx, 'fatal');
      await vi.advanceTimersByTimeAsync(1_001);
      const result = await handle.result();
      expect(events.find((e) => e.type === 'run_resumed')).toMatchObject({ reason: 'orphaned' });
      expectChargeKept(result, calls, 'fatal', events);
    } finally {
      vi.useRealTimers();
    }
  });

  if (name === 'sqlite') {
    it('after an answer, in another context on the same file', async () => {
      const first = context();
      const { calls, handle, events } = await parkedPayment(first, 'retryable');
      const second = context();
      second.register(payment(calls, 'retryable'));
      second.on('event', (e) => events.push(e));
      await second.submitInput(handle.runId, 'approval', true);
      const result = await (await second.handle(handle.runId)).result();
      expectChargeKept(result, calls, 'retryable', events);
    });
  }

  it('but ctx.resume runs it again, as documented, once the run ended', async () => {
    const ctx = context();
    const { calls, handle } = await parkedPayment(ctx, 'fatal');
    await ctx.submitInput(handle.runId, 'approval', true);
    expect((await handle.result()).status).toBe('failed');
    const resumed = await (await ctx.resume(handle.runId)).result();
    expect(calls.charge).toBe(2);
    expect(resumed.steps.approve).toMatchObject({ status: 'completed', output: true });
    expect(calls.approve).toBe(2);
  });
});
