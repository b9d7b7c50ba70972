// The checkout flow's tests, with weir/testing on node's own test runner (vitest and jest work the same):
//   node --import tsx --test examples/checkout/checkout.test.ts
// Each test is a worked example of docs/testing.md.
import assert from 'node:assert/strict';
import { afterEach, beforeEach, test } from 'node:test';
import { FatalError, RetryableError } from 'weir';
import { createTestContext, type TestContext } from 'weir/testing';
import { Approve, checkoutFlow, type Gateway, type Order } from './checkout.js';

/** A gateway that charges each key once, fails as told first, and counts its calls. */
class FakeGateway implements Gateway {
  calls = 0;
  readonly charged = new Map<string, string>();
  failures: Error[] = [];
  hangs = 0;
  async charge(key: string, total: number, signal: AbortSignal): Promise<string> {
    this.calls++;
    if (this.hangs > 0) {
      this.hangs--;
      return new Promise((_resolve, reject) => signal.addEventListener('abort', () => reject(signal.reason as Error)));
    }
    const failure = this.failures.shift();
    if (failure !== undefined) throw failure;
    if (!this.charged.has(key)) this.charged.set(key, `rcpt-${this.charged.size + 1}-${total}`);
    return this.charged.get(key)!;
  }
}

const small: Order = { id: 'o-1', total: 40 };
const large: Order = { id: 'o-2', total: 5000 };

let t: TestContext;
let gateway: FakeGateway;
beforeEach(() => {
  t = createTestContext();
  gateway = new FakeGateway();
});
afterEach(() => t.close());

test('retries: five failures a minute apart take five virtual minutes, and milliseconds of real time', async () => {
  gateway.failures = Array.from({ length: 5 }, () => new RetryableError('gateway busy'));
  const result = await t.run(checkoutFlow(gateway), small);
  assert.equal(result.status, 'completed');
  t.expectSteps(result).toHaveAttempts({ charge: 6 });
  assert.equal(t.now() - Date.parse('2030-01-01T00:00:00Z'), 5 * 60_000);
});

test('timeouts: an attempt that hangs fails when the clock passes its 30 s, and the next one runs a minute later', async () => {
  gateway.hangs = 1;
  const handle = t.start(checkoutFlow(gateway), small);
  await t.advance('30s');
  assert.deepEqual((await t.eventLog(handle.runId)).filter((line) => line.startsWith('step_retry')), ['step_retry charge#1 in 60000 ms WEIR_TIMEOUT']);
  const result = await t.result(handle);
  assert.equal(result.output?.ship.tracking, 'o-1/rcpt-1-40/auto');
});

test('mocks: a step replaced for this test only, its output still checked by the schema', async () => {
  const checkout = checkoutFlow(gateway);
  t.mock('reserve', { reservation: 'res-test' });
  t.mock('charge', (order: Order) => ({ receipt: `free-${order.id}` }));
  const result = await t.run(checkout, small);
  assert.equal(result.output?.ship.tracking, 'o-1/free-o-1/auto');
  assert.equal(gateway.calls, 0);

  t.mock('reserve', { reservation: 42 } as never);
  const wrong = await t.run(checkout, small);
  assert.equal(wrong.error?.code, 'WEIR_VALIDATION');
});

test('failures: a declined card fails the run, and the steps after it are skipped', async () => {
  t.fail('charge', new FatalError('card declined'));
  const result = await t.run(checkoutFlow(gateway), small);
  assert.equal(result.status, 'failed');
  assert.equal(result.error?.step, 'charge');
  t.expectSteps(result).toHaveRun(['reserve', 'charge', 'approve']).toHaveFailed(['charge']).toHaveSkipped(['ship']);
});

test('waits: a large order waits for approval, and goes on once it is given', async () => {
  const handle = t.start(checkoutFlow(gateway), large, { mode: 'interactive' });
  await t.expectWaiting(handle.runId, 'approval');
  const result = await t.answer(handle, 'approval', { by: 'ana' });
  assert.equal(result?.output?.ship.tracking, 'o-2/rcpt-1-5000/ana');
});

test('deadlines: an approval not given within a day fails the run', async () => {
  const handle = t.start(checkoutFlow(gateway), large, { mode: 'interactive' });
  await t.expectWaiting(handle.runId, 'approval');
  await t.advance('1d');
  const result = await t.result(handle);
  assert.equal(result.error?.code, 'WEIR_INPUT_TIMEOUT');
});

test('crashes: after a crash right after the charge, the restarted process ships without charging again', async () => {
  t.crashAfter('charge');
  const first = await t.run(checkoutFlow(gateway), small);
  assert.equal(first.status, 'running');
  const [recovered] = await t.restart();
  const result = await t.result(recovered!);
  assert.equal(result.status, 'completed');
  assert.equal(gateway.calls, 1);
});

test('store faults: the charge\'s output not committed is charged again, under the same idempotency key', async () => {
  t.failStore({ on: 'commit', step: 'charge' });
  const result = await t.run(checkoutFlow(gateway), small);
  assert.equal(result.status, 'completed');
  assert.equal(gateway.calls, 2);
  assert.equal(gateway.charged.size, 1);
});

test('one step alone: ship, with the outputs of its dependencies given', async () => {
  const checkout = checkoutFlow(gateway);
  const ship = checkout.children.find((flow) => flow.name === 'ship')!;
  const result = await t.runStep(ship, small, { deps: { charge: { receipt: 'r-9' }, approve: { by: 'bo' } } });
  assert.deepEqual(result.output, { tracking: 'o-1/r-9/bo' });
});

test('process() directly: a Step with the answers given', async () => {
  const step = t.step({ name: 'approve', answers: { approval: { by: 'cy' } } });
  assert.deepEqual(await new Approve().process(large, step), { by: 'cy' });
  assert.deepEqual(step.asks, [{ key: 'approval', answered: true }]);
});

test('events: the run as short lines, the same on every run', async () => {
  const result = await t.run(checkoutFlow(gateway), small);
  assert.deepEqual(t.summary(result).steps, {
    reserve: { status: 'completed', attempts: 1 },
    charge: { status: 'completed', attempts: 1 },
    approve: { status: 'completed', attempts: 1 },
    ship: { status: 'completed', attempts: 1 },
  });
  assert.deepEqual(await t.eventLog(result.runId), [
    'run_start',
    'step_start reserve#1',
    'step_complete reserve#1',
    'step_start charge#1',
    'step_start approve#1',
    'step_complete approve#1',
    'step_complete charge#1',
    'step_start ship#1',
    'step_complete ship#1',
    'run_complete',
  ]);
});
