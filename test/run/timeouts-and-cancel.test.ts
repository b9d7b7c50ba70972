import { getEventListeners } from 'node:events';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { CancelledError, Flow, FlowContext, TimeoutError, type Step } from '../../src/index.js';
import { createTestContext, type TestContext } from '../../src/testing/index.js';
import { deferred, Fn } from '../fixtures/processors.js';

/** The context of a test on the real clock. */
let ctx: FlowContext;
/** The test context of a test on weir/testing's virtual clock (of timeouts and backoffs); a test sets one or the other. */
let t: TestContext | undefined;
afterEach(async () => {
  vi.useRealTimers();
  if (t === undefined) await ctx.close();
  else await t.close();
  t = undefined;
});

/** A processor that never finishes on its own and records the signals it was given. */
function hanging(): { processor: Fn; steps: Step[]; started: Promise<void> } {
  const steps: Step[] = [];
  const started = deferred();
  return {
    steps,
    started: started.promise,
    processor: new Fn(
      (_input, step) =>
        new Promise((_resolve, reject) => {
          steps.push(step);
          started.resolve();
          step.signal.addEventListener('abort', () => reject(step.signal.reason as Error));
        }),
    ),
  };
}

describe('timeouts', () => {
  it('fails an attempt past its timeout with a TimeoutError and aborts its signal', async () => {
    t = createTestContext();
    const h = hanging();
    const handle = t.start(new Flow(h.processor, { name: 'slow', timeout: 1000 }), {});
    await t.advance(999);
    expect(h.steps[0]!.signal.aborted).toBe(false);
    await t.advance(1);
    const result = await handle.result();
    expect(result.status).toBe('failed');
    expect(result.error).toMatchObject({ name: 'TimeoutError', code: 'WEIR_TIMEOUT', retryable: true, step: 'slow' });
    expect(result.error?.message).toContain('exceeded its timeout of 1000 ms');
    expect(h.steps[0]!.signal.aborted).toBe(true);
    expect(h.steps[0]!.signal.reason).toBeInstanceOf(TimeoutError);
  });

  it('retries a timed-out attempt per the retry policy', async () => {
    t = createTestContext();
    const h = hanging();
    const handle = t.start(new Flow(h.processor, { name: 'slow', timeout: 100, retry: { maxAttempts: 2, initialInterval: 50, jitter: 0 } }), {});
    await t.advance(100);
    expect(h.steps).toHaveLength(1);
    await t.advance(50);
    expect(h.steps).toHaveLength(2);
    expect(h.steps[1]!.attempt).toBe(2);
    await t.advance(100);
    const result = await handle.result();
    expect(result.attempts.map((a) => a.error?.code)).toEqual(['WEIR_TIMEOUT', 'WEIR_TIMEOUT']);
  });

  it('ignores a late result from an attempt that already timed out', async () => {
    t = createTestContext();
    const late = deferred<string>();
    const handle = t.start(new Flow(new Fn(() => late.promise), { name: 'late', timeout: 10 }), {});
    await t.advance(10);
    late.resolve('too late');
    const result = await handle.result();
    expect(result.status).toBe('failed');
    expect(result.steps.late?.output).toBeUndefined();
  });

  it('fails the run past its run timeout and cancels what is left', async () => {
    t = createTestContext();
    const s = Flow.sequential('s');
    const h = hanging();
    new Flow(h.processor, { name: 'first' }).registerTo(s);
    const never = vi.fn();
    new Flow(new Fn(never), { name: 'second' }).registerTo(s);
    const handle = t.start(s, {}, { timeout: 5000 });
    await t.advance(5000);
    const result = await handle.result();
    expect(result.status).toBe('failed');
    expect(result.error).toMatchObject({ name: 'TimeoutError', code: 'WEIR_RUN_TIMEOUT' });
    expect(result.error?.step).toBeUndefined();
    expect(h.steps[0]!.signal.aborted).toBe(true);
    expect(result.steps.first?.status).toBe('cancelled');
    expect(result.steps.second?.status).toBe('cancelled');
    expect(never).not.toHaveBeenCalled();
  });
});

