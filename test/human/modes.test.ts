import { z } from 'zod';
import { afterEach, describe, expect, it } from 'vitest';
import { Flow, FlowContext, ResultsManager, type Step, type WeirEvent } from '../../src/index.js';
import { createTestContext, type TestContext } from '../../src/testing/index.js';
import { deferred, Fn } from '../fixtures/processors.js';
import { nextWaiting } from '../fixtures/waiting.js';

const contexts: FlowContext[] = [];
/** A test context on a virtual clock, for the tests of deadlines. */
let t: TestContext | undefined;
afterEach(async () => {
  await Promise.all(contexts.splice(0).map((c) => c.close()));
  await t?.close();
  t = undefined;
});
function context(options: ConstructorParameters<typeof FlowContext>[0] = {}): FlowContext {
  const ctx = new FlowContext({ results: ResultsManager.memory(), ...options });
  contexts.push(ctx);
  return ctx;
}

const Choice = z.enum(['red', 'green']);

/** One step that asks "colour" (with `options`), after `before` resolves. */
function asking(name: string, options: { default?: 'red' | 'green'; timeout?: number }, before?: Promise<void>, calls?: { n: number }) {
  return new Flow(
    new Fn(async (_input, step: Step) => {
      if (calls !== undefined) calls.n++;
      await before;
      return step.waitForInput('colour', Choice, options);
    }),
    { name, retry: { maxAttempts: 3, initialInterval: 1 } },
  );
}


describe('batch mode', () => {
  it('never waits: an ask takes its default, or fails the step with an InputRequiredError that is not retried', async () => {
    const ctx = context();
    const withDefault = await ctx.run(asking('with', { default: 'green' }), {});
    expect(withDefault).toMatchObject({ status: 'completed', output: 'green' });
    const calls = { n: 0 };
    const without = await ctx.run(asking('without', {}, undefined, calls), {});
    expect(without.status).toBe('failed');
    expect(without.error).toMatchObject({ name: 'InputRequiredError', code: 'WEIR_INPUT_REQUIRED' });
    expect(calls.n).toBe(1);
  });

  it('is the default mode, and refuses humanInLoop for a mode other than hybrid', async () => {
    const ctx = context();
    expect((await ctx.run(asking('plain', {}), {})).error).toMatchObject({ code: 'WEIR_INPUT_REQUIRED' });
    expect(() => ctx.start(asking('x', {}), {}, { mode: 'interactive', humanInLoop: false })).toThrow(expect.objectContaining({ code: 'WEIR_INVALID_OPTIONS' }));
    expect(() => ctx.start(asking('y', {}), {}, { mode: 'sometimes' as 'batch' })).toThrow(expect.objectContaining({ code: 'WEIR_INVALID_OPTIONS' }));
  });
});

