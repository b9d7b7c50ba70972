/**
 * Races between a run's commits and what users do meanwhile (cancel, skip, close, a lost owner).
 * A slow or stalled commit is made by wrapping the real store's `commit`: the one fault the real
 * store cannot be asked for.
 */
import { describe, expect, it, vi } from 'vitest';
import { FatalError, Flow, FlowContext, ResultsManager } from '../../src/index.js';
import { runStoreOf } from '../../src/results/results-manager.js';
import { deferred, Fn } from '../fixtures/processors.js';
import { sqliteContexts } from '../fixtures/sqlite-contexts.js';

const temp = sqliteContexts('races');

/** A memory store whose commits of `step`'s output wait for `gate`; `reached` resolves when one does. */
function slowOutputOf(step: string, gate: Promise<void>, reached?: () => void): ResultsManager {
  const results = ResultsManager.memory();
  const store = runStoreOf(results);
  const commit = store.commit.bind(store);
  // Every commit must pass the wrapper: not the memory store's synchronous one.
  store.commitNow = undefined;
  store.commit = async (batch) => {
    if (batch.outputs?.some((o) => o.step === step)) {
      reached?.();
      await gate;
    }
    return commit(batch);
  };
  return results;
}

describe('a step whose completion is being committed', () => {
  it('is not cancelled by a cancel that lands meanwhile: it completes, and a resume does not run it again', async () => {
    const landed = deferred();
    const committing = deferred();
    const ctx = new FlowContext({ results: slowOutputOf('x', landed.promise, committing.resolve) });
    temp.track(ctx);
    let xRuns = 0;
    const root = Flow.sequential('root');
    new Flow(new Fn(() => ++xRuns), { name: 'x' }).registerTo(root);
    new Flow(new Fn((i) => i), { name: 'y' }).registerTo(root);
    ctx.register(root);
    const handle = ctx.start(root, {});
    // x's output is validated and its commit waits.
    await committing.promise;
    const cancelled = ctx.cancel(handle.runId);
    landed.resolve();
    await cancelled;
    const result = await handle.result();
    expect(result.status).toBe('cancelled');
    expect(result.steps.x).toMatchObject({ status: 'completed', output: 1 });
    expect((await ctx.getRun(handle.runId)).steps.x?.status).toBe('completed');
    expect(await (await ctx.resume(handle.runId)).result()).toMatchObject({ status: 'completed', output: { x: 1, y: 1 } });
    expect(xRuns).toBe(1);
  });

  it('cannot be skipped meanwhile', async () => {
    const landed = deferred();
    const committing = deferred();
    const ctx = new FlowContext({ results: slowOutputOf('x', landed.promise, committing.resolve) });
    temp.track(ctx);
    const root = Flow.sequential('root');
    new Flow(new Fn(() => 'real'), { name: 'x' }).registerTo(root);
    new Flow(new Fn((i) => i), { name: 'y' }).registerTo(root);
    const handle = ctx.start(root, {});
    await committing.promise;
    await expect(ctx.skip(handle.runId, 'x', 'given')).rejects.toMatchObject({ code: 'WEIR_RUN_STATE', message: expect.stringMatching(/being recorded/) });
    landed.resolve();
    expect(await handle.result()).toMatchObject({ status: 'completed', output: { x: 'real', y: 'real' } });
  });
});

describe('skip in a running run', () => {
  it('refuses a step that already ended, and the run goes on', async () => {
    const ctx = new FlowContext();
    temp.track(ctx);
    const root = Flow.parallel('root');
    const gate = deferred<string>();
    const a = new Flow(new Fn(() => {
      throw new FatalError('a broke');
    }), { name: 'a' }).registerTo(root);
    new Flow(new Fn(() => 'b'), { name: 'b' }).registerTo(root, { required: [a] });
    new Flow(new Fn(() => gate.promise), { name: 'slow' }).registerTo(root);
    const handle = ctx.start(root, {});
    const skipped = deferred();
    ctx.on('step_skipped', () => skipped.resolve());
    await skipped.promise;
    await expect(ctx.skip(handle.runId, 'b', 'given')).rejects.toMatchObject({ code: 'WEIR_RUN_STATE', message: expect.stringMatching(/has ended \(skipped\)/) });
    expect(ctx.activeRuns).toBe(1);
    gate.resolve('slow');
    expect(await handle.result()).toMatchObject({ status: 'failed', steps: { slow: { status: 'completed' }, b: { status: 'skipped' } } });
  });

  it('of a step in a composite that has not started does not start its siblings early', async () => {
    const ctx = new FlowContext();
    temp.track(ctx);
    const root = Flow.sequential('root');
    const gate = deferred<string>();
    new Flow(new Fn(() => gate.promise), { name: 'first' }).registerTo(root);
    const inner = Flow.sequential('inner').registerTo(root);
    new Flow(new Fn(() => 'x'), { name: 'x' }).registerTo(inner);
    let yStartedEarly = false;
    new Flow(new Fn((input) => {
      yStartedEarly = !firstDone;
      return input;
    }), { name: 'y' }).registerTo(inner);
    let firstDone = false;
    const firstStarted = deferred();
    ctx.on('step_start', (e) => e.step === 'first' && firstStarted.resolve());
    const handle = ctx.start(root, {});
    await firstStarted.promise;
    await ctx.skip(handle.runId, 'x', 'given');
    // Everything the skip set going is recorded by now: y would have started, were it (wrongly) ready.
    expect((await ctx.getRun(handle.runId)).steps.y?.status ?? 'pending').toBe('pending');
    firstDone = true;
    gate.resolve('first');
    const result = await handle.result();
    expect(result).toMatchObject({ status: 'completed', output: { first: 'first', inner: { x: 'given', y: 'given' } } });
    expect(yStartedEarly).toBe(false);
  });
});

