/** How weir/testing drives its clock: slots held by steps that wait on time, long jumps, steps at real work. */
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { Flow, RetryableError, type Step } from '../../src/index.js';
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

describe('slots held by a step that waits on time', () => {
  it('moves the clock while a run waits for a context slot that a hanging step holds', async () => {
    t = createTestContext({ concurrency: 1 });
    const hang = t.start(new Flow(new Fn((_i, step: Step) => untilAborted(step)), { name: 'hang', timeout: 30_000 }), {});
    const quick = t.start(new Flow(new Fn(() => 'quick'), { name: 'quick' }), {});
    await t.advance('31s');
    expect(await hang.result()).toMatchObject({ status: 'failed', error: { code: 'WEIR_TIMEOUT' } });
    expect(await quick.result()).toMatchObject({ status: 'completed', output: 'quick' });
  });

  it('runs to the end a run whose own concurrency of 1 is held by a step that times out', async () => {
    t = createTestContext({ stepWait: 50 });
    const both = Flow.parallel('both');
    new Flow(new Fn((_i, step: Step) => untilAborted(step)), { name: 'hang', timeout: 30_000 }).registerTo(both);
    new Flow(new Fn(() => 'quick'), { name: 'quick' }).registerTo(both);
    const result = await t.run(both, {}, { concurrency: 1 });
    expect(result.status).toBe('failed');
    t.expectSteps(result).toHaveFailed(['hang']).toHaveCompleted(['quick']);
  });
});

describe('long jumps', () => {
  it('jumps two days of backoff at once: housekeeping fires once per jump, not every few seconds', async () => {
    t = createTestContext({ store: 'sqlite' });
    let calls = 0;
    const flow = new Flow(
      new Fn(() => {
        if (++calls === 1) throw new RetryableError('come back the day after tomorrow');
        return calls;
      }),
      { name: 'patient', retry: { maxAttempts: 2, initialInterval: 2 * 86_400_000, maxInterval: 2 * 86_400_000, jitter: 0 } },
    );
    const result = await t.run(flow, {});
    expect(result).toMatchObject({ status: 'completed', output: 2 });
    expect(result.endTime - result.startTime).toBe(2 * 86_400_000);
    // The run kept its lease all along: a second context would not have taken it.
    expect((await t.ctx.getRun(result.runId)).recoveries).toBe(0);
  });
});

describe('steps at real work', () => {
  it('waits for a step that works longer than stepWait when nothing on the clock could end it', async () => {
    t = createTestContext({ stepWait: 50 });
    const slow = new Flow(
      new Fn(async () => {
        await sleep(300);
        return 'done';
      }),
      { name: 'slow' },
    );
    expect(await t.run(slow, {})).toMatchObject({ status: 'completed', output: 'done' });
  });

  it('takes a step with no news for stepWait as waiting on its timeout, and moves the clock to it', async () => {
    t = createTestContext({ stepWait: 50 });
    const hang = new Flow(new Fn((_i, step: Step) => untilAborted(step)), { name: 'hang', timeout: 3_600_000 });
    const result = await t.run(hang, {});
    expect(result).toMatchObject({ status: 'failed', error: { code: 'WEIR_TIMEOUT' } });
    expect(result.endTime - result.startTime).toBe(3_600_000);
  });
});
