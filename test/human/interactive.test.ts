import { z } from 'zod';
import { describe, expect, it, vi } from 'vitest';
import { Flow, FlowContext, ResultsManager, type FlowContextOptions, type WeirEvent } from '../../src/index.js';
import { deferred, Fn } from '../fixtures/processors.js';
import { sqliteContexts } from '../fixtures/sqlite-contexts.js';
import { nextWaiting } from '../fixtures/waiting.js';

const temp = sqliteContexts('interactive');

const Approval = z.object({ approved: z.boolean(), by: z.string().min(1) });

const stores: { name: string; context: (options?: FlowContextOptions) => FlowContext }[] = [
  { name: 'memory', context: (options = {}) => temp.track(new FlowContext({ results: ResultsManager.memory(), ...options })) },
  { name: 'sqlite', context: (options = {}) => temp.context(options) },
];

/** prepare -> approve (asks "approval") -> ship, counting calls. */
function approvalFlow(calls: Record<string, number>) {
  const s = Flow.sequential('order');
  const step = (name: string, fn: (input: unknown, step: import('../../src/index.js').Step) => unknown) =>
    new Flow(
      new Fn(async (input, st) => {
        calls[name] = (calls[name] ?? 0) + 1;
        return fn(input, st);
      }),
      { name },
    ).registerTo(s);
  step('prepare', (input) => ({ order: (input as { order: string }).order }));
  step('approve', async (input, st) => {
    const answer = await st.waitForInput('approval', Approval);
    return { ...(input as object), ...answer };
  });
  step('ship', (input) => ({ shipped: (input as { approved: boolean }).approved }));
  return s;
}