describe('recovery', () => {
  it('keeps a step that failed for good as failed, without running it again', async () => {
    const results = ResultsManager.sqlite(temp.file());
    const store = runStoreOf(results);
    // The owner's process "dies": its commits and lease renewals stall from then on.
    let dead = false;
    const commit = store.commit.bind(store);
    store.commit = (batch) => (dead ? new Promise(() => {}) : commit(batch));
    const renew = store.renewLeases.bind(store);
    store.renewLeases = (owner, entries, at) => (dead ? new Promise(() => {}) : renew(owner, entries, at));
    let aRuns = 0;
    const gate = deferred();
    const make = () => {
      const root = Flow.parallel('root');
      new Flow(new Fn(() => {
        aRuns++;
        throw new FatalError('never twice');
      }), { name: 'a' }).registerTo(root);
      new Flow(new Fn(async () => {
        await gate.promise;
        return 'b';
      }), { name: 'b' }).registerTo(root);
      return root;
    };
    const owner = new FlowContext({ results, leaseTimeout: 100, closeTimeout: 0 }).register(make());
    const handle = owner.start(owner.getFlow('root')!, {});
    const aFailed = deferred();
    owner.on('step_failed', (e) => e.step === 'a' && aFailed.resolve());
    await aFailed.promise;
    // Its record is flushed; b still runs.
    expect((await owner.getRun(handle.runId)).steps.a?.status).toBe('failed');
    dead = true;
    const next = new FlowContext({ results: ResultsManager.sqlite(temp.file()) }).register(make());
    temp.track(next);
    // Until the lease runs out.
    await vi.waitFor(async () => expect((await next.listRuns({ stale: true })).runs).toHaveLength(1), { timeout: 5_000 });
    const [taken] = await next.recover();
    gate.resolve();
    const result = await taken!.result();
    expect(result).toMatchObject({ status: 'failed', error: { step: 'a', message: 'never twice' } });
    expect(aRuns).toBe(1);
    expect(result.steps.a?.attempts).toHaveLength(1);
    void handle;
    // The "dead" owner is left as it is; only its store's handle is released.
    await results.close();
  });
});

describe('taking queued runs', () => {
  it('leaves a run that another worker took, ran to its end and released after this one listed it', async () => {
    let calls = 0;
    const job = new Flow(new Fn(() => ++calls), { name: 'job' });
    const client = temp.context().register(job);
    const handle = await client.enqueue(job, {}, { runId: 'q' });
    // Worker A takes it from the queue and runs it to its end.
    await temp.context().register(job).recover();
    expect(await handle.result()).toMatchObject({ status: 'completed', output: 1 });
    const results = ResultsManager.sqlite(temp.file());
    const store = runStoreOf(results);
    const ended = (await store.loadRun('q'))!.run;
    // Worker B listed the queue in the moment A held the lease and had not yet marked the run running: same token.
    const listedEarlier = { ...ended, status: 'pending' as const, owner: { processId: 'elsewhere:1:1', host: 'elsewhere', pid: 1 }, leaseExpiresAt: Date.now() + 30_000, lastSeq: 0 };
    const list = store.listRuns.bind(store);
    store.listRuns = (query) => (query.status === 'pending' ? Promise.resolve({ runs: [listedEarlier] }) : list(query));
    const b = temp.track(new FlowContext({ results }).register(job));
    expect(await b.recover()).toEqual([]);
    expect(calls).toBe(1);
    const events = [];
    for await (const e of b.events('q')) events.push(e.type);
    expect(events).toEqual(['run_start', 'step_start', 'step_complete', 'run_complete']);
    expect(await b.getRun('q')).toMatchObject({ status: 'completed', stale: false });
    expect((await b.getRun('q')).owner).toBeUndefined();
  });
});

describe('heartbeat details', () => {
  it('that a durable store cannot keep fail the step at once, clearly, instead of holding back the run', async () => {
    const ctx = new FlowContext({ results: ResultsManager.sqlite(temp.file()) });
    temp.track(ctx);
    const flow = new Flow(new Fn((_i, step) => {
      step.heartbeat({ callback: () => 1 });
      return 'unreached';
    }), { name: 'beats' });
    const result = await ctx.run(flow, {});
    expect(result).toMatchObject({ status: 'failed', error: { code: 'WEIR_SERIALIZATION', message: expect.stringMatching(/"heartbeat details of flow beats" cannot be serialised: a function at \.callback/) } });
    expect((await ctx.getRun(result.runId)).status).toBe('failed');
  });
});

describe('close', () => {
  it('refuses a resume that was under way when it began', async () => {
    const ctx = new FlowContext({ results: ResultsManager.sqlite(temp.file()) });
    const flow = new Flow(new Fn(() => {
      throw new FatalError('no');
    }), { name: 'fails' });
    ctx.register(flow);
    const failed = await ctx.run(flow, {});
    const resuming = ctx.resume(failed.runId);
    await ctx.close();
    await expect(resuming).rejects.toMatchObject({ code: 'WEIR_CONTEXT_CLOSED' });
    expect(ctx.activeRuns).toBe(0);
  });
});
