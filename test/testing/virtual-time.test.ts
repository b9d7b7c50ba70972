import { z } from 'zod';
import { afterEach, describe, expect, it } from 'vitest';
import { FatalError, Flow, RetryableError, type Step } from '../../src/index.js';
import { createTestContext, type TestContext } from '../../src/testing/index.js';
import { Fn } from '../fixtures/processors.js';

let t: TestContext;
afterEach(async () => {
  await t?.close();
});

/** A step that waits for its signal and fails with its reason: it ends only by a timeout. */
function untilAborted(step: Step): Promise<never> {
  return new Promise((_resolve, reject) => step.signal.addEventListener('abort', () => reject(step.signal.reason as Error)));
}

/** A step that fails with a retryable error `failures` times, then returns how often it ran. */
function flaky(failures: number, retry: object) {
  let calls = 0;
  const flow = new Flow(
    new Fn(() => {
      calls++;
      if (calls <= failures) throw new RetryableError(`attempt ${calls} failed`);
      return calls;
    }),
    { name: 'flaky', retry },
  );
  return { flow, calls: () => calls };
}

describe('a test context on a virtual clock', () => {
  it('runs a flow whose three retries are ten minutes apart in milliseconds of real time', async () => {
    t = createTestContext();
    const { flow, calls } = flaky(3, { maxAttempts: 4, initialInterval: 600_000, maxInterval: 600_000, backoffFactor: 1, jitter: 0 });
    const started = t.now();
    const result = await t.run(flow, {});
    expect(result).toMatchObject({ status: 'completed', output: 4 });
    expect(calls()).toBe(4);
    // Thirty virtual minutes went by; the attempts' times say so.
    expect(t.now() - started).toBe(1_800_000);
    expect(result.endTime - result.startTime).toBe(1_800_000);
  });

  it('starts at a fixed time, so results and events carry the same times on every run', async () => {
    t = createTestContext();
    const result = await t.run(new Flow(new Fn(() => 'x'), { name: 'one' }), {});
    expect(result.startTime).toBe(Date.UTC(2030, 0, 1));
    expect(t.events(result.runId).every((e) => e.time === Date.UTC(2030, 0, 1))).toBe(true);
    const later = createTestContext({ startTime: new Date('2031-06-01T12:00:00Z') });
    try {
      expect(later.now()).toBe(Date.parse('2031-06-01T12:00:00Z'));
    } finally {
      await later.close();
    }
  });

  it('fires a step timeout only when the clock is moved past it', async () => {
    t = createTestContext();
    const flow = new Flow(new Fn((_i, step: Step) => untilAborted(step)), {
      name: 'hangs',
      timeout: 30_000,
    });
    const handle = t.start(flow, {});
    await t.advance('29s');
    expect((await t.ctx.getRun(handle.runId)).status).toBe('running');
    await t.advance('1s');
    const result = await handle.result();
    expect(result.status).toBe('failed');
    expect(result.error).toMatchObject({ code: 'WEIR_TIMEOUT' });
  });

  it('fires a run timeout, and a heartbeat timeout, on virtual time', async () => {
    t = createTestContext();
    const quiet = new Flow(new Fn((_i, step: Step) => untilAborted(step)), {
      name: 'quiet',
      heartbeatTimeout: 60_000,
    });
    const handle = t.start(quiet, {});
    await t.advance('1m');
    expect((await handle.result()).error).toMatchObject({ code: 'WEIR_TIMEOUT', message: expect.stringContaining('heartbeat') });
    const slow = new Flow(new Fn((_i, step: Step) => untilAborted(step)), { name: 'slow' });
    const timed = t.start(slow, {}, { timeout: 3_600_000 });
    await t.advance('1h');
    expect((await timed.result()).error).toMatchObject({ code: 'WEIR_RUN_TIMEOUT' });
  });

  it('expires a waitForInput deadline of a day with its default, in one advance', async () => {
    t = createTestContext();
    const flow = new Flow(new Fn(async (_i, step: Step) => step.waitForInput('approve', z.boolean(), { timeout: 86_400_000, default: false })), { name: 'asks' });
    const handle = t.start(flow, {}, { mode: 'interactive' });
    // Settles what the start set going, without moving the clock (runUntilIdle would reach the deadline).
    await t.advance(0);
    await t.expectWaiting(handle.runId, 'approve');
    await t.advance('23h');
    await t.expectWaiting(handle.runId, 'approve');
    await t.advance('1h');
    expect(await handle.result()).toMatchObject({ status: 'completed', output: false });
  });

  it('answers a wait, and the run goes on at once', async () => {
    t = createTestContext();
    const flow = new Flow(new Fn(async (_i, step: Step) => step.waitForInput('approve', z.boolean())), { name: 'asks' });
    const handle = t.start(flow, {}, { mode: 'interactive' });
    await t.runUntilIdle();
    const wait = await t.expectWaiting(handle.runId, 'approve');
    expect(wait).toMatchObject({ step: 'asks', key: 'approve', hasDefault: false });
    await expect(t.expectWaiting(handle.runId, 'other')).rejects.toThrow(/waits on "approve"/);
    expect(await t.answer(handle.runId, 'approve', true)).toMatchObject({ status: 'completed', output: true });
  });

  it('t.run says why a run has not ended instead of hanging', async () => {
    t = createTestContext();
    const asks = new Flow(new Fn(async (_i, step: Step) => step.waitForInput('k', z.string())), { name: 'asks' });
    await expect(t.run(asks, {}, { mode: 'interactive' })).rejects.toMatchObject({ code: 'WEIR_RUN_STATE', message: expect.stringContaining('waits for input ("k" of "asks")') });
  });

  it('works on a temporary SQLite store, removed on close', async () => {
    t = createTestContext({ store: 'sqlite' });
    const { flow } = flaky(1, { maxAttempts: 2, initialInterval: 60_000 });
    expect(await t.run(flow, {})).toMatchObject({ status: 'completed', output: 2 });
    expect(t.ctx.results.kind).toBe('sqlite');
  });

  it('refuses bad options and durations, naming them', async () => {
    expect(() => createTestContext({ store: 'redis' as 'memory' })).toThrow(expect.objectContaining({ code: 'WEIR_INVALID_OPTIONS', message: expect.stringContaining('store') }));
    expect(() => createTestContext({ concurrency: 0 })).toThrow(expect.objectContaining({ code: 'WEIR_INVALID_OPTIONS', message: expect.stringContaining('concurrency') }));
    t = createTestContext();
    await expect(t.advance('soon' as '1s')).rejects.toMatchObject({ code: 'WEIR_INVALID_OPTIONS', message: expect.stringContaining("'30s'") });
    await expect(t.advance(-1)).rejects.toMatchObject({ code: 'WEIR_INVALID_OPTIONS' });
  });

  it('leaves real time alone: a step that waits on a real timer still completes', async () => {
    t = createTestContext();
    const flow = new Flow(new Fn(() => new Promise((resolve) => setTimeout(() => resolve('real'), 5))), { name: 'real' });
    expect(await t.run(flow, {})).toMatchObject({ status: 'completed', output: 'real' });
  });
});

