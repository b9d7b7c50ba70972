import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Keyv } from 'keyv';
import { Flow, FlowContext, ResultsManager } from '../../src/index.js';
import { Fn } from '../fixtures/processors.js';

let dir: string;
let ctx: FlowContext;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'weir-deps-'));
});
afterEach(async () => {
  await ctx.close();
  await rm(dir, { recursive: true, force: true });
});

const backends: [string, () => ResultsManager][] = [
  ['memory', () => ResultsManager.memory()],
  ['disk', () => ResultsManager.disk(join(dir, 'results'))],
  ['sqlite', () => ResultsManager.sqlite(join(dir, 'runs.db'))],
];

describe.each(backends)('step outputs through the %s journal', (kind, make) => {
  it('gives dependants the outputs, and stores them with Dates, Maps, Sets, BigInts and Buffers intact', async () => {
    const results = make();
    ctx = new FlowContext({ results });
    const p = Flow.parallel('p');
    const produced = {
      at: new Date('2026-01-02T03:04:05Z'),
      tags: new Map([['a', 1]]),
      seen: new Set(['x']),
      big: 2n ** 70n,
      bytes: Buffer.from('weir'),
      nested: { list: [1, { deep: true }] },
    };
    const make1 = new Flow(new Fn(() => produced), { name: 'make' }).registerTo(p);
    new Flow(new Fn(() => 'other'), { name: 'other' }).registerTo(p);
    new Flow(
      new Fn(async (_i, step) => ({ one: await step.deps.get(make1), all: await step.deps.getAll() })),
      { name: 'use' },
    ).registerTo(p, { required: [make1, 'other'] });

    const result = await ctx.run(p, {});

    expect(result.status).toBe('completed');
    const seen = result.steps.use?.output as { one: typeof produced; all: Record<string, unknown> };
    expect(seen.one).toEqual(produced);
    expect(seen.one.at).toBeInstanceOf(Date);
    expect(seen.one.tags).toBeInstanceOf(Map);
    expect(Buffer.isBuffer(seen.one.bytes)).toBe(true);
    expect(seen.all).toEqual({ make: produced, other: 'other' });
    ctx.register(p);
    const stored = await (await ctx.handle(result.runId)).result();
    expect(stored.steps.make?.output).toEqual(produced);
    expect(stored.output).toEqual(result.output);
    if (kind !== 'memory') expect(stored.steps.make?.output).not.toBe(produced);
  });
});

describe('a store that fails', () => {
  it('fails the step whose output could not be stored, and never starts its dependants', async () => {
    const results = ResultsManager.memory();
    ctx = new FlowContext({ results });
    const s = Flow.sequential('s');
    new Flow(new Fn(async () => { await results.close(); return 'computed'; }), { name: 'first' }).registerTo(s);
    let secondRan = false;
    new Flow(new Fn(() => { secondRan = true; }), { name: 'second' }).registerTo(s);
    const result = await ctx.run(s, {});
    expect(result.status).toBe('failed');
    expect(result.error).toMatchObject({ step: 'first', code: 'WEIR_STORE_CLOSED' });
    expect(result.steps.second?.status).toBe('skipped');
    expect(secondRan).toBe(false);
  });

  it('retries a step whose output write failed in the backend, per its retry policy', async () => {
    let failures = 1;
    class FlakyStore extends Map<string, unknown> {
      override set(key: string, value: unknown): this {
        // The step record with its output: the write a completion needs.
        if (key.includes('/step/') && failures-- > 0) throw new Error('database is locked');
        return super.set(key, value);
      }
    }
    ctx = new FlowContext({ results: ResultsManager.keyv(new Keyv({ store: new FlakyStore(), throwOnErrors: true })) });
    let calls = 0;
    const flow = new Flow(new Fn(() => ++calls), { name: 'write', retry: { maxAttempts: 2, initialInterval: 0 } });
    const result = await ctx.run(flow, {});
    expect(result.status).toBe('completed');
    expect(result.output).toBe(2);
    expect(result.attempts[0]!.error).toMatchObject({ code: 'WEIR_STORE', retryable: true, cause: { message: 'database is locked' } });
  });
});
