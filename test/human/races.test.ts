import { z } from 'zod';
import { describe, expect, it, vi } from 'vitest';
import { Flow, FlowContext, ResultsManager, type FlowContextOptions, type Step, type WeirEvent } from '../../src/index.js';
import { Fn } from '../fixtures/processors.js';
import { sqliteContexts } from '../fixtures/sqlite-contexts.js';
import { nextWaiting } from '../fixtures/waiting.js';

const temp = sqliteContexts('hitl-races');
const S = z.object({ v: z.string() });

/** One step that asks "a" and "b" at once. */
function twoKeys(calls: { n: number }) {
  const flow = Flow.sequential('two-keys');
  new Flow(
    new Fn(async (_i, step: Step) => {
      calls.n++;
      const [a, b] = await Promise.all([step.waitForInput('a', S), step.waitForInput('b', S)]);
      return { a, b };
    }),
    { name: 'ask' },
  ).registerTo(flow);
  return flow;
}

const stores: { name: string; make: (options?: FlowContextOptions) => FlowContext }[] = [
  { name: 'memory', make: (options = {}) => temp.track(new FlowContext({ results: ResultsManager.memory(), ...options })) },
  { name: 'sqlite', make: (options = {}) => temp.context(options) },
];


describe.each(stores)('answers racing each other and the run ($name store)', ({ make }) => {
  it('two answers to one step submitted at once: both are taken and the step runs again once', async () => {
    const calls = { n: 0 };
    const ctx = make().register(twoKeys(calls));
    const waiting = nextWaiting(ctx);
    const handle = ctx.start(ctx.getFlow('two-keys')!, {}, { mode: 'interactive' });
    await waiting;
    await Promise.all([ctx.submitInput(handle.runId, 'a', { v: 'A' }), ctx.submitInput(handle.runId, 'b', { v: 'B' })]);
    expect(await handle.result()).toMatchObject({ status: 'completed', output: { ask: { a: { v: 'A' }, b: { v: 'B' } } } });
    expect(calls.n).toBe(2);
  });

  it('close() while a run parks returns at once; its handle settles (cancelled over memory, waiting over SQLite)', async () => {
    const calls = { n: 0 };
    // Waiting for the run to end instead would outlast the test's own timeout.
    const ctx = make({ closeTimeout: 600_000 }).register(twoKeys(calls));
    const closing = new Promise<void>((resolve, reject) => ctx.once('input_required', () => void ctx.close().then(resolve, reject)));
    const handle = ctx.start(ctx.getFlow('two-keys')!, {}, { mode: 'interactive' });
    const result = handle.result();
    await closing;
    const settled = await result;
    expect(settled.status).toBe(ctx.results.durable ? 'waiting' : 'cancelled');
    if (ctx.results.durable) expect(settled.error).toMatchObject({ code: 'WEIR_CONTEXT_CLOSED' });
  });

  it('an answer that comes while the asking attempt still runs is announced with input_received before the step runs again', async () => {
    const ctx = make();
    const events: WeirEvent[] = [];
    ctx.on('event', (e) => events.push(e));
    const flow = new Flow(new Fn(async (_i, step: Step) => step.waitForInput('a', S)), { name: 'early' });
    ctx.on('input_required', (e) => void ctx.submitInput(e.runId, 'a', { v: 'soon' }));
    const result = await ctx.run(flow, {}, { mode: 'interactive' });
    expect(result.output).toEqual({ v: 'soon' });
    const types = events.filter((e) => e.runId === result.runId).map((e) => e.type);
    expect(types.slice(types.indexOf('input_required'))).toEqual(['input_required', 'input_received', 'step_start', 'step_complete', 'run_complete']);
  });
});

describe('answers from two contexts on one SQLite file', () => {
  it('two answers to one step at once, one from each context: both are taken and the run completes once', async () => {
    const calls = { n: 0 };
    const x = temp.context().register(twoKeys(calls));
    const y = temp.context().register(twoKeys(calls));
    const waiting = nextWaiting(x);
    const handle = x.start(x.getFlow('two-keys')!, {}, { mode: 'interactive' });
    await waiting;
    await Promise.all([x.submitInput(handle.runId, 'a', { v: 'A' }), y.submitInput(handle.runId, 'b', { v: 'B' })]);
    expect(await handle.result()).toMatchObject({ status: 'completed', output: { ask: { a: { v: 'A' }, b: { v: 'B' } } } });
    expect(calls.n).toBe(2);
    const seqs: number[] = [];
    for await (const e of y.events(handle.runId)) seqs.push(e.seq);
    expect(seqs).toEqual(seqs.map((_s, i) => i + 1));
  });
});

