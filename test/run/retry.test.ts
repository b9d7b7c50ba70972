import { afterEach, describe, expect, it, vi } from 'vitest';
import { FatalError, Flow, FlowContext, RetryableError, type StepRetryEvent } from '../../src/index.js';
import { createTestContext, type TestContext } from '../../src/testing/index.js';
import { Fn } from '../fixtures/processors.js';

let ctx: FlowContext;
/** A test context, for the tests that move time: `ctx` is its context. */
let t: TestContext | undefined;
afterEach(async () => {
  await t?.close();
  t = undefined;
  await ctx.close();
});

/** A test context on a virtual clock; `ctx` is set to its context. */
function virtualTime(options: Parameters<typeof createTestContext>[0] = {}): TestContext {
  t = createTestContext(options);
  ctx = t.ctx;
  return t;
}

/** A processor that throws `errors[i]` on attempt i+1, then returns 'ok'. */
function failing(errors: unknown[]): { processor: Fn; calls: () => number } {
  let calls = 0;
  return {
    processor: new Fn(() => {
      const error = errors[calls++];
      if (error !== undefined) throw error as Error;
      return 'ok';
    }),
    calls: () => calls,
  };
}

describe('retry', () => {
  it('retries with exponential backoff and jitter, on virtual time', async () => {
    const t = virtualTime();
    const { processor, calls } = failing([new RetryableError('a'), new RetryableError('b'), new RetryableError('c')]);
    const flow = new Flow(processor, {
      name: 'flaky',
      retry: { maxAttempts: 4, initialInterval: 100, backoffFactor: 2, maxInterval: 300, jitter: 0.5 },
    });
    const retries: StepRetryEvent[] = [];
    ctx.on('step_retry', (e) => retries.push(e));
    const handle = ctx.start(flow, {});

    const bases = [100, 200, 300];
    for (let i = 0; i < 3; i++) {
      await t.advance(0);
      expect(calls()).toBe(i + 1);
      const retry = retries[i]!;
      expect(retry).toMatchObject({ step: 'flaky', attempt: i + 1, maxAttempts: 4 });
      expect(retry.delay).toBeGreaterThanOrEqual(bases[i]! * 0.5);
      expect(retry.delay).toBeLessThanOrEqual(bases[i]!);
      expect(retry.message).toBe(`will retry in ${retry.delay} ms (attempt ${i + 2} of 4)`);
      if (retry.delay > 0) {
        await t.advance(retry.delay - 1);
        expect(calls()).toBe(i + 1);
      }
      await t.advance(1);
    }
    const result = await handle.result();
    expect(calls()).toBe(4);
    expect(result.status).toBe('completed');
    expect(result.attempts.map((a) => a.error?.message)).toEqual(['a', 'b', 'c', undefined]);
  });

  it('spreads retries with jitter: delays differ between steps', async () => {
    const t = virtualTime();
    const p = Flow.parallel('p');
    const delays: number[] = [];
    ctx.on('step_retry', (e) => delays.push(e.delay));
    for (let i = 0; i < 20; i++) {
      new Flow(failing([new RetryableError('x')]).processor, { name: `s${i}`, retry: { maxAttempts: 2, initialInterval: 10_000, jitter: 1 } }).registerTo(p);
    }
    const handle = ctx.start(p, {});
    await t.advance('10s');
    expect((await handle.result()).status).toBe('completed');
    expect(new Set(delays).size).toBeGreaterThan(1);
  });

  it('takes the flow policy over the composite default over the context default', async () => {
    ctx = new FlowContext({ retry: { maxAttempts: 2, initialInterval: 0 } });
    const errors = () => Array.from({ length: 10 }, () => new Error('transient'));
    const root = Flow.parallel('root');
    const fromContext = failing(errors());
    new Flow(fromContext.processor, { name: 'ctx-default' }).registerTo(root);
    const group = Flow.parallel('group', { retry: 3 }).registerTo(root);
    const fromComposite = failing(errors());
    new Flow(fromComposite.processor, { name: 'composite-default' }).registerTo(group);
    const own = failing(errors());
    new Flow(own.processor, { name: 'own', retry: { maxAttempts: 6 } }).registerTo(group);
    const result = await ctx.run(root, {});
    expect(fromContext.calls()).toBe(2);
    expect(fromComposite.calls()).toBe(4);
    expect(own.calls()).toBe(6);
    expect(result.steps.own?.attempts).toHaveLength(6);
  });

  it('classifies errors: FatalError and programmer errors are not retried, plain and Retryable are', async () => {
    ctx = new FlowContext({ retry: { maxAttempts: 3, initialInterval: 0 } });
    const p = Flow.parallel('p');
    const cases = {
      fatal: failing([new FatalError('no auth'), new FatalError('no auth')]),
      type: failing([new TypeError('undefined is not a function')]),
      range: failing([new RangeError('out of range')]),
      plain: failing([new Error('socket hang up')]),
      retryable: failing([new RetryableError('503'), new RetryableError('503')]),
    };
    for (const [name, c] of Object.entries(cases)) new Flow(c.processor, { name }).registerTo(p);
    const result = await ctx.run(p, {});
    expect(cases.fatal.calls()).toBe(1);
    expect(cases.type.calls()).toBe(1);
    expect(cases.range.calls()).toBe(1);
    expect(cases.plain.calls()).toBe(2);
    expect(cases.retryable.calls()).toBe(3);
    expect(result.steps.fatal?.status).toBe('failed');
    expect(result.steps.retryable?.status).toBe('completed');
  });

  it('lets retryOn decide for plain errors but never for a FatalError', async () => {
    const retryOn = vi.fn((error: unknown) => (error as Error).message.includes('again'));
    ctx = new FlowContext({ retry: { maxAttempts: 3, initialInterval: 0, retryOn } });
    const p = Flow.parallel('p');
    const again = failing([new Error('try again'), new TypeError('again, a TypeError')]);
    const stop = failing([new Error('give up')]);
    const fatal = failing([new FatalError('again but fatal')]);
    new Flow(again.processor, { name: 'again' }).registerTo(p);
    new Flow(stop.processor, { name: 'stop' }).registerTo(p);
    new Flow(fatal.processor, { name: 'fatal' }).registerTo(p);
    await ctx.run(p, {});
    expect(again.calls()).toBe(3);
    expect(stop.calls()).toBe(1);
    expect(fatal.calls()).toBe(1);
    expect(retryOn).toHaveBeenCalledWith(expect.objectContaining({ message: 'try again' }), 1);
    expect(retryOn).not.toHaveBeenCalledWith(expect.objectContaining({ message: 'again but fatal' }), expect.anything());
  });

  it('does not hold a concurrency slot while waiting for backoff', async () => {
    const t = virtualTime({ concurrency: 1 });
    const p = Flow.parallel('p');
    const order: string[] = [];
    let first = true;
    new Flow(
      new Fn(() => {
        order.push('flaky');
        if (first) {
          first = false;
          throw new RetryableError('later');
        }
      }),
      { name: 'flaky', retry: { maxAttempts: 2, initialInterval: 1000, jitter: 0 } },
    ).registerTo(p);
    new Flow(new Fn(() => order.push('other')), { name: 'other' }).registerTo(p);
    const handle = ctx.start(p, {});
    await t.advance(0);
    expect(order).toEqual(['flaky', 'other']);
    await t.advance('1s');
    expect((await handle.result()).status).toBe('completed');
    expect(order).toEqual(['flaky', 'other', 'flaky']);
  });

  it('fails the step, not retried, when retryOn throws, with its error as the cause', async () => {
    const retryOn = (): boolean => {
      throw new Error('predicate bug');
    };
    ctx = new FlowContext({ retry: { maxAttempts: 3, initialInterval: 0, retryOn } });
    const flaky = failing([new Error('network down')]);
    const result = await ctx.run(new Flow(flaky.processor, { name: 'flaky' }), {});
    expect(flaky.calls()).toBe(1);
    expect(result.status).toBe('failed');
    expect(result.error).toMatchObject({ name: 'FatalError', code: 'WEIR_INVALID_CONFIG', retryable: false, cause: { message: 'predicate bug' } });
    expect(result.error?.message).toContain('network down');
    expect(result.attempts).toHaveLength(1);
  });
});
