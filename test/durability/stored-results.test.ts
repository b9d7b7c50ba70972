import { hostname } from 'node:os';
import { z } from 'zod';
import { describe, expect, it } from 'vitest';
import { FatalError, Flow, FlowContext, ResultsManager, type FlowContextOptions, type Step } from '../../src/index.js';
import { Fn } from '../fixtures/processors.js';
import { sqliteContexts } from '../fixtures/sqlite-contexts.js';
import { nextWaiting } from '../fixtures/waiting.js';

const temp = sqliteContexts('stored-results');

/** ingest (parallel): fetch, enrich (sequential: clean -> tag), report (needs fetch and enrich). */
function ingest(options: { failTag?: boolean } = {}) {
  const root = Flow.parallel('ingest');
  const fetch = new Flow(new Fn(() => ({ body: 'a b c', at: new Date(0) })), { name: 'fetch' }).registerTo(root);
  const enrich = Flow.sequential('enrich').registerTo(root);
  new Flow(new Fn(() => ['a', 'b', 'c']), { name: 'clean' }).registerTo(enrich);
  new Flow(
    new Fn((words) => {
      if (options.failTag === true) throw new FatalError('no tags');
      return new Map((words as string[]).map((w) => [w, w.toUpperCase()]));
    }),
    { name: 'tag' },
  ).registerTo(enrich);
  new Flow(new Fn(async (_input, step: Step) => ({ words: ((await step.deps.get<Map<string, string>>('enrich')) as unknown as { tag: Map<string, string> }).tag.size })), {
    name: 'report',
  }).registerTo(root, { required: [fetch, enrich] });
  return root;
}

const sqlite = (options: FlowContextOptions = {}) => temp.context(options);

describe('a finished run read from a context that does not know its flow', () => {
  it("has the composite's output, assembled from its children's as the running context returned it", async () => {
    const runner = sqlite();
    const live = await runner.run(ingest(), {});
    expect(live.status).toBe('completed');
    const reader = sqlite();
    const stored = await (await reader.handle(live.runId)).result();
    expect(stored.output).toStrictEqual(live.output);
    expect(stored.output).toStrictEqual({
      fetch: { body: 'a b c', at: new Date(0) },
      enrich: { clean: ['a', 'b', 'c'], tag: new Map([['a', 'A'], ['b', 'B'], ['c', 'C']]) },
      report: { words: 3 },
    });
    expect(stored.steps.enrich?.output).toStrictEqual(live.steps.enrich?.output);
    expect(Object.keys(stored.steps).sort()).toEqual(Object.keys(live.steps).sort());
  });

  it("of a failed run, has the completed children's outputs, as the live result does", async () => {
    const runner = sqlite();
    const live = await runner.run(ingest({ failTag: true }), {});
    expect(live.status).toBe('failed');
    const stored = await (await sqlite().handle(live.runId)).result();
    expect(stored.output).toStrictEqual(live.output);
    expect(stored.output).toStrictEqual({ fetch: { body: 'a b c', at: new Date(0) } });
    expect(stored.steps.enrich?.output).toBeUndefined();
  });

  it('of a sequential root, and of a single leaf flow', async () => {
    const runner = sqlite();
    const seq = Flow.sequential('steps');
    new Flow(new Fn(() => 1), { name: 'one' }).registerTo(seq);
    new Flow(new Fn((n) => (n as number) + 1), { name: 'two' }).registerTo(seq);
    const a = await runner.run(seq, {});
    const leaf = await runner.run(new Flow(new Fn(() => ({ ok: true })), { name: 'leaf' }), {});
    const reader = sqlite();
    expect((await (await reader.handle(a.runId)).result()).output).toStrictEqual({ one: 1, two: 2 });
    expect((await (await reader.handle(leaf.runId)).result()).output).toStrictEqual({ ok: true });
  });

  it('of a run that waited for input and went on, in a third context', async () => {
    const runner = sqlite();
    const p = Flow.parallel('ask');
    new Flow(new Fn(async (_i, step: Step) => step.waitForInput('n', z.number())), { name: 'asks' }).registerTo(p);
    new Flow(new Fn(() => 'x'), { name: 'plain' }).registerTo(p);
    runner.register(p);
    const waiting = nextWaiting(runner);
    const handle = runner.start(p, {}, { mode: 'interactive' });
    await waiting;
    await runner.submitInput(handle.runId, 'n', 7);
    const live = await handle.result();
    const stored = await (await sqlite().handle(handle.runId)).result();
    expect(stored.output).toStrictEqual({ asks: 7, plain: 'x' });
    expect(stored.output).toStrictEqual(live.output);
  });

  it('records who ran it: processId is host:pid, as the live result says', async () => {
    const runner = sqlite();
    const live = await runner.run(ingest(), {});
    expect(live.processId).toBe(`${hostname()}:${process.pid}`);
    const stored = await (await sqlite().handle(live.runId)).result();
    expect(stored.processId).toBe(live.processId);
  });

  it('on a memory store, from the same context, also has processId', async () => {
    const ctx = temp.track(new FlowContext({ results: ResultsManager.memory() }));
    const live = await ctx.run(ingest(), {});
    const stored = await (await ctx.handle(live.runId)).result();
    expect(stored.processId).toBe(live.processId);
    expect(stored.output).toStrictEqual(live.output);
  });
});