describe('step doubles', () => {
  it('replace a processor in this context only, and their output passes its schema', async () => {
    t = createTestContext();
    const Out = z.object({ total: z.number() });
    const charge = new Flow(
      new (class extends Fn {
        override readonly output = Out as never;
      })(() => {
        throw new FatalError('the real processor must not run');
      }),
      { name: 'charge' },
    );
    t.mock(charge, { total: 42 });
    expect(await t.run(charge, {})).toMatchObject({ status: 'completed', output: { total: 42 } });
    t.mock('charge', (input) => ({ total: (input as { n: number }).n * 2 }));
    expect((await t.run(charge, { n: 4 })).output).toEqual({ total: 8 });
    t.mock(charge, { total: 'many' });
    const wrong = await t.run(charge, {});
    expect(wrong.status).toBe('failed');
    expect(wrong.error).toMatchObject({ code: 'WEIR_VALIDATION', message: expect.stringContaining('test double') });
  });

  it('fail the next attempts with an error, then the processor runs again; the retry policy decides', async () => {
    t = createTestContext();
    let real = 0;
    const flow = new Flow(new Fn(() => ++real), { name: 'step', retry: { maxAttempts: 5, initialInterval: 30_000, jitter: 0 } });
    t.fail(flow, new RetryableError('flaky'), { times: 2 });
    const result = await t.run(flow, {});
    expect(result).toMatchObject({ status: 'completed', output: 1 });
    expect(result.attempts.map((a) => a.error?.message)).toEqual(['flaky', 'flaky', undefined]);
    t.fail('step', new FatalError('card declined'));
    expect((await t.run(flow, {})).error).toMatchObject({ name: 'FatalError', message: 'card declined' });
    expect(() => t.fail(flow, new Error('x'), { times: 0 })).toThrow(expect.objectContaining({ code: 'WEIR_INVALID_OPTIONS' }));
    expect(() => t.mock(42 as unknown as string, 1)).toThrow(expect.objectContaining({ code: 'WEIR_INVALID_OPTIONS' }));
  });
});
