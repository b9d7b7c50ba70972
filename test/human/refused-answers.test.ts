import { z } from 'zod';
import { describe, expect, it } from 'vitest';
import { Flow, FlowContext, ResultsManager, type FlowContextOptions, type InputRequiredEvent, type Step, type WeirEvent } from '../../src/index.js';
import { Fn } from '../fixtures/processors.js';
import { sqliteContexts } from '../fixtures/sqlite-contexts.js';
import { nextWaiting } from '../fixtures/waiting.js';

const temp = sqliteContexts('refused-answers');

const stores: { name: string; context: (options?: FlowContextOptions) => FlowContext }[] = [
  { name: 'memory', context: (options = {}) => temp.track(new FlowContext({ results: ResultsManager.memory(), ...options })) },
  { name: 'sqlite', context: (options = {}) => temp.context(options) },
];

/** Asks for an even number: a check JSON Schema cannot express, so only the asking step can make it. */
function evenAsk(calls: { n: number }) {
  const Even = z.number().refine((n) => n % 2 === 0, 'must be even');
  return new Flow(
    new Fn(async (_i, step: Step) => {
      calls.n++;
      return step.waitForInput('count', Even);
    }),
    { name: 'ask-even' },
  );
}

describe.each(stores)('an answer that passes the JSON Schema but not the ask\'s own schema ($name store)', ({ name, context }) => {
  it('is dropped: the step does not fail, it asks again saying why, and a good answer then completes it', async () => {
    const calls = { n: 0 };
    const ctx = context();
    const flow = evenAsk(calls);
    ctx.register(flow);
    const events: WeirEvent[] = [];
    ctx.on('event', (e) => events.push(e));
    let waiting = nextWaiting(ctx);
    const handle = ctx.start(flow, {}, { mode: 'interactive' });
    await waiting;
    waiting = nextWaiting(ctx);
    // The run is parked: no zod schema at hand, only the stored JSON Schema, which a number passes.
    await ctx.submitInput(handle.runId, 'count', 3);
    await waiting;
    const info = await ctx.getRun(handle.runId);
    expect(info.status).toBe('waiting');
    expect(info.steps['ask-even']).toMatchObject({ status: 'waiting' });
    expect(info.waitingFor?.map((w) => w.key)).toEqual(['count']);
    const asks = events.filter((e): e is InputRequiredEvent => e.type === 'input_required');
    expect(asks).toHaveLength(2);
    expect(asks[0]!.rejected).toBeUndefined();
    expect(asks[1]!.rejected).toMatchObject({ name: 'ValidationError', code: 'WEIR_VALIDATION', message: expect.stringContaining('must be even') });

    await ctx.submitInput(handle.runId, 'count', 4);
    const result = await handle.result();
    expect(result).toMatchObject({ status: 'completed', output: 4 });
    expect(calls.n).toBe(3);
    // History shows both answers and the ask in between.
    expect(events.filter((e) => e.type === 'input_received').map((e) => (e as { outcome: string }).outcome)).toEqual(['answered', 'answered']);
  });

  if (name === 'sqlite') {
    it('submitted from a context that does not know the flow, is dropped when the run goes on where it does', async () => {
      const calls = { n: 0 };
      const owner = context();
      const flow = evenAsk(calls);
      owner.register(flow);
      let waiting = nextWaiting(owner);
      const handle = owner.start(flow, {}, { mode: 'interactive' });
      await waiting;
      const outsider = context();
      await outsider.submitInput(handle.runId, 'count', 5);
      waiting = nextWaiting(owner);
      await owner.recover();
      const again = await waiting;
      expect(again.waitingFor).toEqual([{ step: 'ask-even', key: 'count' }]);
      expect((await outsider.getRun(handle.runId)).status).toBe('waiting');
      await outsider.submitInput(handle.runId, 'count', 6);
      await owner.recover();
      expect(await handle.result()).toMatchObject({ status: 'completed', output: 6 });
    });
  }
});