describe('two contexts looking at the same waiting runs', () => {
  it('recover() in two contexts at once: each run whose wait ended goes on exactly once, the others keep waiting', async () => {
    const calls = new Map<string, number>();
    const asker = () =>
      new Flow(
        new Fn(async (input, step: Step) => {
          calls.set(step.runId, (calls.get(step.runId) ?? 0) + 1);
          const timeout = (input as { timeout?: number }).timeout;
          return step.waitForInput('k', z.number(), timeout === undefined ? {} : { timeout, default: -1 });
        }),
        { name: 'asker' },
      );
    const first = temp.context().register(asker());
    const n = 12;
    const deadlines: number[] = [];
    let parked = 0;
    const allParked = new Promise<void>((resolve) =>
      first.on('run_waiting', (e) => {
        deadlines.push(...e.waitingFor.flatMap((w) => (w.deadline === undefined ? [] : [w.deadline])));
        if (++parked === n) resolve();
      }),
    );
    for (let i = 0; i < n; i++) first.start(first.getFlow('asker')!, i % 3 === 0 ? { timeout: 50 } : {}, { runId: `r${i}`, mode: 'interactive' });
    await allParked;
    await first.close();
    // Answered by a context that does not know the flow: stored, the run left for a context that does.
    const stranger = temp.context();
    for (let i = 1; i < n; i += 3) await stranger.submitInput(`r${i}`, 'k', i);
    // The short waits must have expired before the others recover them.
    const lastDeadline = Math.max(...deadlines);
    await vi.waitFor(() => expect(Date.now()).toBeGreaterThan(lastDeadline));
    const a = temp.context().register(asker());
    const b = temp.context().register(asker());
    const [ha, hb] = await Promise.all([a.recover(), b.recover()]);
    const taken = [...ha, ...hb].map((h) => h.runId).sort();
    const expected = [...Array(n).keys()].filter((i) => i % 3 !== 2).map((i) => `r${i}`).sort();
    expect(taken).toEqual(expected);
    for (const runId of expected) {
      const result = await (await a.handle(runId)).result();
      const i = Number(runId.slice(1));
      expect(result).toMatchObject({ status: 'completed', output: i % 3 === 0 ? -1 : i });
      expect(calls.get(runId)).toBe(2);
    }
    expect((await a.listRuns({ status: 'waiting' })).runs.map((r) => r.runId).sort()).toEqual(['r11', 'r2', 'r5', 'r8']);
  });

  it('announces each answer once, even when the run parks and goes on between the answers of one step', async () => {
    const ctx = temp.context();
    const events: WeirEvent[] = [];
    ctx.on('event', (e) => events.push(e));
    const p = Flow.parallel('pair');
    new Flow(new Fn(async (_i, step: Step) => Promise.all([step.waitForInput('k1', z.number()), step.waitForInput('k2', z.number())])), { name: 'S' }).registerTo(p);
    new Flow(new Fn(async (_i, step: Step) => step.waitForInput('k3', z.number())), { name: 'T' }).registerTo(p);
    let waiting = nextWaiting(ctx);
    const handle = ctx.start(p, {}, { mode: 'interactive' });
    await waiting;
    await ctx.submitInput(handle.runId, 'k1', 1);
    waiting = nextWaiting(ctx);
    await ctx.submitInput(handle.runId, 'k3', 3);
    await waiting;
    await ctx.submitInput(handle.runId, 'k2', 2);
    expect(await handle.result()).toMatchObject({ status: 'completed', output: { S: [1, 2], T: 3 } });
    const received = events.filter((e) => e.type === 'input_received').map((e) => `${(e as { step: string }).step}/${(e as { key: string }).key}`);
    expect(received).toEqual(['T/k3', 'S/k1', 'S/k2']);
  });
});
