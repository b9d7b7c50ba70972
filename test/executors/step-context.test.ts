import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode, Flow, FlowContext, type LeafType, type WeirEvent } from '../../src/index.js';
import { Ask, Fields, Inspect, Multiply } from '../fixtures/remote.js';

let ctx: FlowContext;
afterEach(() => ctx.close());

function probeGraph(type: LeafType): Flow<unknown, Record<string, unknown>> {
  const root = Flow.parallel('root');
  const first = new Flow(new Multiply(2), { name: 'first', type }).registerTo(root);
  new Flow(new Inspect(), { name: 'probe', type }).registerTo(root, { required: [first], optional: ['maybe'] });
  return root;
}

describe.each(['thread', 'process'] as const)('the step context on a %s', (type) => {
  it('gives the processor its input, dependencies, attempt, runId and idempotency key, as inline does', async () => {
    ctx = new FlowContext({ threads: { max: 1 }, processes: { max: 1 } });
    const remote = await ctx.run(probeGraph(type), { n: 5 });
    const inline = await ctx.run(probeGraph('inline'), { n: 5 });
    expect(remote.status).toBe('completed');
    const probe = (remote.output as { probe: Record<string, unknown> }).probe;
    expect(probe).toMatchObject({
      input: { n: 5 },
      name: 'probe',
      runId: remote.runId,
      attempt: 1,
      idempotencyKey: `${remote.runId}:probe`,
      aborted: false,
      dep: { n: 10 },
      absent: undefined,
      all: { first: { n: 10 } },
      unknownDep: { name: 'DependencyError', code: ErrorCode.DEPENDENCY },
    });
    const local = (inline.output as { probe: Record<string, unknown> }).probe;
    expect(probe.unknownDep).toEqual(local.unknownDep);
    if (type === 'thread') expect(probe.threadId).not.toBe(0);
    else expect(probe.pid).not.toBe(process.pid);
  });

  it('gives each flow its own processor fields, never those of another flow of the same class', async () => {
    ctx = new FlowContext({ threads: { max: 1 }, processes: { max: 1 } });
    const chain = Flow.sequential('chain');
    new Flow(Object.assign(new Fields(), { label: 'a', size: 3 }), { name: 'labelled', type }).registerTo(chain);
    new Flow(new Fields(), { name: 'plain', type }).registerTo(chain);
    new Flow(Object.assign(new Fields(), { size: 4 }), { name: 'sized', type }).registerTo(chain);
    const result = await ctx.run(chain, null);
    expect(result.output).toEqual({ labelled: ['label', 'size'], plain: [], sized: ['size'] });
  });

  it('emits progress and heartbeats on the main thread while the step runs', async () => {
    ctx = new FlowContext({ threads: { max: 1 }, processes: { max: 1 } });
    const events: WeirEvent[] = [];
    ctx.on('event', (event) => events.push(event));
    const result = await ctx.run(probeGraph(type), { n: 1 });
    const ofProbe = events.filter((e) => 'step' in e && e.step === 'probe').map((e) => e.type);
    expect(ofProbe).toEqual(['step_start', 'step_progress', 'step_heartbeat', 'step_complete']);
    expect(events.find((e) => e.type === 'step_progress')).toMatchObject({ runId: result.runId, step: 'probe', attempt: 1, progress: 0.5, message: 'half way' });
    expect(events.find((e) => e.type === 'step_heartbeat')).toMatchObject({ step: 'probe', attempt: 1, details: { alive: true } });
  });

  it('answers waitForInput in batch mode with the validated default, or fails it as inline does', async () => {
    ctx = new FlowContext({ threads: { max: 1 }, processes: { max: 1 }, retry: { maxAttempts: 3, initialInterval: 0 } });
    const run = (fallback: unknown) => ctx.run(new Flow(Object.assign(new Ask(), { fallback }), { name: 'ask', type }), null);
    expect((await run({ ok: true })).output).toEqual({ ok: true });
    const invalid = await run({ ok: 'yes' });
    expect(invalid.error).toMatchObject({ name: 'ValidationError', code: ErrorCode.VALIDATION });
    expect(invalid.error?.message).toContain('the default for input "approval"');
    const missing = await run(undefined);
    expect(missing.error).toMatchObject({ name: 'InputRequiredError', code: ErrorCode.INPUT_REQUIRED });
    expect(missing.attempts).toHaveLength(1);
  });
});
