import { z } from 'zod';
import { describe, expect, it } from 'vitest';
import { FatalError, Flow, Processor, type WeirEvent } from '../../src/index.js';
import { deferred, Fn } from '../fixtures/processors.js';
import { sqliteContexts } from '../fixtures/sqlite-contexts.js';

const temp = sqliteContexts('control');

const context = temp.context;

const Count = z.object({ n: z.number() });
class Double extends Processor<typeof Count, typeof Count> {
  readonly input = Count;
  readonly output = Count;
  async process(input: z.infer<typeof Count>): Promise<z.infer<typeof Count>> {
    return { n: input.n * 2 };
  }
}

/** a -> b -> c in sequence, counting calls; `b` fails while `failB` is set. */
function chain(calls: Record<string, number>, state: { failB: boolean }) {
  const s = Flow.sequential('chain');
  const step = (name: string, fn: (n: number) => number) =>
    new Flow(
      new Fn((input) => {
        calls[name] = (calls[name] ?? 0) + 1;
        if (name === 'b' && state.failB) throw new FatalError('b is broken today');
        return { n: fn((input as { n: number }).n) };
      }),
      { name },
    ).registerTo(s);
  step('a', (n) => n + 1);
  step('b', (n) => n * 10);
  step('c', (n) => n - 3);
  return s;
}

describe('resume', () => {
  it('continues a failed run in place: completed steps are kept, the failed one and the rest run', async () => {
    const calls: Record<string, number> = {};
    const state = { failB: true };
    const ctx = context().register(chain(calls, state));
    const failed = await ctx.run(ctx.getFlow('chain')!, { n: 1 });
    expect(failed.status).toBe('failed');
    expect(failed.error).toMatchObject({ step: 'b', message: 'b is broken today' });

    state.failB = false;
    const events: WeirEvent[] = [];
    ctx.on('event', (e) => events.push(e));
    const resumed = await (await ctx.resume(failed.runId)).result();
    expect(resumed).toMatchObject({ runId: failed.runId, status: 'completed', output: { a: { n: 2 }, b: { n: 20 }, c: { n: 17 } } });
    expect(calls).toEqual({ a: 1, b: 2, c: 1 });
    expect(resumed.steps.b?.attempts.map((a) => a.error?.message)).toEqual(['b is broken today', undefined]);
    expect(events[0]).toMatchObject({ type: 'run_resumed', reason: 'resumed' });
    // The event log goes on from where it stopped, densely.
    const stored = [];
    for await (const e of (await ctx.handle(failed.runId)).events()) stored.push(e);
    expect(stored.map((e) => e.seq)).toEqual(stored.map((_e, i) => i + 1));
    expect(stored.map((e) => e.type)).toContain('run_failed');
    expect(stored.at(-1)?.type).toBe('run_complete');
  });

  it('with { from } re-runs that step and everything downstream of it, of a completed run too', async () => {
    const calls: Record<string, number> = {};
    const ctx = context().register(chain(calls, { failB: false }));
    const first = await ctx.run(ctx.getFlow('chain')!, { n: 1 });
    expect(first.status).toBe('completed');
    const again = await (await ctx.resume(first.runId, { from: 'b' })).result();
    expect(again.status).toBe('completed');
    expect(again.output).toEqual(first.output);
    expect(calls).toEqual({ a: 1, b: 2, c: 2 });
  });

  it('goes on in another context on the same file, reading the kept outputs back', async () => {
    const calls: Record<string, number> = {};
    const state = { failB: true };
    const one = context().register(chain(calls, state));
    const failed = await one.run(one.getFlow('chain')!, { n: 4 });
    await one.close();
    state.failB = false;
    const two = context().register(chain(calls, state));
    const resumed = await (await two.resume(failed.runId)).result();
    expect(resumed.output).toEqual({ a: { n: 5 }, b: { n: 50 }, c: { n: 47 } });
    expect(calls.a).toBe(1);
  });

  it('refuses what cannot be done, each with its code', async () => {
    const calls: Record<string, number> = {};
    const ctx = context().register(chain(calls, { failB: false }));
    const done = await ctx.run(ctx.getFlow('chain')!, { n: 1 });
    await expect(ctx.resume(done.runId)).rejects.toMatchObject({ code: 'WEIR_RUN_STATE', message: expect.stringMatching(/completed/) });
    await expect(ctx.resume('nope')).rejects.toMatchObject({ code: 'WEIR_RUN_NOT_FOUND' });
    await expect(ctx.resume(done.runId, { from: 'zzz' })).rejects.toMatchObject({ code: 'WEIR_INVALID_OPTIONS', message: expect.stringMatching(/no step "zzz"/) });
    const gate = deferred();
    const hang = new Flow(new Fn(() => gate.promise), { name: 'hang' });
    const live = ctx.start(hang, {});
    await expect(ctx.resume(live.runId)).rejects.toMatchObject({ code: 'WEIR_RUN_STATE', message: expect.stringMatching(/running in this context/) });
    gate.resolve();
    await live.result();
    const other = context();
    await expect(other.resume(done.runId, { from: 'a' })).rejects.toMatchObject({ code: 'WEIR_FLOW_NOT_REGISTERED' });
  });
});

