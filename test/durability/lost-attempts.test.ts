import { afterEach, describe, expect, it } from 'vitest';
import { Flow, RetryableError, type FlowContext } from '../../src/index.js';
import { createTestContext, type TestContext } from '../../src/testing/index.js';
import { Fn } from '../fixtures/processors.js';

// Found by the crash-point property test (test/property/crash-points.test.ts): a step whose
// attempts were lost to two crashes in a row lost a retry to them.

const FLUSH: unique symbol = Symbol.for('weir.flush.v1') as never;

let t: TestContext;
afterEach(async () => {
  await t?.close();
});

/** Resolves once `ctx` started attempt `attempt` of `step`, and committed its start. */
function started(ctx: FlowContext, step: string, attempt: number): Promise<void> {
  return new Promise((resolve) => {
    const on = (e: { step: string; attempt: number }): void => {
      if (e.step !== step || e.attempt !== attempt) return;
      ctx.off('step_start', on);
      void flush(ctx).then(resolve);
    };
    ctx.on('step_start', on);
  });
}

/** Commits what the context's runs recorded, now. */
function flush(ctx: FlowContext): Promise<void> {
  return (ctx as unknown as Record<typeof FLUSH, () => Promise<void>>)[FLUSH]();
}

describe('attempts lost with their process', () => {
  it('are never counted by the retry policy, however many crashes in a row lose one', async () => {
    t = createTestContext({ store: 'sqlite' });
    // Attempts 2 and 3 hang until their process dies; the others fail, as retryable.
    const job = Flow.sequential('job');
    new Flow(
      new Fn(async (_input, step) => {
        if (step.attempt === 2 || step.attempt === 3) await new Promise<never>(() => undefined);
        throw new RetryableError(`attempt ${step.attempt} failed`);
      }),
      { name: 'flaky', retry: { maxAttempts: 3, initialInterval: 1000, jitter: 0 } },
    ).registerTo(job);
    t.ctx.register(job);

    const second = started(t.ctx, 'flaky', 2);
    const handle = t.ctx.start(job, {});
    await t.advance(1000);
    await second;
    const [recovered] = await t.restart();
    expect(recovered?.runId).toBe(handle.runId);
    // The recovered run started attempt 3 before restart() resolved: commit its start, and crash again.
    expect((await t.ctx.getRun(handle.runId)).steps.flaky).toMatchObject({ status: 'running' });
    await flush(t.ctx);
    const [again] = await t.restart();
    await t.runUntilIdle();
    const result = await again!.result();

    // Three counted attempts (1, 4 and 5), as the policy says, and the two lost ones recorded.
    expect(result.status).toBe('failed');
    expect(result.steps.flaky?.attempts.map((a) => a.error?.code)).toEqual(['WEIR_RETRYABLE', 'WEIR_OWNER_LOST', 'WEIR_OWNER_LOST', 'WEIR_RETRYABLE', 'WEIR_RETRYABLE']);
  });
});
