import { afterEach, describe, expect, it } from 'vitest';
import { FatalError, Flow, FlowContext, ResultsManager, type WeirEvent } from '../../src/index.js';
import { Fn } from '../fixtures/processors.js';
import { sqliteContexts } from '../fixtures/sqlite-contexts.js';

const temp = sqliteContexts('allow-failure');
let ctx: FlowContext;
afterEach(async () => {
  await ctx?.close();
});

function boom(message: string): Fn {
  return new Fn(() => {
    throw new FatalError(message, { code: 'E_BOOM' });
  });
}

/** fetch; enrich (may fail, and does); report needs fetch and reads enrich optionally. */
function report(enrichConfig: { allowFailure?: boolean } = {}) {
  const p = Flow.parallel('report-run');
  const fetch = new Flow(new Fn(() => 'data'), { name: 'fetch' }).registerTo(p);
  const enrich = new Flow(boom('enrichment service down'), { name: 'enrich', ...enrichConfig }).registerTo(p);
  new Flow(new Fn(async (_i, step) => ({ enriched: (await step.deps.get(enrich)) ?? null })), { name: 'report' }).registerTo(p, { required: [fetch], optional: [enrich] });
  return p;
}

describe('a failed optional step', () => {
  it('fails the run by default, once its dependants ran', async () => {
    ctx = new FlowContext();
    const result = await ctx.run(report(), {});
    expect(result.status).toBe('failed');
    expect(result.error).toMatchObject({ step: 'enrich', message: 'enrichment service down' });
    expect(result.steps.report).toMatchObject({ status: 'completed', output: { enriched: null } });
  });

  it('leaves the run completed with allowFailure, its error recorded on the step', async () => {
    ctx = new FlowContext();
    const events: WeirEvent[] = [];
    ctx.on('event', (e) => events.push(e));
    const result = await ctx.run(report({ allowFailure: true }), {});
    expect(result.status).toBe('completed');
    expect(result.error).toBeUndefined();
    expect(result.steps.enrich).toMatchObject({ status: 'failed', error: { message: 'enrichment service down', code: 'E_BOOM' } });
    expect(result.output).toStrictEqual({ fetch: 'data', report: { enriched: null } });
    expect(events.map((e) => e.type)).toContain('step_failed');
    expect(events.at(-1)).toMatchObject({ type: 'run_complete' });
  });

  it('skips what requires it, and those skips fail nothing either', async () => {
    ctx = new FlowContext();
    const p = Flow.parallel('p');
    const a = new Flow(boom('a failed'), { name: 'a', allowFailure: true }).registerTo(p);
    const b = new Flow(new Fn(() => 'b'), { name: 'b' }).registerTo(p, { required: [a] });
    new Flow(new Fn(() => 'c'), { name: 'c' }).registerTo(p, { required: [b] });
    new Flow(new Fn(() => 'd'), { name: 'd' }).registerTo(p);
    const result = await ctx.run(p, {});
    expect(result.status).toBe('completed');
    expect(result.steps.a?.status).toBe('failed');
    expect(result.steps.b?.status).toBe('skipped');
    expect(result.steps.c?.status).toBe('skipped');
    expect(result.output).toStrictEqual({ d: 'd' });
  });

  it('in a sequential composite, ends the sequence there without failing it', async () => {
    ctx = new FlowContext();
    const s = Flow.sequential('s');
    new Flow(new Fn(() => 1), { name: 'one' }).registerTo(s);
    new Flow(boom('two failed'), { name: 'two', allowFailure: true }).registerTo(s);
    new Flow(new Fn(() => 3), { name: 'three' }).registerTo(s);
    const result = await ctx.run(s, {});
    expect(result.status).toBe('completed');
    expect(result.steps.three?.status).toBe('skipped');
    expect(result.output).toStrictEqual({ one: 1 });
  });

  it('a composite that allows failure spares its parent, and a failure elsewhere still fails the run with its own error', async () => {
    ctx = new FlowContext();
    const root = Flow.parallel('root');
    const extras = Flow.parallel('extras', { allowFailure: true }).registerTo(root);
    new Flow(boom('extra failed'), { name: 'extra' }).registerTo(extras);
    new Flow(new Fn(() => 'main'), { name: 'main' }).registerTo(root, { required: [] });
    const ok = await ctx.run(root, {});
    expect(ok.status).toBe('completed');
    expect(ok.steps.extras?.status).toBe('failed');
    expect(ok.steps.extra?.status).toBe('failed');

    const root2 = Flow.parallel('root2');
    const extras2 = Flow.parallel('extras2', { allowFailure: true }).registerTo(root2);
    new Flow(boom('extra failed'), { name: 'extra2' }).registerTo(extras2);
    // Fails after the tolerated one did: the run's error is this one's, not the first failure's.
    new Flow(
      new Fn(async (_i, step) => {
        await step.deps.get('extras2');
        throw new FatalError('main failed');
      }),
      { name: 'main2' },
    ).registerTo(root2, { optional: [extras2] });
    const failed = await ctx.run(root2, {});
    expect(failed.status).toBe('failed');
    expect(failed.error).toMatchObject({ step: 'main2', message: 'main failed' });
  });

  it('is refused when not a boolean', () => {
    ctx = new FlowContext();
    expect(() => new Flow(new Fn(() => 1), { name: 'x', allowFailure: 'yes' as unknown as boolean })).toThrow(expect.objectContaining({ code: 'WEIR_INVALID_CONFIG', message: expect.stringContaining('allowFailure') }));
  });

  it('is kept in the store: a context that does not load the flow reads the run as completed', async () => {
    ctx = temp.context();
    const result = await ctx.run(report({ allowFailure: true }), {});
    expect(result.status).toBe('completed');
    const reader = temp.track(new FlowContext({ results: ResultsManager.sqlite(temp.file()) }));
    const stored = await (await reader.handle(result.runId)).result();
    expect(stored.status).toBe('completed');
    expect(stored.steps.enrich).toMatchObject({ status: 'failed' });
    expect(stored.output).toStrictEqual(result.output);
  });
});
