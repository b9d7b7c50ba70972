/** weir/testing's faults: a crash after or before a step, a restart that recovers, a store that refuses writes. */
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { FatalError, Flow, FlowError, type Step } from '../../src/index.js';
import { createTestContext, type TestContext } from '../../src/testing/index.js';
import { Fn } from '../fixtures/processors.js';

let t: TestContext;
afterEach(async () => {
  await t?.close();
});

/** A sequential chain a > b > c whose steps count their runs and append their name to the input. */
function chain(retry?: object) {
  const counts: Record<string, number> = { a: 0, b: 0, c: 0 };
  const flow = Flow.sequential<string, Record<string, string>>('chain');
  for (const name of ['a', 'b', 'c']) {
    new Flow(
      new Fn((x) => {
        counts[name]!++;
        return `${String(x)}>${name}`;
      }),
      { name, ...(retry === undefined ? {} : { retry }) },
    ).registerTo(flow);
  }
  return { flow, counts };
}

describe.each(['memory', 'sqlite'] as const)('crashes and restarts on the %s store', (store) => {
  it('crashAfter: nothing after the step is committed, and the restarted context goes on from there without running it again', async () => {
    t = createTestContext({ store });
    const { flow, counts } = chain();
    t.crashAfter('b');
    const first = await t.run(flow, 'in');
    expect(first.status).toBe('running');
    expect(first.error).toMatchObject({ code: 'WEIR_CONTEXT_CLOSED', message: expect.stringContaining('after step "b" ended') });
    expect(counts).toEqual({ a: 1, b: 1, c: 0 });
    expect(await t.eventLog(first.runId)).toEqual(['run_start', 'step_start a#1', 'step_complete a#1', 'step_start b#1', 'step_complete b#1']);

    const handles = await t.restart();
    expect(handles.map((h) => h.runId)).toEqual([first.runId]);
    const result = await t.result(handles[0]!);
    expect(result).toMatchObject({ status: 'completed', output: { a: 'in>a', b: 'in>a>b', c: 'in>a>b>c' } });
    expect(counts).toEqual({ a: 1, b: 1, c: 1 });
    expect((await t.eventLog(first.runId)).slice(5)).toEqual(['run_resumed recovered', 'step_start c#1', 'step_complete c#1', 'run_complete']);
  });

  it('crashBefore: the step never ran, and runs once after the restart', async () => {
    t = createTestContext({ store });
    const { flow, counts } = chain();
    t.crashBefore(flow.children[1]!);
    const first = await t.run(flow, 'in');
    expect(first.status).toBe('running');
    expect(first.error?.message).toContain('before step "b" ran');
    expect(counts).toEqual({ a: 1, b: 0, c: 0 });
    // The step's start was never committed.
    expect(await t.eventLog(first.runId)).toEqual(['run_start', 'step_start a#1', 'step_complete a#1']);
    const [handle] = await t.restart();
    const result = await t.result(handle!);
    expect(result.status).toBe('completed');
    expect(counts).toEqual({ a: 1, b: 1, c: 1 });
    t.expectSteps(result).toHaveAttempts({ a: 1, b: 1, c: 1 });
  });
});

describe('restart', () => {
  it('keeps a run that waits for input: the new context takes the answer and finishes it', async () => {
    t = createTestContext({ store: 'sqlite' });
    const Approval = z.object({ ok: z.boolean() });
    const flow = new Flow(new Fn(async (_input, step: Step) => ((await step.waitForInput('approval', Approval)).ok ? 'shipped' : 'held')), { name: 'ship' });
    const handle = t.start(flow, {}, { mode: 'interactive' });
    await t.expectWaiting(handle.runId, 'approval');
    await t.restart();
    await t.expectWaiting(handle.runId, 'approval');
    const result = await t.answer(handle.runId, 'approval', { ok: true });
    expect(result).toMatchObject({ status: 'completed', output: 'shipped' });
  });

  it('stops a context that did not crash as a kill -9 would, and moves the clock past its leases', async () => {
    t = createTestContext({ leaseTimeout: 60_000 });
    let calls = 0;
    const flow = new Flow(new Fn((_input, step: Step) => (++calls === 1 ? new Promise((_r, reject) => step.signal.addEventListener('abort', () => reject(step.signal.reason as Error))) : 'done')), {
      name: 'slow',
    });
    const handle = t.start(flow, {});
    await t.advance(0);
    const before = t.now();
    const recovered = await t.restart();
    expect(t.now() - before).toBe(60_001);
    expect(recovered.map((h) => h.runId)).toEqual([handle.runId]);
    expect(await handle.result()).toMatchObject({ status: 'running', error: { code: 'WEIR_CONTEXT_CLOSED' } });
    expect(await t.result(handle.runId)).toMatchObject({ status: 'completed', output: 'done' });
    expect(calls).toBe(2);
  });

  it('takes a downtime shorter than the lease: the run is not taken over until its lease runs out', async () => {
    t = createTestContext();
    const { flow } = chain();
    t.crashAfter('a');
    const first = await t.run(flow, 'in');
    expect(await t.restart({ downtime: '10s' })).toEqual([]);
    expect((await t.ctx.getRun(first.runId)).stale).toBe(false);
    await t.advance('21s');
    const [handle] = await t.ctx.recover();
    expect((await t.result(handle!)).status).toBe('completed');
  });

  it('keeps doubles not used yet, and the events listeners saw', async () => {
    t = createTestContext();
    const { flow, counts } = chain();
    t.crashAfter('a').mock('c', 'mocked');
    const first = await t.run(flow, 'in');
    await t.restart();
    expect((await t.result(first.runId)).output).toEqual({ a: 'in>a', b: 'in>a>b', c: 'mocked' });
    expect(counts).toEqual({ a: 1, b: 1, c: 0 });
    expect(t.events(first.runId).map((e) => e.type)).toContain('run_resumed');
  });
});

