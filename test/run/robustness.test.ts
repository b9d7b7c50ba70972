import { afterEach, describe, expect, it } from 'vitest';
import { Flow, FlowContext, RetryableError } from '../../src/index.js';
import { createTestContext, type TestContext } from '../../src/testing/index.js';
import { Fn } from '../fixtures/processors.js';

/** The context of a test on the real clock. */
let ctx: FlowContext;
/** The test context of a test on weir/testing's virtual clock (of backoffs and timeouts); a test sets one or the other. */
let t: TestContext | undefined;
afterEach(async () => {
  if (t === undefined) await ctx.close();
  else await t.close();
  t = undefined;
});

describe('robustness of a run', () => {
  it('finishes a run whose listeners throw, and warns about them', async () => {
    ctx = new FlowContext();
    const warnings: string[] = [];
    const onWarning = (w: Error) => warnings.push(w.message);
    process.on('warning', onWarning);
    ctx.on('step_complete', () => {
      throw new Error('listener bug');
    });
    const result = await ctx.run(new Flow(new Fn(() => 1), { name: 'x' }), {});
    await new Promise((r) => setImmediate(r));
    process.off('warning', onWarning);
    expect(result.status).toBe('completed');
    expect(ctx.activeRuns).toBe(0);
    expect(warnings.some((w) => w.includes('listener bug'))).toBe(true);
  });

  it('queues a leaf once when an empty sibling composite completes first, keeping its backoff', async () => {
    t = createTestContext();
    const p = Flow.parallel('p');
    const empty = Flow.parallel('empty').registerTo(p);
    let calls = 0;
    new Flow(
      new Fn(() => {
        if (calls++ === 0) throw new RetryableError('once');
      }),
      { name: 'leaf', retry: { maxAttempts: 2, initialInterval: 5000, jitter: 0 } },
    ).registerTo(p, { required: [empty] });
    const handle = t.start(p, {});
    await t.advance(4999);
    expect(calls).toBe(1);
    await t.advance(1);
    expect((await handle.result()).status).toBe('completed');
    expect(calls).toBe(2);
  });

  it('fails a step that throws a value that cannot be described, instead of hanging', async () => {
    ctx = new FlowContext();
    const weird = Object.create(null) as Record<string, unknown>;
    weird.self = weird;
    // eslint-disable-next-line @typescript-eslint/only-throw-error -- the point is a thrown non-Error
    const result = await ctx.run(new Flow(new Fn(() => { throw weird; }), { name: "weird" }), {});
    expect(result.status).toBe('failed');
    expect(result.error?.step).toBe('weird');
  });

  it('does not abort a step’s signal after it succeeded', async () => {
    t = createTestContext();
    let signal: AbortSignal | undefined;
    const handle = t.start(new Flow(new Fn((_i, step) => { signal = step.signal; return 1; }), { name: 'quick', timeout: 100 }), {});
    await t.advance(1000);
    expect((await handle.result()).status).toBe('completed');
    expect(signal?.aborted).toBe(false);
  });
});
