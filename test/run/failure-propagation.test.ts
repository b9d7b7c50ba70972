import { afterEach, describe, expect, it } from 'vitest';
import { FatalError, Flow, FlowContext, UpstreamFailedError, fromErrorData } from '../../src/index.js';
import { Fn } from '../fixtures/processors.js';

let ctx: FlowContext;
afterEach(async () => {
  await ctx.close();
});

function boom(message: string): Fn {
  return new Fn(() => {
    throw new FatalError(message, { code: 'E_BOOM' });
  });
}

describe('failure propagation', () => {
  it('skips dependants of a failed required flow and their dependants, naming the failure', async () => {
    ctx = new FlowContext();
    const p = Flow.parallel('p');
    const parse = new Flow(boom('bad bytes'), { name: 'parse' }).registerTo(p);
    const enrich = new Flow(new Fn(() => 'never'), { name: 'enrich' }).registerTo(p, { required: [parse] });
    new Flow(new Fn(() => 'never'), { name: 'report' }).registerTo(p, { required: [enrich] });
    const skipped: string[] = [];
    ctx.on('step_skipped', (e) => skipped.push(e.step));

    const result = await ctx.run(p, {});

    expect(result.status).toBe('failed');
    expect(result.error).toMatchObject({ step: 'parse', code: 'E_BOOM', name: 'FatalError', message: 'bad bytes' });
    expect(result.steps.enrich?.status).toBe('skipped');
    expect(result.steps.report?.status).toBe('skipped');
    expect(skipped).toEqual(['enrich', 'report']);
    for (const name of ['enrich', 'report']) {
      const error = fromErrorData(result.steps[name]!.error!);
      expect(error).toBeInstanceOf(UpstreamFailedError);
      expect((error as UpstreamFailedError).upstream).toBe('parse');
      expect(error.message).toContain('"parse" failed');
    }
  });

  it('bypasses a failed optional dependency: the dependant runs and sees undefined', async () => {
    ctx = new FlowContext();
    const p = Flow.parallel('p');
    new Flow(boom('no enrichment'), { name: 'enrich' }).registerTo(p);
    new Flow(
      new Fn(async (_i, step) => ({ enrich: await step.deps.get('enrich'), all: await step.deps.getAll() })),
      { name: 'report' },
    ).registerTo(p, { optional: ['enrich', 'missing'] });
    const result = await ctx.run(p, {});
    expect(result.steps.report?.status).toBe('completed');
    expect(result.steps.report?.output).toEqual({ enrich: undefined, all: {} });
    expect(result.status).toBe('failed');
    expect(result.error?.step).toBe('enrich');
  });

  it('runs siblings that are not downstream of a failure to the end', async () => {
    ctx = new FlowContext();
    const p = Flow.parallel('p');
    const bad = new Flow(boom('x'), { name: 'bad' }).registerTo(p);
    new Flow(new Fn(() => 'skipped'), { name: 'downstream' }).registerTo(p, { required: [bad] });
    const one = new Flow(new Fn(async () => { await new Promise((r) => setImmediate(r)); return 1; }), { name: 'one' }).registerTo(p);
    new Flow(new Fn(async (_i, step) => ((await step.deps.get<number>('one')) ?? 0) + 1), { name: 'two' }).registerTo(p, { required: [one] });
    const result = await ctx.run(p, {});
    expect(result.status).toBe('failed');
    expect(result.steps.one?.status).toBe('completed');
    expect(result.steps.two?.output).toBe(2);
    expect(result.steps.downstream?.status).toBe('skipped');
    expect(result.output).toEqual({ one: 1, two: 2 });
  });

  it('fails a composite whose child failed and skips the composite’s dependants and children', async () => {
    ctx = new FlowContext();
    const root = Flow.parallel('root');
    const stage = Flow.sequential('stage').registerTo(root);
    new Flow(boom('inner'), { name: 'inner' }).registerTo(stage);
    new Flow(new Fn(() => 1), { name: 'after-inner' }).registerTo(stage);
    const later = Flow.parallel('later').registerTo(root, { required: [stage] });
    new Flow(new Fn(() => 1), { name: 'deep' }).registerTo(later);
    const result = await ctx.run(root, {});
    expect(result.status).toBe('failed');
    expect(result.error?.step).toBe('inner');
    expect(result.steps.stage?.status).toBe('failed');
    expect(result.steps['after-inner']?.status).toBe('skipped');
    expect(result.steps.later?.status).toBe('skipped');
    expect(result.steps.deep?.status).toBe('skipped');
    expect(result.steps.deep?.error?.details).toEqual({ upstream: 'inner' });
  });

  it('records a failed step with its error, attempts and times', async () => {
    ctx = new FlowContext();
    const result = await ctx.run(new Flow(boom('nope'), { name: 'only' }), {});
    const step = result.steps.only!;
    expect(step.status).toBe('failed');
    expect(step.attempts).toHaveLength(1);
    expect(step.attempts[0]).toMatchObject({ attempt: 1, error: { code: 'E_BOOM' } });
    expect(step.endTime).toBeGreaterThanOrEqual(step.startTime!);
    expect(step.error?.stack).toContain('nope');
  });

  it('skips the rest of a 6000-step chain after its first step fails, without overflowing the stack', async () => {
    ctx = new FlowContext();
    const chain = Flow.sequential('chain');
    new Flow(boom('first'), { name: 's0' }).registerTo(chain);
    for (let i = 1; i < 6000; i++) new Flow(new Fn(() => i), { name: `s${i}` }).registerTo(chain);
    const result = await ctx.run(chain, {});
    expect(result.status).toBe('failed');
    expect(result.error).toMatchObject({ step: 's0', code: 'E_BOOM' });
    expect(result.steps.s5999).toMatchObject({ status: 'skipped', error: { code: 'WEIR_UPSTREAM_FAILED' } });
    expect(Object.values(result.steps).filter((s) => s.status === 'skipped')).toHaveLength(5999);
  });
});