describe.each(stores)('interactive runs ($name store)', ({ context }) => {
  it('waits with status waiting and input_required, then goes on with the submitted value; earlier steps do not run again', async () => {
    const calls: Record<string, number> = {};
    const ctx = context().register(approvalFlow(calls));
    const events: WeirEvent[] = [];
    ctx.on('event', (e) => events.push(e));
    const waiting = nextWaiting(ctx);
    const handle = ctx.start(ctx.getFlow('order')!, { order: 'A-1' }, { mode: 'interactive' });
    const parked = await waiting;
    expect(parked.waitingFor).toEqual([{ step: 'approve', key: 'approval' }]);
    const asked = events.find((e) => e.type === 'input_required');
    expect(asked).toMatchObject({ type: 'input_required', step: 'approve', key: 'approval', attempt: 1, hasDefault: false });
    expect((asked as { schema: unknown }).schema).toMatchObject({ type: 'object', properties: { approved: { type: 'boolean' }, by: { type: 'string' } } });

    const { runs } = await ctx.listRuns({ status: 'waiting' });
    expect(runs).toHaveLength(1);
    expect(runs[0]).toMatchObject({ runId: handle.runId, status: 'waiting', mode: 'interactive', humanInLoop: true, stale: false });
    expect(runs[0]!.waitingFor).toEqual([expect.objectContaining({ step: 'approve', key: 'approval', hasDefault: false })]);
    expect(ctx.activeRuns).toBe(0);

    await ctx.submitInput(handle.runId, 'approval', { approved: true, by: 'ana' });
    const result = await handle.result();
    expect(result.status).toBe('completed');
    expect(result.output).toMatchObject({ approve: { order: 'A-1', approved: true, by: 'ana' }, ship: { shipped: true } });
    expect(calls).toEqual({ prepare: 1, approve: 2, ship: 1 });
    // The waiting attempt is recorded, and not counted as a failure.
    expect(result.steps.approve?.attempts.map((a) => [a.attempt, a.waitedFor, a.error])).toEqual([
      [1, ['approval'], undefined],
      [2, undefined, undefined],
    ]);
    const types = events.filter((e) => e.runId === handle.runId).map((e) => e.type);
    expect(types).toEqual([
      'run_start',
      'step_start',
      'step_complete', // prepare
      'step_start',
      'input_required',
      'run_waiting',
      'run_resumed',
      'input_received',
      'step_start',
      'step_complete', // approve
      'step_start',
      'step_complete', // ship
      'run_complete',
    ]);
    // The stored log is dense and is exactly what listeners saw.
    const stored: WeirEvent[] = [];
    for await (const e of ctx.events(handle.runId)) stored.push(e);
    expect(stored.map((e) => e.seq)).toEqual(stored.map((_e, i) => i + 1));
    expect(stored.map((e) => e.type)).toEqual(types);
    expect(stored.find((e) => e.type === 'run_resumed')).toMatchObject({ reason: 'input' });
    expect(stored.find((e) => e.type === 'input_received')).toMatchObject({ step: 'approve', key: 'approval', outcome: 'answered' });
  });

  it('refuses a value that fails the schema with a ValidationError and keeps waiting; refuses a second answer and an unknown key', async () => {
    const calls: Record<string, number> = {};
    const ctx = context().register(approvalFlow(calls));
    const waiting = nextWaiting(ctx);
    const handle = ctx.start(ctx.getFlow('order')!, { order: 'A-2' }, { mode: 'interactive' });
    await waiting;
    await expect(ctx.submitInput(handle.runId, 'approval', { approved: 'yes' })).rejects.toMatchObject({ name: 'ValidationError', code: 'WEIR_VALIDATION' });
    await expect(ctx.submitInput(handle.runId, 'approval', { approved: true, by: '' })).rejects.toMatchObject({ code: 'WEIR_VALIDATION' });
    expect((await ctx.getRun(handle.runId)).status).toBe('waiting');
    await expect(ctx.submitInput(handle.runId, 'nope', 1)).rejects.toMatchObject({ code: 'WEIR_INPUT_NOT_AWAITED', message: expect.stringContaining('"approval"') });
    await expect(ctx.submitInput('no-such-run', 'approval', 1)).rejects.toMatchObject({ code: 'WEIR_RUN_NOT_FOUND' });

    await ctx.submitInput(handle.runId, 'approval', { approved: false, by: 'bo' });
    await expect(ctx.submitInput(handle.runId, 'approval', { approved: true, by: 'cy' })).rejects.toMatchObject({ code: 'WEIR_INPUT_ANSWERED' });
    const result = await handle.result();
    expect(result.output).toMatchObject({ approve: { approved: false, by: 'bo' }, ship: { shipped: false } });
    await expect(ctx.submitInput(handle.runId, 'approval', { approved: true, by: 'cy' })).rejects.toMatchObject({ code: 'WEIR_RUN_STATE' });
  });

  it('lets several steps wait at once, each on its own key, and goes on once each is answered', async () => {
    const p = Flow.parallel('reviews');
    const reviewed: string[] = [];
    for (const who of ['legal', 'finance']) {
      new Flow(
        new Fn(async (_input, st) => {
          const verdict = await st.waitForInput(`${who}-ok`, z.boolean());
          reviewed.push(who);
          return { who, verdict };
        }),
        { name: who },
      ).registerTo(p);
    }
    const gate = deferred();
    new Flow(new Fn(async () => gate.promise.then(() => 'done')), { name: 'compute' }).registerTo(p);
    const ctx = context().register(p);
    const asked: string[] = [];
    ctx.on('input_required', (e) => asked.push(e.key));
    const waiting = nextWaiting(ctx);
    const handle = ctx.start(p, {}, { mode: 'interactive' });
    // Both asks are out while compute still runs: the run is running, its two steps wait.
    await vi.waitFor(async () => {
      const info = await ctx.getRun(handle.runId);
      expect(Object.fromEntries(Object.entries(info.steps).map(([k, v]) => [k, v.status]))).toMatchObject({ legal: 'waiting', finance: 'waiting', compute: 'running' });
    });
    expect(asked.sort()).toEqual(['finance-ok', 'legal-ok']);
    expect((await ctx.getRun(handle.runId)).status).toBe('running');
    // Answered while the run still runs here: the step goes on at once.
    await ctx.submitInput(handle.runId, 'legal-ok', true);
    gate.resolve();
    const parked = await waiting;
    expect(parked.waitingFor).toEqual([{ step: 'finance', key: 'finance-ok' }]);
    await ctx.submitInput(handle.runId, 'finance-ok', false);
    const result = await handle.result();
    expect(result.status).toBe('completed');
    expect(result.output).toEqual({ legal: { who: 'legal', verdict: true }, finance: { who: 'finance', verdict: false }, compute: 'done' });
    expect(reviewed.sort()).toEqual(['finance', 'legal']);
  });

  it('frees the executor slot while a step waits: other runs go on', async () => {
    const calls: Record<string, number> = {};
    const ctx = context({ concurrency: 1 }).register(approvalFlow(calls));
    const quick = new Flow(new Fn(() => 'quick'), { name: 'quick' });
    ctx.register(quick);
    const waiting = nextWaiting(ctx);
    const handle = ctx.start(ctx.getFlow('order')!, { order: 'A-3' }, { mode: 'interactive' });
    await waiting;
    expect((await ctx.run(quick, {})).output).toBe('quick');
    await ctx.submitInput(handle.runId, 'approval', { approved: true, by: 'dee' });
    expect((await handle.result()).status).toBe('completed');
  });

  it('waits in a hybrid run with a person in the loop, and a handle from another context on the store follows it to the end', async () => {
    const calls: Record<string, number> = {};
    const ctx = context().register(approvalFlow(calls));
    const waiting = nextWaiting(ctx);
    const handle = ctx.start(ctx.getFlow('order')!, { order: 'A-4' }, { mode: 'hybrid' });
    await waiting;
    const seen: string[] = [];
    const watch = (async () => {
      for await (const e of handle.events()) seen.push(e.type);
    })();
    await ctx.submitInput(handle.runId, 'approval', { approved: true, by: 'eve' });
    expect((await handle.result()).status).toBe('completed');
    await watch;
    expect(seen.at(-1)).toBe('run_complete');
    expect(seen).toContain('run_waiting');
    expect(seen).toContain('input_received');
  });
});