describe('skip', () => {
  it('records an output for a step of a failed run; the run stays failed until resume, which goes on from there', async () => {
    const calls: Record<string, number> = {};
    const ctx = context().register(chain(calls, { failB: true }));
    const failed = await ctx.run(ctx.getFlow('chain')!, { n: 1 });
    await ctx.skip(failed.runId, 'b', { n: 100 });
    expect(await ctx.getRun(failed.runId)).toMatchObject({ status: 'failed', steps: { b: { status: 'completed' } } });
    const resumed = await (await ctx.resume(failed.runId)).result();
    expect(resumed.output).toEqual({ a: { n: 2 }, b: { n: 100 }, c: { n: 97 } });
    expect(calls).toEqual({ a: 1, b: 1, c: 1 });
  });

  it('lets the dependants of a step of a running run go on with the given output', async () => {
    const ctx = context();
    const p = Flow.parallel('p');
    const gate = deferred();
    const stuck = new Flow(new Fn(() => gate.promise), { name: 'stuck' }).registerTo(p);
    new Flow(new Fn(async (_i, step) => ({ got: await step.deps.get(stuck) })), { name: 'after' }).registerTo(p, { required: [stuck] });
    const handle = ctx.start(p, {});
    const started = deferred();
    ctx.on('step_start', (e) => e.step === 'stuck' && started.resolve());
    await started.promise;
    await ctx.skip(handle.runId, 'stuck', 'by hand');
    const result = await handle.result();
    expect(result.status).toBe('completed');
    expect(result.output).toEqual({ stuck: 'by hand', after: { got: 'by hand' } });
    expect(result.steps.stuck?.attempts[0]?.error?.code).toBe('WEIR_CANCELLED');
    gate.resolve();
  });

  it('refuses an unknown step, a composite, a completed step and an output that fails the schema', async () => {
    const ctx = context();
    const s = Flow.sequential('typed');
    new Flow(new Double(), { name: 'double' }).registerTo(s);
    new Flow(new Fn(() => {
      throw new FatalError('no');
    }), { name: 'boom' }).registerTo(s);
    ctx.register(s);
    const failed = await ctx.run(s, { n: 2 });
    await expect(ctx.skip(failed.runId, 'ghost')).rejects.toMatchObject({ code: 'WEIR_INVALID_OPTIONS', message: expect.stringMatching(/no step "ghost"/) });
    await expect(ctx.skip(failed.runId, 'double', { n: 1 })).rejects.toMatchObject({ code: 'WEIR_RUN_STATE', message: expect.stringMatching(/it completed/) });
    const parent = Flow.parallel('outer');
    Flow.parallel('inner').registerTo(parent);
    ctx.register(parent);
    const composite = await ctx.run(parent, {});
    await expect(ctx.skip(composite.runId, 'inner')).rejects.toMatchObject({ code: 'WEIR_RUN_STATE' });
    const s2 = Flow.sequential('typed2');
    new Flow(new Fn(() => {
      throw new FatalError('no');
    }), { name: 'first' }).registerTo(s2);
    new Flow(new Double(), { name: 'second' }).registerTo(s2);
    ctx.register(s2);
    const failed2 = await ctx.run(s2, {});
    await expect(ctx.skip(failed2.runId, 'second', { n: 'x' })).rejects.toMatchObject({ code: 'WEIR_VALIDATION', message: expect.stringMatching(/second/) });
  });
});

