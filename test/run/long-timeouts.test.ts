import { Keyv } from 'keyv';
import { z } from 'zod';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Flow, FlowContext, ResultsManager, type Step } from '../../src/index.js';
import { deferred, Fn } from '../fixtures/processors.js';
import { Multiply } from '../fixtures/remote.js';
import { nextWaiting } from '../fixtures/waiting.js';

const DAY = 86_400_000;
/** One past the longest delay a host timer takes (2^31 - 1 ms, about 24.8 days). */
const LONG = 2 ** 31;

const contexts: FlowContext[] = [];
afterEach(async () => {
  vi.useRealTimers();
  await Promise.all(contexts.splice(0).map((c) => c.close()));
});

/** A context on fake time; its leases last days, so their renewal does not tick every 10 s of a fake month. */
function fakeTimeContext(options: ConstructorParameters<typeof FlowContext>[0] = {}): FlowContext {
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date'] });
  const ctx = new FlowContext({ leaseTimeout: 3 * DAY, ...options });
  contexts.push(ctx);
  return ctx;
}

/** Results in a Keyv store that counts its reads and writes. */
function countedResults(): { results: ResultsManager; ops: { n: number } } {
  const ops = { n: 0 };
  class CountingStore extends Map<string, unknown> {
    override get(key: string): unknown {
      ops.n++;
      return super.get(key);
    }
    override set(key: string, value: unknown): this {
      ops.n++;
      return super.set(key, value);
    }
  }
  return { results: ResultsManager.keyv(new Keyv({ store: new CountingStore() })), ops };
}

/** Resolves once the store has seen no read or write for a few turns of the event loop, the clock not moved. */
async function settled(ops: { n: number }): Promise<void> {
  for (let quiet = 0, last = -1; quiet < 5; ) {
    await vi.advanceTimersByTimeAsync(0);
    await new Promise<void>((resolve) => setImmediate(resolve));
    quiet = ops.n === last ? quiet + 1 : 0;
    last = ops.n;
  }
}

/** A processor that ends only when its signal aborts; `steps` holds the step of each attempt. */
function hanging(): { processor: Fn; steps: Step[] } {
  const steps: Step[] = [];
  const processor = new Fn(
    (_input, step) =>
      new Promise((_resolve, reject) => {
        steps.push(step);
        step.signal.addEventListener('abort', () => reject(step.signal.reason as Error));
      }),
  );
  return { processor, steps };
}

/** A step that finishes once `gate` resolves. */
function gated(name: string, gate: Promise<void>, config: { timeout?: number } = {}): Flow<unknown, unknown> {
  return new Flow(
    new Fn(async () => {
      await gate;
      return 'done';
    }),
    { name, ...config },
  );
}

