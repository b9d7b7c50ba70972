import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setImmediate as realSetImmediate, setTimeout as realSetTimeout } from 'node:timers';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Flow, FlowContext, ResultsManager, type WeirEvent } from '../../src/index.js';
import { runStoreOf } from '../../src/results/results-manager.js';
import { deferred, Fn } from '../fixtures/processors.js';

let dir: string;
const contexts: FlowContext[] = [];
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'weir-leases-'));
  vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'] });
});
afterEach(async () => {
  vi.useRealTimers();
  await Promise.all(contexts.splice(0).map((c) => c.close()));
  await rm(dir, { recursive: true, force: true });
});

let kind: 'sqlite' | 'disk' = 'sqlite';
function context(options: ConstructorParameters<typeof FlowContext>[0] = {}): FlowContext {
  const results = kind === 'sqlite' ? ResultsManager.sqlite(join(dir, 'runs.db')) : ResultsManager.disk(join(dir, 'results'));
  const ctx = new FlowContext({ results, closeTimeout: 0, ...options });
  contexts.push(ctx);
  return ctx;
}

/** Lets the journal's lazy flush (a real 20 ms timer) and the store's group commits go through. */
async function flushed(): Promise<void> {
  await new Promise((resolve) => realSetTimeout(resolve, 100));
  await settle();
}

/** Lets the SQLite store's real-timer group commits go through. */
async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => realSetImmediate(resolve));
}

async function startedStep(ctx: FlowContext, step: string): Promise<void> {
  const started = deferred();
  ctx.on('step_start', (e) => e.step === step && started.resolve());
  await started.promise;
}