describe('run timeout after a step failed', () => {
  it('fails the run with the first failing step’s error and cancels the rest with the timeout', async () => {
    t = createTestContext();
    const root = Flow.parallel('root');
    new Flow(
      new Fn(() => {
        throw new Error('broke first');
      }),
      { name: 'broken' },
    ).registerTo(root);
    new Flow(hanging().processor, { name: 'slow' }).registerTo(root);
    const handle = t.start(root, {}, { timeout: 1000 });
    await t.advance(1000);
    const result = await handle.result();
    expect(result.status).toBe('failed');
    expect(result.error).toMatchObject({ step: 'broken', message: 'broke first' });
    expect(result.steps.slow).toMatchObject({ status: 'cancelled', error: { code: 'WEIR_RUN_TIMEOUT' } });
  });
});

describe('cancel', () => {
  it('cancels a run: running steps see the abort, pending ones never start', async () => {
    ctx = new FlowContext();
    const p = Flow.parallel('p');
    const h = hanging();
    const running = new Flow(h.processor, { name: 'running' }).registerTo(p);
    const never = vi.fn();
    new Flow(new Fn(never), { name: 'pending' }).registerTo(p, { required: [running] });
    const types: string[] = [];
    ctx.on('event', (e) => types.push(e.type));
    const handle = ctx.start(p, {});
    await h.started;
    await ctx.cancel(handle.runId, 'user asked');
    const result = await handle.result();
    expect(result.status).toBe('cancelled');
    expect(result.error).toMatchObject({ name: 'CancelledError', code: 'WEIR_CANCELLED', message: 'user asked' });
    expect(h.steps[0]!.signal.reason).toBeInstanceOf(CancelledError);
    expect(result.steps.running?.status).toBe('cancelled');
    expect(result.steps.pending?.status).toBe('cancelled');
    expect(never).not.toHaveBeenCalled();
    expect(types).toEqual(['run_start', 'step_start', 'step_cancelled', 'run_cancelled']);
  });

  it('cancels a run waiting for a retry without running it again', async () => {
    t = createTestContext();
    let calls = 0;
    const handle = t.start(
      new Flow(new Fn(() => { calls++; throw new Error('flaky'); }), { name: 'flaky', retry: { maxAttempts: 5, initialInterval: 1000 } }),
      {},
    );
    await t.advance(0);
    await t.ctx.cancel(handle.runId);
    await t.advance(60_000);
    expect(calls).toBe(1);
    expect((await handle.result()).status).toBe('cancelled');
  });

  it('cancels a run when the signal given to start aborts', async () => {
    ctx = new FlowContext();
    const h = hanging();
    const controller = new AbortController();
    const handle = ctx.start(new Flow(h.processor, { name: 'x' }), {}, { signal: controller.signal });
    await h.started;
    controller.abort(new Error('shutting down'));
    const result = await handle.result();
    expect(result.status).toBe('cancelled');
    expect(result.error?.cause?.message).toBe('shutting down');
  });

  it('refuses a run whose signal is already aborted, before any event or step', async () => {
    ctx = new FlowContext();
    const never = vi.fn();
    const events = vi.fn();
    ctx.on('event', events);
    const flow = new Flow(new Fn(never), { name: 'x' });
    const run = ctx.run(flow, {}, { signal: AbortSignal.abort(new Error('gone')) });
    await expect(run).rejects.toBeInstanceOf(CancelledError);
    await expect(run).rejects.toMatchObject({ code: 'WEIR_CANCELLED', cause: { message: 'gone' } });
    expect(() => ctx.start(flow, {}, { signal: AbortSignal.abort() })).toThrow(CancelledError);
    expect(never).not.toHaveBeenCalled();
    expect(events).not.toHaveBeenCalled();
    expect(ctx.activeRuns).toBe(0);
  });

  it('frees the concurrency slot of a cancelled step that ignores its signal', async () => {
    ctx = new FlowContext({ concurrency: 1 });
    const started = deferred();
    const stubborn = new Flow(
      new Fn(() => {
        started.resolve();
        return new Promise(() => {}); // never settles and never looks at its signal
      }),
      { name: 'stubborn' },
    );
    const first = ctx.start(stubborn, {});
    await started.promise;
    await ctx.cancel(first.runId);
    expect((await first.result()).steps.stubborn?.status).toBe('cancelled');
    const next = await ctx.run(new Flow(new Fn(() => 'ran'), { name: 'next' }), {});
    expect(next.output).toBe('ran');
  });

  it('frees the slot of a timed-out step that ignores its signal, so its retry can run', async () => {
    t = createTestContext({ concurrency: 1 });
    let calls = 0;
    const flow = new Flow(
      new Fn(() => (++calls === 1 ? new Promise(() => {}) : 'second')),
      { name: 'flaky', timeout: 100, retry: { maxAttempts: 2, initialInterval: 10, jitter: 0 } },
    );
    const handle = t.start(flow, {});
    await t.advance(110);
    const result = await handle.result();
    expect(result.status).toBe('completed');
    expect(result.output).toBe('second');
    expect(result.attempts).toHaveLength(2);
    expect(result.attempts[0]!.error?.code).toBe('WEIR_TIMEOUT');
  });

  it('does not run a step whose step_start listener cancelled the run', async () => {
    ctx = new FlowContext();
    const never = vi.fn();
    const seen: string[] = [];
    ctx.on('step_start', (event) => void ctx.cancel(event.runId));
    ctx.on('event', (event) => seen.push(`${event.seq}:${event.type}`));
    const result = await ctx.run(new Flow(new Fn(never), { name: 'x' }), {});
    expect(never).not.toHaveBeenCalled();
    expect(result.status).toBe('cancelled');
    expect(result.steps.x?.status).toBe('cancelled');
    // Listeners see each event in seq order even though the cancel was published from inside one.
    expect(seen).toEqual(['1:run_start', '2:step_start', '3:step_cancelled', '4:run_cancelled']);
  });

  it('reports a step cancelled while waiting to retry', async () => {
    t = createTestContext();
    const flow = new Flow(
      new Fn(() => {
        throw new Error('down');
      }),
      { name: 'flaky', retry: { maxAttempts: 3, initialInterval: 1000, jitter: 0 } },
    );
    const handle = t.start(flow, {});
    await t.advance(0);
    await t.ctx.cancel(handle.runId);
    const result = await handle.result();
    expect(result.steps.flaky?.status).toBe('cancelled');
    const cancelled = result.steps.flaky?.attempts;
    expect(cancelled).toHaveLength(1);
  });

  it('reports a step cancelled while its retry waits in the queue behind another step', async () => {
    t = createTestContext({ concurrency: 1 });
    const ctx = t.ctx;
    const blocker = deferred<string>();
    const blockerStarted = deferred();
    const root = Flow.parallel('root');
    new Flow(
      new Fn(() => {
        throw new Error('down');
      }),
      { name: 'flaky', retry: { maxAttempts: 3, initialInterval: 10, jitter: 0 } },
    ).registerTo(root);
    new Flow(
      new Fn(() => {
        blockerStarted.resolve();
        return blocker.promise;
      }),
      { name: 'blocker' },
    ).registerTo(root);
    const types: string[] = [];
    ctx.on('event', (event) => {
      if ('step' in event && event.step === 'flaky') types.push(event.type);
    });
    const handle = ctx.start(root, {});
    await blockerStarted.promise;
    await t.advance(10); // the retry is back in the queue, behind the blocker
    await ctx.cancel(handle.runId);
    const result = await handle.result();
    expect(result.steps.flaky?.status).toBe('cancelled');
    expect(types).toEqual(['step_start', 'step_retry', 'step_cancelled']);
  });

  it('removes its listener from the signal given to start once the run ends', async () => {
    ctx = new FlowContext();
    const controller = new AbortController();
    await ctx.run(new Flow(new Fn(() => 1), { name: 'x' }), {}, { signal: controller.signal });
    expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
  });

  it('refuses to cancel a run it does not know', async () => {
    ctx = new FlowContext();
    await expect(ctx.cancel('nope')).rejects.toMatchObject({ code: 'WEIR_RUN_NOT_FOUND' });
  });
});
