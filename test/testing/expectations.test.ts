/** weir/testing's expectations: steps by status and attempts, a compact event log, a summary stable enough to snapshot. */
import { AssertionError } from 'node:assert';
import { afterEach, describe, expect, it } from 'vitest';
import { FatalError, Flow, RetryableError } from '../../src/index.js';
import { createTestContext, type TestContext } from '../../src/testing/index.js';
import { Fn } from '../fixtures/processors.js';

let t: TestContext;
afterEach(async () => {
  await t?.close();
});

/** checkout: reserve, then charge (retried), then ship; notify may fail without failing the run. */
function checkout() {
  const flow = Flow.parallel('checkout');
  const reserve = new Flow(new Fn(() => 'reserved'), { name: 'reserve' }).registerTo(flow);
  const charge = new Flow(new Fn(() => 'charged'), { name: 'charge', retry: { maxAttempts: 3, initialInterval: 60_000, jitter: 0 } }).registerTo(flow, { required: [reserve] });
  new Flow(new Fn(() => 'shipped'), { name: 'ship' }).registerTo(flow, { required: [charge] });
  new Flow(new Fn(() => 'sent'), { name: 'notify', allowFailure: true }).registerTo(flow, { required: [reserve] });
  return flow;
}

describe('expectSteps', () => {
  it('reads which steps ran, completed, failed and were skipped, and their attempts', async () => {
    t = createTestContext();
    t.fail('charge', new RetryableError('gateway down'), { times: 2 });
    t.fail('notify', new FatalError('no address'));
    const result = await t.run(checkout(), {});
    expect(result.status).toBe('completed');
    t.expectSteps(result)
      .toHaveRun(['reserve', 'charge', 'ship', 'notify'])
      .toHaveCompleted(['reserve', 'charge', 'ship'])
      .toHaveFailed(['notify'])
      .toHaveSkipped([])
      .toHaveAttempts({ charge: 3, ship: 1 });
    expect(t.expectSteps(result).attempts('charge')).toBe(3);
  });

  it('fails with an AssertionError that shows expected and actual', async () => {
    t = createTestContext();
    t.fail('reserve', new FatalError('out of stock'));
    const result = await t.run(checkout(), {});
    const expectations = t.expectSteps(result);
    expectations.toHaveSkipped(['charge', 'ship', 'notify']).toHaveFailed(['reserve']).toHaveRun(['reserve']);
    let thrown: unknown;
    try {
      expectations.toHaveRun(['reserve', 'charge']);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(AssertionError);
    expect(thrown).toMatchObject({ actual: ['reserve'], expected: ['charge', 'reserve'], message: expect.stringContaining('expected exactly these steps of run "run-1" to have run') });
    expect(() => expectations.toHaveAttempts({ reserve: 2 })).toThrow(AssertionError);
    expect(() => expectations.attempts('refund')).toThrow('run "run-1" has no step "refund" (it has "reserve", "charge", "ship", "notify")');
  });
});

describe('eventLog and summary', () => {
  it('give a run as short lines and plain data, the same on every test run', async () => {
    const runOnce = async () => {
      const kit = createTestContext();
      try {
        kit.fail('charge', new RetryableError('gateway down'));
        const result = await kit.run(checkout(), {});
        return { log: await kit.eventLog(result.runId), summary: kit.summary(result), result };
      } finally {
        await kit.close();
      }
    };
    const first = await runOnce();
    const second = await runOnce();
    expect(second.log).toEqual(first.log);
    expect(second.summary).toEqual(first.summary);
    // Ids and times are stable too (errors carry their stacks, and the process differs from one machine to the next).
    const times = (result: typeof first.result) => [result.runId, result.startTime, result.endTime, ...Object.values(result.steps).flatMap((s) => s.attempts.map((a) => [a.startTime, a.endTime]))];
    expect(times(second.result)).toEqual(times(first.result));
    expect(first.result.endTime - first.result.startTime).toBe(60_000);
    expect(first.log).toMatchInlineSnapshot(`
      [
        "run_start",
        "step_start reserve#1",
        "step_complete reserve#1",
        "step_start charge#1",
        "step_start notify#1",
        "step_retry charge#1 in 60000 ms WEIR_RETRYABLE",
        "step_complete notify#1",
        "step_start charge#2",
        "step_complete charge#2",
        "step_start ship#1",
        "step_complete ship#1",
        "run_complete",
      ]
    `);
    expect(first.summary).toMatchInlineSnapshot(`
      {
        "output": {
          "charge": "charged",
          "notify": "sent",
          "reserve": "reserved",
          "ship": "shipped",
        },
        "status": "completed",
        "steps": {
          "charge": {
            "attempts": 2,
            "status": "completed",
          },
          "notify": {
            "attempts": 1,
            "status": "completed",
          },
          "reserve": {
            "attempts": 1,
            "status": "completed",
          },
          "ship": {
            "attempts": 1,
            "status": "completed",
          },
        },
      }
    `);
  });
});
