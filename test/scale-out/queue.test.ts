import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCode, Flow, FlowContext, FlowError, ResultsManager, type FlowContextOptions, type WeirEvent } from '../../src/index.js';
import { runStoreOf } from '../../src/results/results-manager.js';
import { HOST } from '../../src/util/host.js';
import { AddOne, deferred, Fn } from '../fixtures/processors.js';
import { postgresUrl, testDatabase } from '../support/postgres.js';

// ctx.enqueue stores a run that any worker context (recover: true) on the store takes: the same
// behaviour on every store; on Postgres the claims are batched and exact across processes.

let pg: { url: string; drop(): Promise<void> } = { url: '', drop: async () => undefined };
let schemas = 0;
let dir = '';
const withPostgres = postgresUrl() !== '';
if (!withPostgres) console.warn('weir tests: the queue runs without its Postgres cases (WEIR_TEST_SKIP_POSTGRES=1)');

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'weir-queue-'));
  if (withPostgres) pg = await testDatabase();
});

afterAll(async () => {
  await pg.drop();
  await rm(dir, { recursive: true, force: true });
});

const contexts: FlowContext[] = [];
afterEach(async () => {
  await Promise.all(contexts.splice(0).map((c) => c.close()));
});

describe('ctx.enqueue options', () => {
  it('refuses bad options with WEIR_INVALID_OPTIONS naming each, and stores nothing', async () => {
    const ctx = new FlowContext();
    contexts.push(ctx);
    const add = new Flow(new AddOne(), { name: 'add' });
    ctx.register(add);
    const error = (await ctx.enqueue(add, { n: 1 }, { priority: 1.5, concurrencyKey: '', runId: 'a/b' }).catch((e: unknown) => e)) as FlowError;
    expect(error.code).toBe(ErrorCode.INVALID_OPTIONS);
    expect(error.message).toMatch(/priority/);
    expect(error.message).toMatch(/concurrencyKey/);
    expect(error.message).toMatch(/runId/);
    const hybrid = (await ctx.enqueue(add, { n: 1 }, { humanInLoop: false }).catch((e: unknown) => e)) as FlowError;
    expect(hybrid.code).toBe(ErrorCode.INVALID_OPTIONS);
    expect((await ctx.listRuns()).runs).toEqual([]);
  });

  it("refuses a flow's bad version and limits when it is made", () => {
    expect(() => new Flow(new AddOne(), { name: 'v', version: '' })).toThrow(/version/);
    expect(() => new Flow(new AddOne(), { name: 'c', concurrency: 0 })).toThrow(/concurrency: expected a whole number >= 1/);
    expect(() => new Flow(new AddOne(), { name: 'k', keyConcurrency: 2.5 })).toThrow(/keyConcurrency/);
  });

  it('runs a queued run on the memory store in a worker context of the same store', async () => {
    const ctx = new FlowContext({ recover: true, queue: { pollInterval: 20 } });
    contexts.push(ctx);
    const add = new Flow(new AddOne(), { name: 'add' });
    ctx.register(add);
    const handle = await ctx.enqueue(add, { n: 9 }, { priority: 3 });
    expect((await handle.result()).output).toEqual({ n: 10 });
  });
});

/** A store maker per kind: each call of `results()` in one test opens the same store again. */
const stores = [
  { kind: 'sqlite', shared: () => { const file = join(dir, `q${++schemas}.db`); return () => ResultsManager.sqlite(file); } },
  { kind: 'postgres', shared: () => { const schema = `queue_${++schemas}`; return () => ResultsManager.postgres(pg.url, { schema }); } },
] as const;

