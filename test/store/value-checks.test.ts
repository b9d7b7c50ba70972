import { z } from 'zod';
import { describe, expect, it } from 'vitest';
import { FatalError, Flow, FlowContext, ResultsManager, type FlowContextOptions } from '../../src/index.js';
import { Fn } from '../fixtures/processors.js';
import { sqliteContexts } from '../fixtures/sqlite-contexts.js';
import { nextWaiting } from '../fixtures/waiting.js';

const temp = sqliteContexts('value-checks');

// The memory store must fail exactly where the durable default would, so tests on memory catch it.
const stores: { name: string; context: (options?: FlowContextOptions) => FlowContext }[] = [
  { name: 'memory', context: (options = {}) => temp.track(new FlowContext({ results: ResultsManager.memory(), ...options })) },
  { name: 'sqlite', context: (options = {}) => temp.context(options) },
];

describe.each(stores)('values a store cannot keep ($name store)', ({ context }) => {
  it('fail the step whose output holds a function, naming where it is, and keep its siblings’ outputs', async () => {
    const ctx = context();
    const p = Flow.parallel('mixed');
    new Flow(new Fn(() => ({ ok: 1 })), { name: 'fine' }).registerTo(p);
    new Flow(new Fn(() => ({ nested: { callback: () => 1 } })), { name: 'unstorable' }).registerTo(p);
    const result = await ctx.run(p, {});
    expect(result.status).toBe('failed');
    expect(result.error).toMatchObject({ step: 'unstorable', code: 'WEIR_SERIALIZATION', message: expect.stringContaining('a function at .nested.callback') });
    expect(result.steps.fine).toMatchObject({ status: 'completed', output: { ok: 1 } });
    expect(result.steps.unstorable?.status).toBe('failed');
  });

  it('fail the step whose output holds a symbol', async () => {
    const ctx = context();
    const result = await ctx.run(new Flow(new Fn(() => ({ tags: [Symbol('x')] })), { name: 'symbolic' }), {});
    expect(result).toMatchObject({ status: 'failed', error: { code: 'WEIR_SERIALIZATION', message: expect.stringContaining('a symbol at .tags[0]') } });
  });

  it('fail a run whose input holds a function before any step runs', async () => {
    const ctx = context();
    let ran = false;
    const result = await ctx.run(new Flow(new Fn(() => (ran = true)), { name: 'never' }), { callback: () => 1 });
    expect(result).toMatchObject({ status: 'failed', error: { code: 'WEIR_SERIALIZATION' } });
    expect(ran).toBe(false);
  });

  it('fail the step whose heartbeat details hold a function, at the heartbeat', async () => {
    const ctx = context();
    const flow = new Flow(new Fn((_i, step) => {
      step.heartbeat({ callback: () => 1 });
      return 'unreached';
    }), { name: 'beats' });
    const result = await ctx.run(flow, {});
    expect(result).toMatchObject({ status: 'failed', error: { code: 'WEIR_SERIALIZATION', message: expect.stringContaining('"heartbeat details of flow beats" cannot be serialised: a function at .callback') } });
  });

  it('refuse an answer to a wait that holds a function, and keep waiting', async () => {
    const ctx = context();
    const flow = new Flow(new Fn((_i, step) => step.waitForInput('approval', z.any())), { name: 'asks' });
    const waiting = nextWaiting(ctx);
    const handle = ctx.start(flow, {}, { mode: 'interactive' });
    await waiting;
    await expect(ctx.submitInput(handle.runId, 'approval', { callback: () => 1 })).rejects.toMatchObject({ code: 'WEIR_SERIALIZATION' });
    await ctx.submitInput(handle.runId, 'approval', 'yes');
    await expect(handle.result()).resolves.toMatchObject({ status: 'completed', output: 'yes' });
  });

  it('refuse an output given to skip that holds a function, leaving the run as it was', async () => {
    const ctx = context();
    const s = Flow.sequential('chain');
    new Flow(new Fn(() => {
      throw new FatalError('no');
    }), { name: 'a' }).registerTo(s);
    new Flow(new Fn((input) => input), { name: 'b' }).registerTo(s);
    ctx.register(s);
    const failed = await ctx.run(s, {});
    await expect(ctx.skip(failed.runId, 'a', { callback: () => 1 })).rejects.toMatchObject({ code: 'WEIR_SERIALIZATION', message: expect.stringContaining('a function at .callback') });
    expect(await ctx.getRun(failed.runId)).toMatchObject({ status: 'failed', steps: { a: { status: 'failed' } } });
  });

  it('refuse a value holding a function in ResultsManager.set', async () => {
    const ctx = context();
    await expect(ctx.results.set('k', { callback: () => 1 })).rejects.toMatchObject({ code: 'WEIR_SERIALIZATION', message: expect.stringContaining('a function at .callback') });
    await expect(ctx.results.has('k')).resolves.toBe(false);
  });
});

describe('ResultsManager.memory({ checkSerializable: false })', () => {
  it('keeps any value, by reference, as before', async () => {
    const results = ResultsManager.memory({ checkSerializable: false });
    const ctx = temp.track(new FlowContext({ results }));
    const output = { callback: () => 1, tag: Symbol('t') };
    const result = await ctx.run(new Flow(new Fn(() => output), { name: 'lenient' }), {});
    expect(result.status).toBe('completed');
    expect(result.output).toBe(output);
    await results.set('k', output);
    await expect(results.get('k')).resolves.toBe(output);
  });

  it('refuses a checkSerializable that is not a boolean', () => {
    expect(() => ResultsManager.memory({ checkSerializable: 'yes' as never })).toThrow(expect.objectContaining({ code: 'WEIR_INVALID_OPTIONS', message: expect.stringContaining('checkSerializable') }));
  });
});