describe('hybrid mode', () => {
  it('without a person in the loop acts as batch; turning it on makes later asks wait', async () => {
    const ctx = context();
    const gate = deferred();
    const flow = asking('later', {}, gate.promise);
    const waiting = nextWaiting(ctx);
    const handle = ctx.start(flow, {}, { mode: 'hybrid', humanInLoop: false });
    await ctx.setHumanInLoop(handle.runId, true);
    expect((await ctx.getRun(handle.runId)).humanInLoop).toBe(true);
    gate.resolve();
    await waiting;
    await ctx.submitInput(handle.runId, 'colour', 'red');
    expect(await handle.result()).toMatchObject({ status: 'completed', output: 'red' });

    const batchLike = await ctx.run(asking('off', { default: 'green' }), {}, { mode: 'hybrid', humanInLoop: false });
    expect(batchLike.output).toBe('green');
  });

  it('turning the person out while steps wait resolves them by their default, or fails those with none', async () => {
    const ctx = context();
    const p = Flow.parallel('pair');
    asking('has-default', { default: 'green' }).registerTo(p);
    new Flow(new Fn(async (_i, step: Step) => step.waitForInput('other', Choice)), { name: 'no-default' }).registerTo(p);
    const waiting = nextWaiting(ctx);
    const handle = ctx.start(p, {}, { mode: 'hybrid' });
    const parked = await waiting;
    expect(parked.waitingFor.map((w) => w.key).sort()).toEqual(['colour', 'other']);
    const events: WeirEvent[] = [];
    ctx.on('event', (e) => events.push(e));
    await ctx.setHumanInLoop(handle.runId, false);
    const result = await handle.result();
    expect(result.status).toBe('failed');
    expect(result.steps['has-default']).toMatchObject({ status: 'completed', output: 'green' });
    expect(result.steps['no-default']?.error).toMatchObject({ code: 'WEIR_INPUT_REQUIRED' });
    expect(events.find((e) => e.type === 'run_resumed')).toMatchObject({ reason: 'human_in_loop' });
    expect((await ctx.getRun(handle.runId)).humanInLoop).toBe(false);
  });

  it('refuses setHumanInLoop for a run that is not hybrid, or has ended', async () => {
    const ctx = context();
    const done = await ctx.run(asking('ended', { default: 'red' }), {}, { mode: 'hybrid', humanInLoop: false });
    await expect(ctx.setHumanInLoop(done.runId, false)).rejects.toMatchObject({ code: 'WEIR_RUN_STATE' });
    const waiting = nextWaiting(ctx);
    const handle = ctx.start(asking('inter', {}), {}, { mode: 'interactive' });
    await waiting;
    await expect(ctx.setHumanInLoop(handle.runId, false)).rejects.toMatchObject({ code: 'WEIR_RUN_STATE', message: expect.stringContaining('interactive') });
    await expect(ctx.setHumanInLoop('missing', false)).rejects.toMatchObject({ code: 'WEIR_RUN_NOT_FOUND' });
  });
});

describe('wait timeouts', () => {
  it('applies the default when nobody answers in time, and fails the step (not retried) when there is none', async () => {
    t = createTestContext();
    const events: WeirEvent[] = [];
    t.ctx.on('event', (e) => events.push(e));
    const withDefault = t.start(asking('timed', { default: 'red', timeout: 60_000 }), {}, { mode: 'interactive' });
    const parked = await t.expectWaiting(withDefault.runId, 'colour');
    expect(parked.deadline).toBeGreaterThan(t.now() + 59_000);
    await t.advance(60_001);
    expect(await withDefault.result()).toMatchObject({ status: 'completed', output: 'red' });
    expect(events.find((e) => e.type === 'input_received' && e.runId === withDefault.runId)).toMatchObject({ outcome: 'expired' });

    const calls = { n: 0 };
    const without = t.start(asking('timed-out', { timeout: 1000 }, undefined, calls), {}, { mode: 'interactive' });
    await t.expectWaiting(without.runId, 'colour');
    await t.advance(1001);
    const result = await without.result();
    expect(result.status).toBe('failed');
    expect(result.error).toMatchObject({ name: 'InputRequiredError', code: 'WEIR_INPUT_TIMEOUT' });
    expect(calls.n).toBe(2);
  });

  it('answers arriving before the deadline win over it', async () => {
    t = createTestContext();
    const handle = t.start(asking('raced', { default: 'red', timeout: 5000 }), {}, { mode: 'interactive' });
    await t.expectWaiting(handle.runId, 'colour');
    await t.advance(4000);
    await t.ctx.submitInput(handle.runId, 'colour', 'green');
    await t.advance(2000);
    expect(await handle.result()).toMatchObject({ status: 'completed', output: 'green' });
  });
});

describe('bad asks', () => {
  it('fails the step (not retried) for a bad key or bad options, naming them', async () => {
    const ctx = context();
    const badKey = await ctx.run(new Flow(new Fn(async (_i, step: Step) => step.waitForInput('', Choice)), { name: 'bad-key', retry: 3 }), {}, { mode: 'interactive' });
    expect(badKey.error).toMatchObject({ name: 'FatalError', code: 'WEIR_INVALID_OPTIONS', message: expect.stringContaining('key') });
    expect(badKey.steps['bad-key']?.attempts).toHaveLength(1);
    const badTimeout = await ctx.run(
      new Flow(new Fn(async (_i, step: Step) => step.waitForInput('k', Choice, { timeout: -5 })), { name: 'bad-timeout' }),
      {},
      { mode: 'interactive' },
    );
    expect(badTimeout.error).toMatchObject({ code: 'WEIR_INVALID_OPTIONS', message: expect.stringContaining('timeout') });
  });
});
