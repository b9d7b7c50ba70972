import { Keyv } from 'keyv';
import { afterEach, describe, expect, it } from 'vitest';
import { FatalError, Flow, FlowContext, ResultsManager } from '../../src/index.js';
import { deferred, Fn } from '../fixtures/processors.js';

const contexts: FlowContext[] = [];
afterEach(async () => {
  await Promise.all(contexts.splice(0).map((c) => c.close()));
});

describe('two manual controls of one run in one context', () => {
  /** A Keyv store that holds back the first read of a run's input entries until the test opens it. */
  class GatedReads extends Map<string, unknown> {
    gate: { reached: ReturnType<typeof deferred<void>>; open: ReturnType<typeof deferred<void>> } | undefined;
    override get(key: string): any {
      const gate = this.gate;
      if (gate !== undefined && key.includes('inputs/')) {
        this.gate = undefined;
        gate.reached.resolve();
        return gate.open.promise.then(() => super.get(key));
      }
      return super.get(key);
    }
  }

  it('a skip refused while a resume holds the lease does not give that lease back under the resumed run', async () => {
    const store = new GatedReads();
    const ctx = new FlowContext({ results: ResultsManager.keyv(new Keyv({ store })), leaseTimeout: 300 });
    contexts.push(ctx);
    let phase = 1;
    const p = Flow.parallel('p');
    new Flow(
      new Fn(async (_i, step) => {
        if (phase === 1) throw new FatalError('a fails the first time');
        // Long enough for several lease renewals (every 100 ms), unless the run is stopped.
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, 1500);
          step.signal.addEventListener('abort', () => {
            clearTimeout(timer);
            resolve();
          });
        });
        return 'a';
      }),
      { name: 'a' },
    ).registerTo(p);
    new Flow(
      new Fn(async () => {
        if (phase === 1) throw new FatalError('b fails the first time');
        return 'b';
      }),
      { name: 'b' },
    ).registerTo(p);
    ctx.register(p);
    const first = await ctx.run(p, {});
    expect(first.status).toBe('failed');

    phase = 2;
    const gate = { reached: deferred<void>(), open: deferred<void>() };
    store.gate = gate;
    // The resume takes the lease, then reads the run's input entries: held there.
    const resuming = ctx.resume(first.runId);
    await gate.reached.promise;
    // Meanwhile a skip of the same run, in the same context: it must not go on, and must not touch the resume's lease.
    const skipped = await ctx.skip(first.runId, 'b', 'by hand').then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(skipped).toMatchObject({ code: 'WEIR_RUN_STATE' });
    gate.open.resolve();
    const result = await (await resuming).result();
    expect({ status: result.status, code: result.error?.code }).toEqual({ status: 'completed', code: undefined });
  });
});