describe.each(['sqlite', 'disk'] as const)('leases on %s', (store) => {
  beforeEach(() => {
    kind = store;
  });

  it('keeps a 10-minute step’s run leased: another context never takes it for stale', async () => {
    const owner = context();
    const gate = deferred<string>();
    const slow = new Flow(new Fn(() => gate.promise), { name: 'slow' });
    owner.register(slow);
    const handle = owner.start(slow, {});
    await startedStep(owner, 'slow');
    const other = context().register(slow);
    for (let minute = 0; minute < 10; minute++) {
      // The owner renews every 10 s (a third of the 30 s lease).
      for (let i = 0; i < 6; i++) {
        await vi.advanceTimersByTimeAsync(10_000);
        // Wait until the renewal is stored (its writes use real I/O).
        while ((await other.getRun(handle.runId)).leaseExpiresAt <= Date.now() + 20_000) await flushed();
      }
      expect((await other.listRuns({ stale: true })).runs).toEqual([]);
      expect(await other.recover()).toEqual([]);
    }
    gate.resolve('done');
    expect(await handle.result()).toMatchObject({ status: 'completed', output: 'done' });
  });

  it('lets recover() take a run whose lease expired; the former owner’s late write is refused', async () => {
    const owner = context();
    const firstTry = deferred<string>();
    let calls = 0;
    const make = () => {
      const s = Flow.sequential('job');
      new Flow(new Fn(() => 'a'), { name: 'a' }).registerTo(s);
      new Flow(new Fn(() => (++calls === 1 ? firstTry.promise : 'b again')), { name: 'b' }).registerTo(s);
      return s;
    };
    owner.register(make());
    const handle = owner.start(owner.getFlow('job')!, {});
    await startedStep(owner, 'b');
    await flushed();

    // The owner stalls (no renewal) past its lease.
    vi.setSystemTime(Date.now() + 31_000);
    const other = context().register(make());
    const stale = await other.listRuns({ stale: true });
    expect(stale.runs.map((r) => r.runId)).toEqual([handle.runId]);
    expect(stale.runs[0]).toMatchObject({ stale: true, status: 'running' });
    const events: WeirEvent[] = [];
    other.on('event', (e) => events.push(e));
    const [taken] = await other.recover();
    expect(taken?.runId).toBe(handle.runId);
    const result = await taken!.result();
    expect(result).toMatchObject({ status: 'completed', output: { a: 'a', b: 'b again' } });
    expect(events[0]).toMatchObject({ type: 'run_resumed', reason: 'recovered', recoveries: 1 });
    expect(result.steps.b?.attempts[0]?.error?.code).toBe('WEIR_OWNER_LOST');

    // The former owner wakes up: its write is refused and its run ends here.
    firstTry.resolve('b late');
    expect(await handle.result()).toMatchObject({ status: 'failed', error: { code: 'WEIR_LEASE_LOST' } });
    const info = await other.getRun(handle.runId);
    expect(info).toMatchObject({ status: 'completed', recoveries: 1 });
    expect((await (await other.handle(handle.runId)).result()).output).toEqual({ a: 'a', b: 'b again' });
  });

  it('lets exactly one of two contexts (and of two overlapping calls) take each stale run', async () => {
    const owner = context();
    const flow = new Flow(new Fn(() => new Promise(() => {})), { name: 'stuck' });
    owner.register(flow);
    const ids = [owner.start(flow, {}).runId, owner.start(flow, {}).runId, owner.start(flow, {}).runId];
    await flushed();
    vi.setSystemTime(Date.now() + 31_000);
    const b = context().register(flow);
    const c = context().register(flow);
    const taken = (await Promise.all([b.recover(), c.recover(), b.recover(), c.recover()])).flat().map((h) => h.runId);
    expect(taken.toSorted()).toEqual(ids.toSorted());
  });

  it('with recover: true, takes a run whose lease runs out later, without a call to recover()', async () => {
    const owner = context();
    let calls = 0;
    const gate = deferred<string>();
    const flow = new Flow(new Fn(() => (++calls === 1 ? gate.promise : 'taken over')), { name: 'watched' });
    owner.register(flow);
    const watcher = context({ recover: true }).register(flow);
    await flushed(); // its first scan finds nothing
    const handle = owner.start(flow, {});
    await startedStep(owner, 'watched');
    await flushed();
    expect(calls).toBe(1);
    // The owner stalls (its renewals never land); the watcher's next scan, a lease period later, finds the run stale.
    const store = runStoreOf(owner.results);
    store.renewLeases = () => new Promise(() => {});
    const resumed = deferred();
    watcher.on('run_resumed', () => resumed.resolve());
    for (let i = 0; i < 7; i++) {
      await vi.advanceTimersByTimeAsync(10_000);
      await flushed();
    }
    await resumed.promise;
    expect(await (await watcher.handle(handle.runId)).result()).toMatchObject({ status: 'completed', output: 'taken over' });
    gate.resolve('late');
  });

  it('continues a backoff that outlived its owner with the time it had left', async () => {
    const owner = context();
    let calls = 0;
    const make = () =>
      new Flow(
        new Fn(() => {
          if (++calls === 1) throw new Error('flaky');
          return 'ok';
        }),
        { name: 'flaky', retry: { maxAttempts: 2, initialInterval: 60_000, jitter: 0 } },
      );
    owner.register(make());
    const handle = owner.start(owner.getFlow('flaky')!, {});
    const retried = deferred();
    owner.on('step_retry', () => retried.resolve());
    await retried.promise;
    await flushed();
    vi.setSystemTime(Date.now() + 31_000);
    const other = context().register(make());
    const [taken] = await other.recover();
    expect(taken?.runId).toBe(handle.runId);
    await vi.advanceTimersByTimeAsync(27_000);
    await settle();
    expect(calls).toBe(1);
    await vi.advanceTimersByTimeAsync(3_000);
    expect(await taken!.result()).toMatchObject({ status: 'completed', output: 'ok' });
    expect(calls).toBe(2);
  });

  it('fails a run taken over more than maxRecoveries times with WEIR_RECOVERY_LIMIT, and says so in an event', async () => {
    const owner = context();
    const flow = new Flow(new Fn(() => new Promise(() => {})), { name: 'stuck' });
    owner.register(flow);
    const handle = owner.start(flow, {});
    await startedStep(owner, 'stuck');
    await settle();
    vi.setSystemTime(Date.now() + 31_000);
    const other = context({ maxRecoveries: 0 }).register(flow);
    const events: WeirEvent[] = [];
    other.on('event', (e) => events.push(e));
    const [taken] = await other.recover();
    expect(await taken!.result()).toMatchObject({ status: 'failed', error: { code: 'WEIR_RECOVERY_LIMIT' } });
    expect(events.at(-1)).toMatchObject({ type: 'run_failed', error: { code: 'WEIR_RECOVERY_LIMIT' } });
    void handle;
  });

  it('fails a run whose flow graph changed with WEIR_FLOW_CHANGED, unless told to continue', async () => {
    const owner = context();
    const graph = (extra: boolean) => {
      const s = Flow.sequential('pipeline');
      new Flow(new Fn(() => new Promise(() => {})), { name: 'one' }).registerTo(s);
      if (extra) new Flow(new Fn(() => 'two'), { name: 'two' }).registerTo(s);
      return s;
    };
    owner.register(graph(false));
    let starts = 0;
    const bothStarted = deferred();
    owner.on('step_start', () => ++starts === 2 && bothStarted.resolve());
    const first = owner.start(owner.getFlow('pipeline')!, {});
    const second = owner.start(owner.getFlow('pipeline')!, {});
    await bothStarted.promise;
    await flushed();
    vi.setSystemTime(Date.now() + 31_000);
    const strict = context().register(graph(true));
    const handles = await strict.recover();
    expect(handles.map((h) => h.runId).sort()).toEqual([first.runId, second.runId].sort());
    for (const h of handles) expect(await h.result()).toMatchObject({ status: 'failed', error: { code: 'WEIR_FLOW_CHANGED' } });

    const lenient = context({ onFlowChange: 'continue' }).register(graph(true));
    const resumed = await lenient.resume(first.runId, { from: 'one' });
    expect(resumed.runId).toBe(first.runId);
  });
});

describe('heartbeatTimeout', () => {
  beforeEach(() => {
    kind = 'sqlite';
  });

  it('fails an attempt that stops heartbeating with a TimeoutError, retried per its policy', async () => {
    const ctx = context();
    let calls = 0;
    const flow = new Flow(
      new Fn(async (_i, step) => {
        calls++;
        for (let i = 0; i < 5; i++) {
          await new Promise((resolve) => setTimeout(resolve, 1_000));
          // The first attempt goes quiet after two heartbeats.
          if (calls > 1 || i < 2) step.heartbeat({ i });
        }
        return calls;
      }),
      { name: 'beating', heartbeatTimeout: 2_500, retry: { maxAttempts: 2, initialInterval: 10, jitter: 0 } },
    );
    const started = startedStep(ctx, 'beating');
    const running = ctx.run(flow, {});
    await started;
    await vi.advanceTimersByTimeAsync(20_000);
    const result = await running;
    expect(result).toMatchObject({ status: 'completed', output: 2 });
    expect(result.attempts[0]?.error).toMatchObject({ name: 'TimeoutError', retryable: true, message: expect.stringMatching(/no heartbeat for 2500 ms/) });
  });
});
