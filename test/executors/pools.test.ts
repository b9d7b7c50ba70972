import { afterEach, describe, expect, it, vi } from 'vitest';
import { Flow, FlowContext } from '../../src/index.js';
import { Hold, MakeBytes, Multiply, Spin, WhereAmI } from '../fixtures/remote.js';
import { deferred } from '../fixtures/processors.js';

let ctx: FlowContext;
afterEach(() => ctx.close());

// Node 20 has Atomics.waitAsync; the ES2023 lib does not declare it.
const waitAsync = (Atomics as unknown as { waitAsync: (array: Int32Array, index: number, value: number) => { value: Promise<string> | string } }).waitAsync;

function wide(make: (i: number) => Flow<unknown, unknown>, count: number): Flow<unknown, Record<string, unknown>> {
  const root = Flow.parallel('wide');
  for (let i = 0; i < count; i++) make(i).registerTo(root);
  return root;
}

describe('the thread and process pools', () => {
  it('start no worker until a step needs one, and each pool only for its own type', async () => {
    ctx = new FlowContext({ threads: { max: 1 }, processes: { max: 1 } });
    const onThread = new Flow(new Multiply(2), { name: 't', type: 'thread' });
    ctx.register(onThread).register(new Flow(new Multiply(2), { name: 'p', type: 'process' }));
    expect(ctx.workers).toEqual({ threads: 0, processes: 0 });
    await ctx.run(onThread, { n: 1 });
    expect(ctx.workers).toEqual({ threads: 1, processes: 0 });
  });

  it('never run more threads at once than threads.max', async () => {
    ctx = new FlowContext({ threads: { max: 2 } });
    const shared = new Int32Array(new SharedArrayBuffer(12));
    const handle = ctx.start(wide((i) => new Flow(Object.assign(new Hold(), { shared }), { name: `h${i}`, type: 'thread' }), 5), null);
    for (let active = Atomics.load(shared, 0); active < 2; active = Atomics.load(shared, 0)) await waitAsync(shared, 0, active).value;
    Atomics.store(shared, 2, 1);
    Atomics.notify(shared, 2);
    expect((await handle.result()).status).toBe('completed');
    expect(Atomics.load(shared, 1)).toBe(2);
    expect(ctx.workers.threads).toBeLessThanOrEqual(2);
  });

  it('never run more children than processes.max, and reuse them across runs', async () => {
    ctx = new FlowContext({ processes: { max: 2 } });
    const graph = wide((i) => new Flow(new WhereAmI(), { name: `w${i}`, type: 'process' }), 6);
    const first = await ctx.run(graph, null);
    const second = await ctx.run(graph, null);
    const pids = (result: typeof first) => new Set(Object.values(result.output as Record<string, { pid: number }>).map((o) => o.pid));
    expect(pids(first).size).toBeLessThanOrEqual(2);
    expect([...pids(second)].every((pid) => pids(first).has(pid))).toBe(true);
    expect(pids(first).has(process.pid)).toBe(false);
  });

  it('share one thread across runs, and reclaim idle workers after idleTimeout', async () => {
    ctx = new FlowContext({ threads: { max: 1, idleTimeout: 50 }, processes: { max: 1, idleTimeout: 50 } });
    const onThread = new Flow(new WhereAmI(), { name: 't', type: 'thread' });
    const a = await ctx.run(onThread, null);
    const b = await ctx.run(onThread, null);
    expect((a.output as { threadId: number }).threadId).toBe((b.output as { threadId: number }).threadId);
    await ctx.run(new Flow(new WhereAmI(), { name: 'p', type: 'process' }), null);
    await vi.waitFor(() => expect(ctx.workers).toEqual({ threads: 0, processes: 0 }), { timeout: 5_000 });
  });

  it.each(['thread', 'process'] as const)('carry values by structured clone on a %s', async (type) => {
    ctx = new FlowContext({ threads: { max: 1 }, processes: { max: 1 } });
    const input = { when: new Date(0), map: new Map([['k', 1n]]), bytes: new Uint8Array([1, 2, 3]), set: new Set(['a']) };
    const result = await ctx.run(new Flow(new WhereAmI(), { name: 'clone', type }), input);
    expect((result.output as { input: unknown }).input).toEqual(input);
  });

  it.each([
    ['thread', 0],
    ['process', 1024],
  ] as const)('move buffers given to transfer() out of a thread, and copy them out of a process (%s)', async (type, leftBehind) => {
    ctx = new FlowContext({ threads: { max: 1 }, processes: { max: 1 } });
    const flow = new Flow(new MakeBytes(), { name: 'bytes', type });
    const first = await ctx.run(flow, null);
    expect((first.output as { bytes: Uint8Array }).bytes).toEqual(new Uint8Array(1024).fill(7));
    const second = await ctx.run(flow, null);
    expect((second.output as { previousLength: number }).previousLength).toBe(leftBehind);
  });

  it('terminate every worker on close()', async () => {
    ctx = new FlowContext({ threads: { max: 1 }, processes: { max: 1 } });
    const root = Flow.parallel('both');
    new Flow(new WhereAmI(), { name: 't', type: 'thread' }).registerTo(root);
    new Flow(new WhereAmI(), { name: 'p', type: 'process' }).registerTo(root);
    const result = await ctx.run(root, null);
    const pid = (result.output as { p: { pid: number } }).p.pid;
    expect(ctx.workers).toEqual({ threads: 1, processes: 1 });
    await ctx.close();
    expect(ctx.workers).toEqual({ threads: 0, processes: 0 });
    expect(() => process.kill(pid, 0)).toThrow();
  });

  it('stop steps still running when close() gives up waiting, then end every worker', async () => {
    ctx = new FlowContext({ closeTimeout: 0, threads: { max: 1, abortGrace: 20 }, processes: { max: 1, abortGrace: 20 } });
    const root = Flow.parallel('stuck');
    new Flow(new Spin(), { name: 't', type: 'thread' }).registerTo(root);
    new Flow(new Spin(), { name: 'p', type: 'process' }).registerTo(root);
    let spinning = 0;
    const both = deferred();
    ctx.on('step_progress', () => ++spinning === 2 && both.resolve());
    const handle = ctx.start(root, null);
    await both.promise;
    await ctx.close();
    expect((await handle.result()).status).toBe('cancelled');
    expect(ctx.workers).toEqual({ threads: 0, processes: 0 });
  });
});
