import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Flow, FlowContext, ResultsManager } from '../../src/index.js';
import { deferred, Fn } from '../fixtures/processors.js';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'weir-shutdown-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('closing a context over a durable store', () => {
  it('leaves unfinished runs running in the store, leases released, and recover() goes on with them at once', async () => {
    const calls: Record<string, number> = {};
    const make = (hang: boolean) => {
      const s = Flow.sequential('job');
      const step = (name: string, fn: () => unknown) =>
        new Flow(new Fn(() => {
          calls[name] = (calls[name] ?? 0) + 1;
          return fn();
        }), { name }).registerTo(s);
      step('first', () => 'one');
      step('second', () => (hang ? new Promise(() => {}) : 'two'));
      return s;
    };
    const file = join(dir, 'runs.db');
    const first = new FlowContext({ results: ResultsManager.sqlite(file), closeTimeout: 0 });
    first.register(make(true));
    const handle = first.start(first.getFlow('job')!, {});
    const started = deferred();
    first.on('step_start', (e) => e.step === 'second' && started.resolve());
    await started.promise;
    await first.close();
    expect(await handle.result()).toMatchObject({ status: 'running', error: { code: 'WEIR_CONTEXT_CLOSED' }, steps: { first: { status: 'completed' } } });

    const next = new FlowContext({ results: ResultsManager.sqlite(file) });
    next.register(make(false));
    expect(await next.getRun(handle.runId)).toMatchObject({ status: 'running', stale: true, leaseExpiresAt: 0 });
    const [taken] = await next.recover();
    expect(await taken!.result()).toMatchObject({ status: 'completed', output: { first: 'one', second: 'two' } });
    expect(calls).toEqual({ first: 1, second: 2 });
    await next.close();
  });

  it('still cancels the unfinished runs of a memory store, which cannot outlive the process', async () => {
    const ctx = new FlowContext({ closeTimeout: 0 });
    const handle = ctx.start(new Flow(new Fn(() => new Promise(() => {})), { name: 'hang' }), {});
    await ctx.close();
    expect(await handle.result()).toMatchObject({ status: 'cancelled' });
  });
});