describe.each(stores.filter((s) => s.kind !== 'postgres' || withPostgres))('ctx.enqueue ($kind)', ({ kind, shared }) => {
  function contextOn(results: () => ResultsManager, options: FlowContextOptions = {}): FlowContext {
    const ctx = new FlowContext({ results: results(), leaseTimeout: 2000, queue: { pollInterval: 50 }, ...options });
    contexts.push(ctx);
    return ctx;
  }

  it('stores a pending run that a worker on the same store takes and runs to its end', async () => {
    const results = shared();
    const add = new Flow(new AddOne(), { name: 'add' });
    const client = contextOn(results).register(add);
    const handle = await client.enqueue(add, { n: 1 }, { runId: 'q1' });
    expect(handle.runId).toBe('q1');
    expect((await client.getRun('q1'))?.status).toBe('pending');
    const worker = contextOn(results, { recover: true }).register(add);
    const result = await handle.result();
    expect(result.status).toBe('completed');
    expect(result.output).toEqual({ n: 2 });
    const events = [];
    for await (const e of worker.events('q1')) events.push(e);
    expect(events.map((e) => e.type)).toEqual(['run_start', 'step_start', 'step_complete', 'run_complete']);
    expect(events.map((e) => e.seq)).toEqual([1, 2, 3, 4]);
  });

  it('refuses a runId that exists with WEIR_RUN_CONFLICT', async () => {
    const results = shared();
    const add = new Flow(new AddOne(), { name: 'add' });
    const client = contextOn(results).register(add);
    await client.enqueue(add, { n: 1 }, { runId: 'same' });
    const error = await client.enqueue(add, { n: 2 }, { runId: 'same' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(FlowError);
    expect((error as FlowError).code).toBe(ErrorCode.RUN_CONFLICT);
  });

  it('takes higher priority first, then the oldest', async () => {
    const results = shared();
    const order: string[] = [];
    const step = new Flow(new Fn((input) => void order.push((input as { id: string }).id)), { name: 'step' });
    const client = contextOn(results).register(step);
    const handles = [];
    for (const [id, priority] of [['low', -1], ['a', 0], ['urgent', 5], ['b', 0], ['high', 1]] as const) {
      handles.push(await client.enqueue(step, { id }, { runId: id, priority }));
    }
    // One at a time, so the order is the order of taking.
    contextOn(results, { recover: true, queue: { concurrency: 1, pollInterval: 50 } }).register(step);
    await Promise.all(handles.map((h) => h.result()));
    expect(order).toEqual(['urgent', 'high', 'a', 'b', 'low']);
  });

  // On Postgres the claims that count the limits are serialised across every process; elsewhere each context counts its own runs.
  const workers = kind === 'postgres' ? 2 : 1;
  it(`holds a flow's concurrency and keyConcurrency across ${workers} worker(s)`, async () => {
    const results = shared();
    let running = 0;
    let most = 0;
    const perKey = new Map<string, number>();
    let mostPerKey = 0;
    const step = new Flow(
      new Fn(async (input) => {
        const key = (input as { key: string }).key;
        running += 1;
        perKey.set(key, (perKey.get(key) ?? 0) + 1);
        most = Math.max(most, running);
        mostPerKey = Math.max(mostPerKey, perKey.get(key)!);
        await new Promise((resolve) => setTimeout(resolve, 20));
        running -= 1;
        perKey.set(key, perKey.get(key)! - 1);
      }),
      { name: 'limited', concurrency: 3, keyConcurrency: 1 },
    );
    const client = contextOn(results).register(step);
    const handles = [];
    for (let i = 0; i < 12; i++) handles.push(await client.enqueue(step, { key: `k${i % 4}` }, { concurrencyKey: `k${i % 4}` }));
    for (let i = 0; i < workers; i++) contextOn(results, { recover: true, queue: { pollInterval: 20 } }).register(step);
    const done = await Promise.all(handles.map((h) => h.result()));
    expect(done.every((r) => r.status === 'completed')).toBe(true);
    expect(most).toBeLessThanOrEqual(3);
    expect(mostPerKey).toBe(1);
  });

  it('leaves a run of another version to a worker that has it, and lists it as stranded while none does', async () => {
    const results = shared();
    const v1 = new Flow(new AddOne(), { name: 'versioned', version: '1' });
    const v2 = new Flow(new AddOne(), { name: 'versioned', version: '2' });
    const client = contextOn(results).register(v1);
    const handle = await client.enqueue(v1, { n: 1 }, { runId: 'old' });
    const newWorker = contextOn(results, { recover: true }).register(v2);
    // The new worker looked (it polls every 50 ms) and left it.
    await newWorker.recover();
    expect((await client.getRun('old'))?.status).toBe('pending');
    const stranded = await newWorker.listRuns({ stranded: true });
    expect(stranded.runs.map((r) => [r.runId, r.version])).toEqual([['old', '1']]);
    contextOn(results, { recover: true }).register(v1);
    expect((await handle.result()).output).toEqual({ n: 2 });
    expect((await newWorker.listRuns({ stranded: true })).runs).toEqual([]);
  });

  /**
   * Enqueues a run, writes what a worker's take writes (the lease, then status running under it) for
   * `owner`, a worker now lost, and lets a worker context take it over: returns the events it logged.
   */
  async function takenOverFrom(owner: { processId: string; host: string; pid: number }, leaseMs: number, leaseFrom: number): Promise<WeirEvent[]> {
    const results = shared();
    const add = new Flow(new AddOne(), { name: 'add' });
    const client = contextOn(results).register(add);
    const handle = await client.enqueue(add, { n: 1 }, { runId: 'orphan' });
    const direct = results();
    const store = runStoreOf(direct);
    const queued = (await store.loadRun('orphan'))!.run;
    const token = (await store.acquireLease('orphan', owner, leaseMs, leaseFrom, { ifToken: queued.leaseToken }))!;
    await store.commit({ runId: 'orphan', leaseToken: token, run: { status: 'running', updatedAt: Date.now() } });
    await direct.close();
    const worker = contextOn(results, { recover: true }).register(add);
    expect(await handle.result()).toMatchObject({ status: 'completed', output: { n: 2 } });
    const events: WeirEvent[] = [];
    for await (const e of worker.events('orphan')) events.push(e);
    return events;
  }

  it('begins the log of a queued run whose worker died after taking it and before it stored an event: run_start, then run_resumed', async () => {
    // A process now gone, on this host: its death is seen at once.
    const gone = spawnSync(process.execPath, ['-e', '']).pid;
    const events = await takenOverFrom({ processId: `${HOST}:${gone}:1`, host: HOST, pid: gone }, 60_000, Date.now());
    expect(events.map((e) => e.type)).toEqual(['run_start', 'run_resumed', 'step_start', 'step_complete', 'run_complete']);
    expect(events.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5]);
    expect(events[1]).toMatchObject({ reason: 'recovered', recoveries: 1 });
  });

  it('takes over a queued run whose worker on another host was lost after taking it, once its lease ran out: run_start, then run_resumed', async () => {
    // A worker on a host of its own (its process cannot be seen), whose lease has run out.
    const events = await takenOverFrom({ processId: 'elsewhere:4242:1', host: 'elsewhere', pid: 4242 }, 1, Date.now() - 1000);
    expect(events.map((e) => e.type)).toEqual(['run_start', 'run_resumed', 'step_start', 'step_complete', 'run_complete']);
    expect(events[1]).toMatchObject({ reason: 'recovered', recoveries: 1 });
  });

  it('does not take queued runs in a context that does not recover, nor in a closed one', async () => {
    const results = shared();
    const gate = deferred();
    const add = new Flow(new Fn(() => gate.promise), { name: 'gated' });
    const client = contextOn(results).register(add);
    await client.enqueue(add, null, { runId: 'waits' });
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect((await client.getRun('waits'))?.status).toBe('pending');
    await client.close();
    await expect(client.enqueue(add, null)).rejects.toMatchObject({ code: ErrorCode.CONTEXT_CLOSED });
    gate.resolve();
  });
});