describe('retry', () => {
  it('starts a new run with the same input, and links the two both ways', async () => {
    const calls: Record<string, number> = {};
    const state = { failB: true };
    const ctx = context().register(chain(calls, state));
    const failed = await ctx.run(ctx.getFlow('chain')!, { n: 3 });
    state.failB = false;
    const handle = await ctx.retry(failed.runId);
    expect(handle.runId).not.toBe(failed.runId);
    const result = await handle.result();
    expect(result.output).toEqual({ a: { n: 4 }, b: { n: 40 }, c: { n: 37 } });
    expect(calls.a).toBe(2);
    expect(await ctx.getRun(handle.runId)).toMatchObject({ retryOf: failed.runId, status: 'completed' });
    expect(await ctx.getRun(failed.runId)).toMatchObject({ retriedBy: handle.runId, status: 'failed' });
  });
});

describe('cancel', () => {
  it('stops a run of this context, and refuses a run that ended', async () => {
    const ctx = context();
    const flow = new Flow(new Fn((_i, step) => new Promise((_r, reject) => step.signal.addEventListener('abort', () => reject(new Error(String(step.signal.reason)))))), { name: 'wait' });
    const handle = ctx.start(flow, {});
    const started = deferred();
    ctx.on('step_start', () => started.resolve());
    await started.promise;
    await ctx.cancel(handle.runId, 'enough');
    expect(await handle.result()).toMatchObject({ status: 'cancelled' });
    expect(await ctx.getRun(handle.runId)).toMatchObject({ status: 'cancelled', steps: { wait: { status: 'cancelled' } } });
    await expect(ctx.cancel(handle.runId)).rejects.toMatchObject({ code: 'WEIR_RUN_STATE', message: expect.stringMatching(/ended/) });
    await expect(ctx.cancel('nope')).rejects.toMatchObject({ code: 'WEIR_RUN_NOT_FOUND' });
  });
});

describe('idempotent start', () => {
  it('gives the stored run for the same flow and input, and refuses another input', async () => {
    const ctx = context();
    const flow = new Flow(new Double(), { name: 'double' });
    ctx.register(flow);
    const first = await ctx.run(flow, { n: 2 }, { runId: 'order-1' });
    const again = await ctx.run(flow, { n: 2 }, { runId: 'order-1' });
    expect(again).toMatchObject({ runId: 'order-1', status: 'completed', output: { n: 4 } });
    expect(again.startTime).toBe(first.startTime);
    await expect(ctx.run(flow, { n: 3 }, { runId: 'order-1' })).rejects.toMatchObject({ code: 'WEIR_RUN_CONFLICT' });
  });
});

describe('two contexts acting on one ended run at once', () => {
  it('resume from two contexts at once: exactly one goes on with the run, the other is refused with WEIR_RUN_STATE', async () => {
    const calls: Record<string, number> = {};
    const state = { failB: true };
    const a = context().register(chain(calls, state));
    const b = context().register(chain(calls, state));
    const failed = await a.run(a.getFlow('chain')!, { n: 1 });
    expect(failed.status).toBe('failed');
    state.failB = false;
    const outcomes = await Promise.allSettled([a.resume(failed.runId), b.resume(failed.runId)]);
    const won = outcomes.filter((o) => o.status === 'fulfilled');
    const lost = outcomes.filter((o) => o.status === 'rejected');
    expect(won).toHaveLength(1);
    expect(lost).toHaveLength(1);
    expect((lost[0] as PromiseRejectedResult).reason).toMatchObject({ code: 'WEIR_RUN_STATE' });
    expect(await (won[0] as PromiseFulfilledResult<Awaited<ReturnType<typeof a.resume>>>).value.result()).toMatchObject({ status: 'completed' });
    expect(calls).toEqual({ a: 1, b: 2, c: 1 });
  });
});
