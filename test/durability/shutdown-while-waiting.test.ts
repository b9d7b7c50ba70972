import { Keyv } from 'keyv';
import { z } from 'zod';
import { describe, expect, it } from 'vitest';
import { Flow, FlowContext, ResultsManager } from '../../src/index.js';
import { deferred, Fn } from '../fixtures/processors.js';
import { nextWaiting } from '../fixtures/waiting.js';

/** A Keyv store that takes a while to disconnect, as a remote one (Redis, Postgres) does. */
class SlowToDisconnect extends Map<string, unknown> {
  readonly disconnected = deferred();
  async disconnect(): Promise<void> {
    // Longer than a few polls of a handle that follows a parked run.
    await new Promise((resolve) => setTimeout(resolve, 400));
    this.disconnected.resolve();
  }
}

describe('a context closing while a run of it waits for input (durable store)', () => {
  it('settles the handle of the parked run as waiting with WEIR_CONTEXT_CLOSED, however long the store takes to close', async () => {
    const ctx = new FlowContext({ results: ResultsManager.keyv(new Keyv({ store: new SlowToDisconnect() })) });
    const flow = new Flow(new Fn(async (_i, step) => step.waitForInput('ok', z.object({ v: z.string() }))), { name: 'asks' });
    const waiting = nextWaiting(ctx);
    const handle = ctx.start(flow, {}, { mode: 'interactive' });
    const settled = handle.result().then(
      (result) => ({ result }),
      (error: unknown) => ({ error }),
    );
    await waiting;
    await ctx.close();
    expect(await settled).toMatchObject({ result: { status: 'waiting', error: { code: 'WEIR_CONTEXT_CLOSED' } } });
  });
});