describe('cancelling and closing', () => {
  it('cancels a waiting run from any context on the store: its handle settles as cancelled', async () => {
    const calls: Record<string, number> = {};
    const ctx = temp.context().register(approvalFlow(calls));
    const waiting = nextWaiting(ctx);
    const handle = ctx.start(ctx.getFlow('order')!, { order: 'C-1' }, { mode: 'interactive' });
    await waiting;
    const other = temp.context().register(approvalFlow(calls));
    await other.cancel(handle.runId, 'no longer needed');
    const result = await handle.result();
    expect(result.status).toBe('cancelled');
    expect(result.error).toMatchObject({ code: 'WEIR_CANCELLED', message: 'no longer needed' });
    expect(result.steps.prepare?.status).toBe('completed');
    expect((await ctx.getRun(handle.runId)).status).toBe('cancelled');
    await expect(ctx.submitInput(handle.runId, 'approval', { approved: true, by: 'x' })).rejects.toMatchObject({ code: 'WEIR_RUN_STATE' });
  });

  it('closing a context over a memory store cancels its waiting runs; over SQLite they stay waiting for the next process', async () => {
    const calls: Record<string, number> = {};
    const memory = new FlowContext({ results: ResultsManager.memory() }).register(approvalFlow(calls));
    let waiting = nextWaiting(memory);
    const inMemory = memory.start(memory.getFlow('order')!, { order: 'C-2' }, { mode: 'interactive' });
    await waiting;
    await memory.close();
    expect((await inMemory.result()).status).toBe('cancelled');

    const durable = new FlowContext({ results: ResultsManager.sqlite(temp.file()) }).register(approvalFlow(calls));
    waiting = nextWaiting(durable);
    const onDisk = durable.start(durable.getFlow('order')!, { order: 'C-3' }, { mode: 'interactive' });
    await waiting;
    await durable.close();
    const next = temp.context().register(approvalFlow(calls));
    expect((await next.getRun(onDisk.runId)).status).toBe('waiting');
    await next.submitInput(onDisk.runId, 'approval', { approved: true, by: 'z' });
    expect((await (await next.handle(onDisk.runId)).result()).status).toBe('completed');
  });
});
