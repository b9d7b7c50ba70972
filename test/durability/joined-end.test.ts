/**
 * The step whose completion ends a run commits its completion and the run's end together, on a
 * durable store: one commit, durable together or not at all. A failed commit is made by wrapping
 * the real store's `commit`, the one fault the real store cannot be asked for.
 */
import { describe, expect, it, vi } from 'vitest';
import { Flow, FlowContext, ResultsManager, type WeirEvent } from '../../src/index.js';
import { runStoreOf } from '../../src/results/results-manager.js';
import type { CommitBatch } from '../../src/storage/journal/run-store.js';
import { Fn } from '../fixtures/processors.js';
import { sqliteContexts } from '../fixtures/sqlite-contexts.js';

const temp = sqliteContexts('joined-end');

/** A SQLite results manager whose commits are recorded, and refused while `refuse` says so. */
function watched(file: string, refuse: (batch: CommitBatch) => boolean = () => false): { results: ResultsManager; batches: CommitBatch[] } {
  const results = ResultsManager.sqlite(file);
  const store = runStoreOf(results);
  const commit = store.commit.bind(store);
  const batches: CommitBatch[] = [];
  store.commit = (batch) => {
    batches.push(batch);
    return refuse(batch) ? Promise.reject(new Error('disk I/O error (injected)')) : commit(batch);
  };
  return { results, batches };
}

const chain = (names: string[], calls: Record<string, number>): Flow => {
  const root = Flow.sequential('chain');
  for (const name of names) {
    new Flow(new Fn((input) => {
      calls[name] = (calls[name] ?? 0) + 1;
      return { ...(input as object), [name]: true };
    }), { name }).registerTo(root);
  }
  return root;
};

describe('the completion that ends a run', () => {
  it('is committed with the run end: a three-step chain takes three commits, the last holding the step, its output and the end', async () => {
    const { results, batches } = watched(temp.file());
    const ctx = temp.track(new FlowContext({ results }));
    const events: WeirEvent[] = [];
    ctx.on('event', (e) => events.push(e));
    const calls: Record<string, number> = {};
    const result = await ctx.run(chain(['a', 'b', 'c'], calls), {});
    expect(result.status).toBe('completed');
    expect(batches).toHaveLength(3);
    const last = batches.at(-1)!;
    expect(last.outputs?.map((o) => o.step)).toEqual(['c']);
    expect(last.run).toMatchObject({ status: 'completed' });
    expect(last.events?.slice(-2).map((e) => e.type)).toEqual(['step_complete', 'run_complete']);
    // Listeners hear it in order, densely numbered, once it is durable.
    expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1));
    expect(events.slice(-2).map((e) => e.type)).toEqual(['step_complete', 'run_complete']);
    const stored = await ctx.getRun(result.runId);
    expect(stored).toMatchObject({ status: 'completed', steps: { c: { status: 'completed' } } });
  });

  it('of a parallel run is the one that finishes last', async () => {
    const { results, batches } = watched(temp.file());
    const ctx = temp.track(new FlowContext({ results }));
    const root = Flow.parallel('both');
    new Flow(new Fn(() => 'fast'), { name: 'fast' }).registerTo(root);
    new Flow(new Fn(async () => {
      await new Promise((resolve) => setTimeout(resolve, 20));
      return 'slow';
    }), { name: 'slow' }).registerTo(root);
    const result = await ctx.run(root, {});
    expect(result).toMatchObject({ status: 'completed', output: { fast: 'fast', slow: 'slow' } });
    const withEnd = batches.filter((b) => b.run?.status === 'completed');
    expect(withEnd).toHaveLength(1);
    expect(withEnd[0]!.outputs?.map((o) => o.step)).toEqual(['slow']);
  });

  it('that cannot be committed does not let the end commit: the run stays running in the store, and recover() runs that step again', async () => {
    let refusing = true;
    const { results } = watched(temp.file(), (batch) => refusing && batch.outputs?.some((o) => o.step === 'c') === true);
    const calls: Record<string, number> = {};
    const flow = chain(['a', 'b', 'c'], calls);
    const owner = new FlowContext({ results, leaseTimeout: 200 }).register(flow);
    temp.track(owner);
    const heard: string[] = [];
    owner.on('event', (e) => heard.push(e.type));
    const result = await owner.run(flow, {});
    expect(result).toMatchObject({ status: 'failed', error: { code: 'WEIR_STORE', message: expect.stringMatching(/could not be recorded/) } });
    expect(result.steps.c).toMatchObject({ status: 'failed', error: { code: 'WEIR_STORE' } });
    // Nothing of the failed commit reached a listener.
    expect(heard).not.toContain('run_complete');
    expect(heard.filter((t) => t === 'step_complete')).toHaveLength(2);
    refusing = false;
    const next = temp.context({ leaseTimeout: 200 }).register(flow);
    const stored = await next.getRun(result.runId);
    expect(stored.status).toBe('running');
    expect(stored.steps.c?.status).not.toBe('completed');
    expect(stored.steps.b?.status).toBe('completed');
    await vi.waitFor(async () => expect((await next.listRuns({ stale: true })).runs).toHaveLength(1), { timeout: 5_000 });
    const [taken] = await next.recover();
    expect(await taken!.result()).toMatchObject({ status: 'completed', output: { c: { a: true, b: true, c: true } } });
    expect(calls).toEqual({ a: 1, b: 1, c: 2 });
    const types: string[] = [];
    const seqs: number[] = [];
    for await (const e of next.events(result.runId)) {
      types.push(e.type);
      seqs.push(e.seq);
    }
    expect(seqs).toEqual(seqs.map((_, i) => i + 1));
    expect(types.filter((t) => t === 'run_complete')).toHaveLength(1);
    expect(types.at(-1)).toBe('run_complete');
  });

  it('with an output no store can keep goes alone: the step fails with WEIR_SERIALIZATION and the run ends failed, in the store too', async () => {
    const { results } = watched(temp.file());
    const ctx = temp.track(new FlowContext({ results }));
    const root = Flow.sequential('bad');
    new Flow(new Fn(() => 1), { name: 'a' }).registerTo(root);
    new Flow(new Fn(() => ({ f: () => 1 })), { name: 'b' }).registerTo(root);
    const result = await ctx.run(root, {});
    expect(result).toMatchObject({ status: 'failed', error: { code: 'WEIR_SERIALIZATION', step: 'b' } });
    expect(await ctx.getRun(result.runId)).toMatchObject({ status: 'failed', steps: { a: { status: 'completed' }, b: { status: 'failed' } } });
  });
});
