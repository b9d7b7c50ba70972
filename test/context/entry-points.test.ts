import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { Flow, FlowContext } from '../../src/index.js';
import { AddOne, deferred, Fn } from '../fixtures/processors.js';

const run = promisify(execFile);
let ctx: FlowContext | undefined;
afterEach(async () => {
  await ctx?.close();
  ctx = undefined;
});

describe('context entry points', () => {
  it('registers a flow by name and refuses a different flow under the same name', () => {
    ctx = new FlowContext();
    const a = new Flow(new AddOne(), { name: 'job' });
    ctx.register(a).register(a);
    expect(ctx.getFlow('job')).toBe(a);
    expect(() => ctx!.register(new Flow(new AddOne(), { name: 'job' }))).toThrow(expect.objectContaining({ code: 'WEIR_DUPLICATE_NAME' }));
  });

  it('runs a flow to a FlowResult that carries the run’s identity and times', async () => {
    ctx = new FlowContext();
    const result = await ctx.run(new Flow(new AddOne(), { name: 'add' }), { n: 1 }, { runId: 'order-42' });
    expect(result).toMatchObject({ runId: 'order-42', name: 'add', status: 'completed', output: { n: 2 }, error: undefined });
    expect(result.processId).toBe(`${(await import('node:os')).hostname()}:${process.pid}`);
    expect(result.endTime).toBeGreaterThanOrEqual(result.startTime);
    expect(result.attempts).toHaveLength(1);
    expect(result.steps.add?.output).toEqual({ n: 2 });
  });

  it('starts a run and hands back its runId at once and its result later', async () => {
    ctx = new FlowContext();
    const gate = deferred();
    const handle = ctx.start(new Flow(new Fn(async () => { await gate.promise; return 'done'; }), { name: 'wait' }), {});
    expect(handle.runId).toMatch(/^[0-9a-f-]{36}$/);
    expect(ctx.activeRuns).toBe(1);
    gate.resolve();
    expect((await handle.result()).output).toBe('done');
    expect(ctx.activeRuns).toBe(0);
  });

  it('gives the running run for a repeated runId with the same flow and input, refuses another input, and bad run options', async () => {
    ctx = new FlowContext();
    const gate = deferred();
    const flow = new Flow(new Fn(() => gate.promise), { name: 'wait' });
    const first = ctx.start(flow, { n: 1 }, { runId: 'r1' });
    const again = ctx.start(flow, { n: 1 }, { runId: 'r1' });
    expect(again.runId).toBe('r1');
    expect(() => ctx!.start(flow, { n: 2 }, { runId: 'r1' })).toThrow(expect.objectContaining({ code: 'WEIR_RUN_CONFLICT' }));
    expect(() => ctx!.start(flow, {}, { timeout: -1 })).toThrow(expect.objectContaining({ code: 'WEIR_INVALID_OPTIONS' }));
    expect(() => ctx!.start(flow, {}, { mode: 'sometimes' as 'batch' })).toThrow(/mode/);
    await expect(ctx.run(flow, {}, { bogus: 1 } as never)).rejects.toMatchObject({ code: 'WEIR_INVALID_OPTIONS' });
    gate.resolve();
    const [a, b] = await Promise.all([first.result(), again.result()]);
    expect(b).toBe(a);
  });

  it('rejects bad context options with the option named', () => {
    expect(() => new FlowContext({ concurrency: 0 })).toThrow(/new FlowContext\(\): concurrency/);
    expect(() => new FlowContext({ results: {} as never })).toThrow(/expected a ResultsManager/);
  });

  it('executes one flow on the process-wide default context', async () => {
    const result = await new Flow(new AddOne(), { name: 'solo' }).execute({ n: 41 });
    expect(result.output).toEqual({ n: 42 });
    expect(FlowContext.getInstance()).toBe(FlowContext.getInstance());
    await FlowContext.getInstance().close();
    expect(FlowContext.getInstance().state).toBe('open');
  });

  it('refuses new runs once closed, and closes idempotently', async () => {
    ctx = new FlowContext();
    const closing = ctx.close();
    expect(ctx.state).toBe('closing');
    await Promise.all([closing, ctx.close()]);
    expect(ctx.state).toBe('closed');
    expect(() => ctx!.start(new Flow(new AddOne(), { name: 'x' }), { n: 1 })).toThrow(expect.objectContaining({ code: 'WEIR_CONTEXT_CLOSED' }));
  });

  it('closes through Symbol.asyncDispose', async () => {
    const disposable = new FlowContext();
    await disposable[Symbol.asyncDispose]();
    expect(disposable.state).toBe('closed');
  });

  it('follows a running run’s events by runId from the context', async () => {
    ctx = new FlowContext();
    const gate = deferred();
    const handle = ctx.start(new Flow(new Fn(() => gate.promise), { name: 'wait' }), {});
    const seen: string[] = [];
    const following = (async () => {
      for await (const event of ctx.events(handle.runId, { after: 1 })) seen.push(event.type);
    })();
    gate.resolve();
    await following;
    expect(seen).toEqual(['step_start', 'step_complete', 'run_complete']);
    await expect(ctx.events('unknown')[Symbol.asyncIterator]().next()).rejects.toMatchObject({ code: 'WEIR_RUN_NOT_FOUND' });
  });

  it('cancels runs that outlast the close timeout', async () => {
    ctx = new FlowContext({ closeTimeout: 0 });
    const handle = ctx.start(new Flow(new Fn((_i, step) => new Promise((_r, reject) => step.signal.addEventListener('abort', () => reject(new Error('stopped'))))), { name: 'hang' }), {});
    await ctx.close();
    expect((await handle.result()).status).toBe('cancelled');
  });

  it('awaits active runs when closing within the close timeout', async () => {
    ctx = new FlowContext();
    const gate = deferred();
    const handle = ctx.start(new Flow(new Fn(async () => { await gate.promise; return 'finished'; }), { name: 'slow' }), {});
    const closed = ctx.close();
    gate.resolve();
    await closed;
    expect((await handle.result()).output).toBe('finished');
  });

  it.each(['memory', 'disk', 'sqlite'])('lets the process exit by itself after close() with %s results', async (backend) => {
    const dir = await mkdtemp(join(tmpdir(), 'weir-exit-'));
    try {
      const program = join(import.meta.dirname, '../fixtures/programs/close-exits.ts');
      const { stdout } = await run(process.execPath, ['--import', 'tsx', program, backend, dir], { timeout: 15_000 });
      expect(JSON.parse(stdout)).toEqual({ status: 'completed', output: { one: { n: 2 }, two: { n: 4 } }, single: { n: 10 } });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it.each([
    ['memory', 0, 'cancelled'],
    ['memory', 50, 'cancelled'],
    ['sqlite', 0, 'running'],
  ])('finishes close() over a step that never ends and holds nothing open (%s results, closeTimeout %i)', async (backend, closeTimeout, status) => {
    const dir = await mkdtemp(join(tmpdir(), 'weir-exit-'));
    try {
      const program = join(import.meta.dirname, '../fixtures/programs/close-hanging-step.ts');
      const { stdout } = await run(process.execPath, ['--import', 'tsx', program, backend, dir, String(closeTimeout)], { timeout: 15_000 });
      expect(JSON.parse(stdout)).toEqual({ state: 'closed', status });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('records each step’s output in the journal before its dependants start', async () => {
    ctx = new FlowContext();
    const s = Flow.sequential('s');
    new Flow(new AddOne(), { name: 'first' }).registerTo(s);
    let seen: unknown;
    new Flow(new Fn(async (_i, step) => { seen = await ctx!.getRun(step.runId); }), { name: 'second' }).registerTo(s);
    ctx.register(s);
    const result = await ctx.run(s, { n: 1 });
    expect(seen).toMatchObject({ status: 'running', running: ['second'], progress: { done: 1, total: 2 }, steps: { first: { status: 'completed' } } });
    const stored = await (await ctx.handle(result.runId)).result();
    expect(stored.steps.first?.output).toEqual({ n: 2 });
  });
});