describe('restart with what a test did before it', () => {
  it('registers one flow of each name (the last run), and follows a handle from before the restart', async () => {
    t = createTestContext();
    const first = chain();
    await t.run(first.flow, 'x');
    const second = chain();
    t.crashAfter('a');
    const crashed = t.start(second.flow, 'y');
    await t.runUntilIdle();
    await t.restart();
    // The handle from the stopped context follows the run in the new one.
    expect(await t.result(crashed)).toMatchObject({ status: 'completed', output: { c: 'y>a>b>c' } });
    expect(second.counts).toEqual({ a: 1, b: 1, c: 1 });
  });
});

describe('failStore', () => {
  it('refuses the commit of a step: the attempt fails with WEIR_STORE, and a retry policy tries it again', async () => {
    t = createTestContext();
    const plain = chain();
    t.failStore({ on: 'commit', step: 'b' });
    let thrown: unknown;
    t.ctx.on('step_failed', (event) => (thrown = event.error));
    const failed = await t.run(plain.flow, 'in');
    // As a failing backend gives: retryable, so a retry policy applies.
    expect(thrown).toMatchObject({ name: 'RetryableError', code: 'WEIR_STORE', retryable: true });
    expect(failed.status).toBe('failed');
    expect(failed.error).toMatchObject({ code: 'WEIR_STORE', step: 'b' });
    t.expectSteps(failed).toHaveCompleted(['a']).toHaveFailed(['b']).toHaveSkipped(['c']);

    const retried = chain({ maxAttempts: 3, initialInterval: 60_000 });
    t.failStore({ on: 'commit', step: 'b', times: 2 });
    const result = await t.run(retried.flow, 'in');
    expect(result.status).toBe('completed');
    t.expectSteps(result).toHaveAttempts({ a: 1, b: 3, c: 1 });
    expect(retried.counts.b).toBe(3);
  });

  it('refuses a new run: the run fails with the store error, nothing ran', async () => {
    t = createTestContext();
    const { flow, counts } = chain();
    t.failStore({ on: 'create' });
    const result = await t.run(flow, 'in');
    expect(result).toMatchObject({ status: 'failed', error: { code: 'WEIR_STORE' } });
    expect(counts).toEqual({ a: 0, b: 0, c: 0 });
    // Only once: the next run is stored.
    expect((await t.run(flow, 'in')).status).toBe('completed');
  });

  it('throws the error it is given, and refuses answers and leases too', async () => {
    t = createTestContext({ leaseTimeout: 1000 });
    const { flow } = chain();
    t.failStore({ on: 'write', error: new FatalError('disk full') });
    expect((await t.run(flow, 'in')).error).toMatchObject({ code: 'WEIR_FATAL', message: 'disk full' });

    const ask = new Flow(new Fn(async (_input, step: Step) => step.waitForInput('go', z.boolean())), { name: 'ask' });
    const handle = t.start(ask, {}, { mode: 'interactive' });
    await t.expectWaiting(handle.runId);
    t.failStore({ on: 'input' });
    await expect(t.answer(handle.runId, 'go', true)).rejects.toMatchObject({ code: 'WEIR_STORE' });
    expect(await t.answer(handle.runId, 'go', true)).toMatchObject({ status: 'completed', output: true });

    // A lease that cannot be renewed: the run goes on, warned, and renews at the next turn.
    const slow = new Flow(new Fn(async (_input, step: Step) => new Promise((resolve) => setTimeout(() => resolve(step.attempt), 30))), { name: 'slow' });
    t.failStore({ on: 'lease' });
    const warnings: string[] = [];
    const onWarning = (warning: Error): number => warnings.push(warning.message);
    process.on('warning', onWarning);
    try {
      const started = t.start(slow, {});
      await t.advance('1s');
      expect((await t.result(started)).status).toBe('completed');
      expect(warnings).toEqual([expect.stringContaining('refused by t.failStore()')]);
    } finally {
      process.off('warning', onWarning);
    }
  });

  it('refuses bad options with a clear error', async () => {
    t = createTestContext();
    const bad = (options: unknown): unknown => t.failStore(options as never);
    expect(() => bad({ on: 'disk' })).toThrow('t.failStore(): on: expected "create", "commit", "input", "lease" or "write", got "disk"');
    expect(() => bad(undefined)).toThrow(FlowError);
    expect(() => bad({ on: 'create', step: 'a' })).toThrow("t.failStore(): step: only with on: 'commit' (got on: 'create')");
    expect(() => bad({ on: 'commit', times: 0 })).toThrow('t.failStore(): times: expected a positive whole number, got 0');
    // A typo is an error, not a fault armed once.
    expect(() => bad({ on: 'commit', tims: 3 })).toThrow('t.failStore(): tims: expected one of the options');
    expect(() => t.fail('a', new Error('x'), { time: 3 } as never)).toThrow('t.fail() options: time: expected one of the options times, got an unknown option');
    expect(() => t.crashAfter('')).toThrow(/t.crashAfter: expected a Flow or a step name/);
    expect(() => t.crashBefore(3 as never)).toThrow(/t.crashBefore: expected a Flow or a step name, got 3/);
    await expect(t.restart({ downtime: '-1s' as never })).rejects.toThrow("t.restart(): downtime: expected a duration (milliseconds >= 0, or a number with ms, s, m, h or d, such as '30s'), got \"-1s\"");
    // Nothing was stopped by the refused restart.
    expect(t.ctx.state).toBe('open');
  });
});
