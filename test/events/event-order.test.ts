import { afterEach, describe, expect, it } from 'vitest';
import { FatalError, Flow, FlowContext, RetryableError, type WeirEvent } from '../../src/index.js';
import { deferred, Fn } from '../fixtures/processors.js';

let ctx: FlowContext;
afterEach(async () => {
  await ctx.close();
});

function summary(events: readonly WeirEvent[]): string[] {
  return events.map((e) => ('step' in e ? `${e.type}:${e.step}${'attempt' in e ? `#${e.attempt}` : ''}` : e.type));
}

describe('events', () => {
  it('emits a run’s events in order with a dense, increasing seq, its runId and time', async () => {
    ctx = new FlowContext();
    const s = Flow.sequential('s');
    let tries = 0;
    new Flow(new Fn((_i, step) => { step.progress(0.5, 'half'); step.heartbeat({ at: 1 }); return 1; }), { name: 'a' }).registerTo(s);
    new Flow(
      new Fn(() => {
        if (tries++ === 0) throw new RetryableError('once');
        return 2;
      }),
      { name: 'b', retry: { maxAttempts: 2, initialInterval: 0 } },
    ).registerTo(s);
    const events: WeirEvent[] = [];
    ctx.on('event', (e) => events.push(e));
    const before = Date.now();
    const result = await ctx.run(s, {});

    expect(summary(events)).toEqual([
      'run_start',
      'step_start:a#1',
      'step_progress:a#1',
      'step_heartbeat:a#1',
      'step_complete:a#1',
      'step_start:b#1',
      'step_retry:b#1',
      'step_start:b#2',
      'step_complete:b#2',
      'run_complete',
    ]);
    expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1));
    for (const e of events) {
      expect(e.runId).toBe(result.runId);
      expect(e.time).toBeGreaterThanOrEqual(before);
    }
    expect(events[2]).toMatchObject({ progress: 0.5, message: 'half' });
    expect(events[3]).toMatchObject({ details: { at: 1 } });
  });

  it('emits step_failed, step_skipped and run_failed with the error', async () => {
    ctx = new FlowContext();
    const p = Flow.parallel('p');
    const bad = new Flow(new Fn(() => { throw new FatalError('bad'); }), { name: 'bad' }).registerTo(p);
    new Flow(new Fn(() => 1), { name: 'dep' }).registerTo(p, { required: [bad] });
    const events: WeirEvent[] = [];
    ctx.on('event', (e) => events.push(e));
    await ctx.run(p, {});
    expect(summary(events)).toEqual(['run_start', 'step_start:bad#1', 'step_failed:bad#1', 'step_skipped:dep', 'run_failed']);
    expect(events.at(-1)).toMatchObject({ type: 'run_failed', error: { step: 'bad', message: 'bad' } });
  });

  it('keeps each run’s seq separate when runs interleave, and lets listeners be removed', async () => {
    ctx = new FlowContext();
    const flow = new Flow(new Fn(async () => { await new Promise((r) => setImmediate(r)); }), { name: 'x' });
    const byRun = new Map<string, number[]>();
    const listener = (e: WeirEvent): void => {
      byRun.set(e.runId, [...(byRun.get(e.runId) ?? []), e.seq]);
    };
    ctx.on('event', listener);
    await Promise.all([ctx.run(flow, {}), ctx.run(flow, {}), ctx.run(flow, {})]);
    expect(byRun.size).toBe(3);
    for (const seqs of byRun.values()) expect(seqs).toEqual([1, 2, 3, 4]);
    ctx.off('event', listener);
    await ctx.run(flow, {});
    expect(byRun.size).toBe(3);
  });

  it('types listeners by event type', async () => {
    ctx = new FlowContext();
    const delays: number[] = [];
    ctx.on('step_retry', (e) => delays.push(e.delay));
    ctx.once('run_complete', (e) => delays.push(e.duration >= 0 ? -1 : -2));
    let calls = 0;
    await ctx.run(new Flow(new Fn(() => { if (calls++ === 0) throw new Error('x'); }), { name: 'x', retry: { maxAttempts: 2, initialInterval: 3, jitter: 0 } }), {});
    expect(delays).toEqual([3, -1]);
  });

  it('replays a run’s events from a handle after a seq, then follows live until the end', async () => {
    ctx = new FlowContext();
    const s = Flow.sequential('s');
    for (const name of ['a', 'b', 'c']) new Flow(new Fn(() => name), { name }).registerTo(s);
    const handle = ctx.start(s, {});
    const all: WeirEvent[] = [];
    for await (const e of handle.events()) all.push(e);
    const tail: number[] = [];
    for await (const e of handle.events({ after: 4 })) tail.push(e.seq);
    expect(all.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(tail).toEqual([5, 6, 7, 8]);
  });

  it('refuses events options that are not whole numbers or are unknown', async () => {
    ctx = new FlowContext();
    const gate = deferred();
    const handle = ctx.start(new Flow(new Fn(() => gate.promise), { name: 'x' }), {});
    expect(() => handle.events({ after: 1.5 })).toThrow(expect.objectContaining({ code: 'WEIR_INVALID_OPTIONS' }) as Error);
    expect(() => ctx.events(handle.runId, { after: -1 })).toThrow(/after/);
    expect(() => handle.events({ from: 2 } as never)).toThrow(/from/);
    gate.resolve();
    await handle.result();
  });
});
