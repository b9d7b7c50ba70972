import { afterEach, describe, expect, it, vi } from 'vitest';
import { ErrorCode, Flow, FlowContext, type FlowResult } from '../../src/index.js';
import { deferred } from '../fixtures/processors.js';
import { NeverLoads } from '../fixtures/hangs-in-worker.js';
import { AwaitSignal, Multiply } from '../fixtures/remote.js';

let ctx: FlowContext;
afterEach(async () => {
  vi.useRealTimers();
  delete process.env.WEIR_TEST_HANG_ON_LOAD;
  await ctx.close();
});

// Longer than a cold worker takes to start under tsx on a busy machine: the wait to start is bounded by it in real time.
const TIMEOUT = 10_000;

describe.each(['thread', 'process'] as const)('a %s step under fake timers', (type) => {
  it('completes on a cold pool when the fake clock passes its timeouts while the worker starts', async () => {
    vi.useFakeTimers();
    ctx = new FlowContext({ threads: { max: 1 }, processes: { max: 1 } });
    const pending = ctx.run(new Flow(new Multiply(3), { name: 'cold', type, timeout: TIMEOUT, heartbeatTimeout: TIMEOUT }), { n: 2 });
    // Starting the worker and loading the module take real time, which neither limit counts.
    await vi.advanceTimersByTimeAsync(TIMEOUT * 5);
    const result = await pending;
    expect(result.error).toBeUndefined();
    expect(result.output).toEqual({ n: 6 });
    // Warm now: the timeouts count from the hand-off to the worker, and the fake clock is not moved at all.
    const again = await ctx.run(new Flow(new Multiply(5), { name: 'warm', type, timeout: TIMEOUT, heartbeatTimeout: TIMEOUT }), { n: 2 });
    expect(again.output).toEqual({ n: 10 });
  });

  it('still times out once the processor runs, when the fake clock passes its timeout', async () => {
    vi.useFakeTimers();
    ctx = new FlowContext({ threads: { max: 1 }, processes: { max: 1 } });
    const running = deferred<'running'>();
    ctx.on('step_progress', () => running.resolve('running'));
    const pending = ctx.run(new Flow(new AwaitSignal(), { name: 'waits', type, timeout: TIMEOUT }), null);
    await vi.advanceTimersByTimeAsync(TIMEOUT * 5);
    // The step must still be running here: had its timeout fired during start-up, the run would have ended.
    const first = await Promise.race([running.promise, pending]);
    expect(first).toBe('running');
    await vi.advanceTimersByTimeAsync(TIMEOUT);
    const result: FlowResult = await pending;
    expect(result.status).toBe('failed');
    expect(result.error).toMatchObject({ name: 'TimeoutError', code: ErrorCode.TIMEOUT });
    expect(result.error?.message).toContain(`exceeded its timeout of ${TIMEOUT} ms`);
  });
});

describe.each(['thread', 'process'] as const)('waiting for a %s worker to start', (type) => {
  it('fails the attempt with a TimeoutError once it has waited the step\'s timeout for a module that never loads', async () => {
    ctx = new FlowContext({ threads: { max: 1, abortGrace: 20 }, processes: { max: 1, abortGrace: 20 } });
    // Read by the workers this context starts: the module's top level never finishes there.
    process.env.WEIR_TEST_HANG_ON_LOAD = '1';
    const result = await ctx.run(new Flow(new NeverLoads(), { name: 'stuck', type, timeout: 300 }), null);
    expect(result.status).toBe('failed');
    expect(result.error).toMatchObject({ name: 'TimeoutError', code: ErrorCode.TIMEOUT, retryable: true });
    expect(result.error?.message).toContain('did not start within 300 ms');
  });
});