describe('timeouts past 2^31 - 1 ms', () => {
  it('lets a step with timeout 2**31 complete, and still times it out once 2**31 ms have passed', async () => {
    const ctx = fakeTimeContext();
    const gate = deferred();
    const quick = ctx.start(gated('quick', gate.promise, { timeout: LONG }), {});
    await vi.advanceTimersByTimeAsync(1000);
    gate.resolve();
    expect(await quick.result()).toMatchObject({ status: 'completed', output: 'done' });

    const h = hanging();
    const slow = ctx.start(new Flow(h.processor, { name: 'slow', timeout: LONG }), {});
    await vi.advanceTimersByTimeAsync(LONG - 1);
    expect(h.steps[0]!.signal.aborted).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect((await slow.result()).error).toMatchObject({ name: 'TimeoutError', code: 'WEIR_TIMEOUT', step: 'slow' });
  });

  it('lets a run with timeout 2**31 complete, and still fails it with WEIR_RUN_TIMEOUT once 2**31 ms have passed', async () => {
    const ctx = fakeTimeContext();
    const gate = deferred();
    const quick = ctx.start(gated('quick', gate.promise), {}, { timeout: LONG });
    await vi.advanceTimersByTimeAsync(1000);
    gate.resolve();
    expect(await quick.result()).toMatchObject({ status: 'completed', output: 'done' });

    const h = hanging();
    const slow = ctx.start(new Flow(h.processor, { name: 'slow' }), {}, { timeout: LONG });
    await vi.advanceTimersByTimeAsync(LONG - 1);
    expect(h.steps[0]!.signal.aborted).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect((await slow.result()).error).toMatchObject({ name: 'TimeoutError', code: 'WEIR_RUN_TIMEOUT' });
  });

  it('waits a backoff of 2**31 ms in full before the next attempt', async () => {
    const ctx = fakeTimeContext();
    let calls = 0;
    const flaky = new Flow(
      new Fn(() => {
        if (++calls === 1) throw new Error('flaky');
        return calls;
      }),
      { name: 'flaky', retry: { maxAttempts: 2, initialInterval: LONG, maxInterval: LONG, jitter: 0 } },
    );
    const handle = ctx.start(flaky, {});
    await vi.advanceTimersByTimeAsync(LONG - 1);
    expect(calls).toBe(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(await handle.result()).toMatchObject({ status: 'completed', output: 2 });
  });

  it('times out a step that sends no heartbeat for a heartbeatTimeout of 2**31 ms, not before', async () => {
    const ctx = fakeTimeContext();
    const h = hanging();
    const handle = ctx.start(new Flow(h.processor, { name: 'silent', heartbeatTimeout: LONG }), {});
    await vi.advanceTimersByTimeAsync(LONG - 1);
    expect(h.steps[0]!.signal.aborted).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect((await handle.result()).error).toMatchObject({ code: 'WEIR_TIMEOUT', step: 'silent' });
  });

  it('waits out a closeTimeout of 2**31 ms for a run in progress instead of cancelling it at once', async () => {
    const ctx = fakeTimeContext({ closeTimeout: LONG });
    const gate = deferred();
    const handle = ctx.start(gated('finishing', gate.promise), {});
    const closed = ctx.close();
    await vi.advanceTimersByTimeAsync(1000);
    expect(ctx.state).toBe('closing');
    gate.resolve();
    await closed;
    expect(await handle.result()).toMatchObject({ status: 'completed', output: 'done' });
  });

  it('renews the lease of a leaseTimeout past 2**31 ms once a third of it has passed, not every millisecond', async () => {
    const { results, ops } = countedResults();
    const ctx = fakeTimeContext({ results, leaseTimeout: 4 * LONG });
    const gate = deferred();
    const handle = ctx.start(gated('long-lease', gate.promise), {});
    // What starting the run writes settles first (its store work may take turns of real I/O).
    await settled(ops);
    ops.n = 0;
    await vi.advanceTimersByTimeAsync(1000);
    expect(ops.n).toBe(0);
    gate.resolve();
    expect(await handle.result()).toMatchObject({ status: 'completed', output: 'done' });
  });

  it('refuses a timeout too long for its deadline to be a Date, naming it', async () => {
    const tooLong = 8.64e15;
    expect(() => gated('x', Promise.resolve(), { timeout: tooLong })).toThrow(
      expect.objectContaining({ code: 'WEIR_INVALID_CONFIG', message: expect.stringContaining('timeout: expected a positive whole number of milliseconds (at most 50 million days)') }),
    );
    expect(() => new FlowContext({ leaseTimeout: tooLong })).toThrow(expect.objectContaining({ code: 'WEIR_INVALID_OPTIONS', message: expect.stringContaining('leaseTimeout') }));
    expect(() => new FlowContext({ retry: { maxInterval: tooLong } })).toThrow(expect.objectContaining({ code: 'WEIR_INVALID_OPTIONS' }));
    const ctx = new FlowContext();
    contexts.push(ctx);
    expect(() => ctx.start(gated('y', Promise.resolve()), {}, { timeout: tooLong })).toThrow(expect.objectContaining({ code: 'WEIR_INVALID_OPTIONS' }));
    const asked = await ctx.run(
      new Flow(new Fn(async (_i, step: Step) => step.waitForInput('k', z.number(), { timeout: tooLong })), { name: 'ask' }),
      {},
      { mode: 'interactive' },
    );
    expect(asked.error).toMatchObject({ code: 'WEIR_INVALID_OPTIONS', message: expect.stringContaining('timeout') });
  });
});

describe('a wait for input with a deadline 30 days away', () => {
  const Approval = z.object({ approved: z.boolean() });
  const approval = (): Flow<unknown, unknown> =>
    new Flow(
      new Fn(async (_i, step: Step) => step.waitForInput('approval', Approval, { timeout: 30 * DAY, default: { approved: false } })),
      { name: 'approve' },
    );

  it('parks the run without a TimeoutOverflowWarning', async () => {
    const warnings: Error[] = [];
    const onWarning = (warning: Error): void => void warnings.push(warning);
    process.on('warning', onWarning);
    try {
      const ctx = new FlowContext();
      contexts.push(ctx);
      const parked = nextWaiting(ctx);
      const handle = ctx.start(approval(), {}, { mode: 'interactive' });
      await parked;
      expect((await ctx.getRun(handle.runId)).status).toBe('waiting');
      // Node emits a warning on the next tick: this one comes after any emitted so far.
      await new Promise((resolve) => process.nextTick(resolve));
      expect(warnings.filter((w) => w.name === 'TimeoutOverflowWarning')).toEqual([]);
    } finally {
      process.off('warning', onWarning);
    }
  });

  it('costs no store reads or writes while it waits, and gives the run its default once the deadline passes', async () => {
    const { results, ops } = countedResults();
    const ctx = fakeTimeContext({ results });
    const parked = nextWaiting(ctx);
    const handle = ctx.start(approval(), {}, { mode: 'interactive' });
    await parked;
    // What parking itself reads (the review that follows it) settles first.
    await vi.advanceTimersByTimeAsync(0);
    ops.n = 0;
    await vi.advanceTimersByTimeAsync(1000);
    expect(ops.n).toBe(0);
    await vi.advanceTimersByTimeAsync(29 * DAY - 1000);
    expect(ops.n).toBe(0);
    expect((await ctx.getRun(handle.runId)).status).toBe('waiting');
    await vi.advanceTimersByTimeAsync(DAY + 1);
    expect(await handle.result()).toMatchObject({ status: 'completed', output: { approved: false } });
  });
});

describe('backoff with no initial wait', () => {
  it('stays 0 ms however many attempts, never NaN', async () => {
    const ctx = new FlowContext();
    try {
      let calls = 0;
      const flaky = new Flow(
        new Fn(() => {
          if (++calls < 400) throw new Error('not yet');
          return calls;
        }),
        { name: 'flaky', retry: { maxAttempts: 400, initialInterval: 0, backoffFactor: 10, jitter: 0 } },
      );
      const delays: number[] = [];
      ctx.on('step_retry', (e) => delays.push(e.delay));
      const result = await ctx.run(flaky, {});
      expect(result).toMatchObject({ status: 'completed', output: 400 });
      expect(delays).toHaveLength(399);
      expect(delays.every((d) => d === 0)).toBe(true);
    } finally {
      await ctx.close();
    }
  });
});

describe('a thread step with a timeout past 2^31 - 1 ms', () => {
  it('is not failed at once while its worker starts', async () => {
    const ctx = new FlowContext({ threads: { max: 1 } });
    try {
      const result = await ctx.run(new Flow(new Multiply(), { name: 'times', type: 'thread', timeout: 2 ** 31 }), { n: 3 });
      expect(result.status).toBe('completed');
    } finally {
      await ctx.close();
    }
  });
});
