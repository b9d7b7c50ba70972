import { z } from 'zod';
import { afterEach, describe, expect, it } from 'vitest';
import { Flow, FlowContext, type Step, type WeirEvent } from '../../src/index.js';
import { createTestContext, type TestContext } from '../../src/testing/index.js';
import { Fn } from '../fixtures/processors.js';

let t: TestContext | undefined;
afterEach(async () => {
  await t?.close();
  t = undefined;
});

/** Two steps asking at once: one with a default, one without. */
function pair(): Flow<unknown, unknown> {
  const p = Flow.parallel('pair');
  new Flow(new Fn(async (_i, step: Step) => step.waitForInput('size', z.number(), { default: 3 })), { name: 'with-default' }).registerTo(p);
  new Flow(new Fn(async (_i, step: Step) => step.waitForInput('colour', z.string())), { name: 'without' }).registerTo(p);
  return p;
}

async function orphan(fallback: 'fail' | 'default' | 'batch' | undefined) {
  t = createTestContext({ inputTimeout: 60_000, ...(fallback === undefined ? {} : { inputFallback: fallback }) });
  const { ctx } = t;
  const events: WeirEvent[] = [];
  ctx.on('event', (e) => events.push(e));
  const handle = t.start(pair(), {}, { mode: 'interactive' });
  await t.expectWaiting(handle.runId);
  await t.advance(59_000);
  expect((await ctx.getRun(handle.runId)).status).toBe('waiting');
  await t.advance(1_001);
  const result = await handle.result();
  return { result, events, ctx };
}

describe("a waiting run nobody answers within the context's inputTimeout", () => {
  it('fails its waiting steps with fallback fail (the default), defaults or not, and says so in run_resumed', async () => {
    const { result, events } = await orphan(undefined);
    expect(result.status).toBe('failed');
    expect(result.steps['with-default']?.error).toMatchObject({ name: 'InputRequiredError', code: 'WEIR_INPUT_TIMEOUT' });
    expect(result.steps.without?.error).toMatchObject({ code: 'WEIR_INPUT_TIMEOUT' });
    expect(events.find((e) => e.type === 'run_resumed')).toMatchObject({ reason: 'orphaned', fallback: 'fail' });
    expect(events.filter((e) => e.type === 'input_received').map((e) => (e as { outcome: string }).outcome)).toEqual(['refused', 'refused']);
  });

  it('gives each ask its default with fallback default, failing those with none', async () => {
    const { result, events } = await orphan('default');
    expect(result.steps['with-default']).toMatchObject({ status: 'completed', output: 3 });
    expect(result.steps.without?.error).toMatchObject({ code: 'WEIR_INPUT_TIMEOUT' });
    expect(events.find((e) => e.type === 'run_resumed')).toMatchObject({ reason: 'orphaned', fallback: 'default' });
  });

  it('takes the person out of the loop for good with fallback batch', async () => {
    const { result, events, ctx } = await orphan('batch');
    expect(result.steps['with-default']).toMatchObject({ status: 'completed', output: 3 });
    expect(result.steps.without?.error).toMatchObject({ code: 'WEIR_INPUT_REQUIRED' });
    expect(events.find((e) => e.type === 'run_resumed')).toMatchObject({ reason: 'orphaned', fallback: 'batch' });
    const info = await ctx.getRun(result.runId);
    expect(info).toMatchObject({ mode: 'interactive', humanInLoop: false });
  });

  it('counts from when the run began to wait again: an answer to one ask restarts it', async () => {
    t = createTestContext({ inputTimeout: 60_000 });
    const { ctx } = t;
    const s = Flow.sequential('two-asks');
    new Flow(new Fn(async (_i, step: Step) => step.waitForInput('first', z.number())), { name: 'one' }).registerTo(s);
    new Flow(new Fn(async (_i, step: Step) => step.waitForInput('second', z.number())), { name: 'two' }).registerTo(s);
    const handle = t.start(s, {}, { mode: 'interactive' });
    await t.expectWaiting(handle.runId, 'first');
    await t.advance(50_000);
    // Not t.answer: it runs the clock until idle, past the very timeout this test counts.
    await ctx.submitInput(handle.runId, 'first', 1);
    await t.expectWaiting(handle.runId, 'second');
    await t.advance(50_000);
    expect((await ctx.getRun(handle.runId)).status).toBe('waiting');
    await t.advance(10_001);
    const result = await handle.result();
    expect(result.steps.one).toMatchObject({ status: 'completed', output: 1 });
    expect(result.steps.two?.error).toMatchObject({ code: 'WEIR_INPUT_TIMEOUT' });
  });

  it('refuses a bad inputTimeout or inputFallback', () => {
    expect(() => new FlowContext({ inputTimeout: -1 })).toThrow(expect.objectContaining({ code: 'WEIR_INVALID_OPTIONS' }));
    expect(() => new FlowContext({ inputFallback: 'retry' as 'fail' })).toThrow(expect.objectContaining({ code: 'WEIR_INVALID_OPTIONS', message: expect.stringContaining('inputFallback') }));
  });
});
