import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { afterEach, describe, expect, it } from 'vitest';
import { Flow, FlowContext, Processor, ResultsManager } from '../../src/index.js';

const Any = z.unknown();
/** A step that never ends: its run is left running when its context closes. */
class Blocks extends Processor<typeof Any, typeof Any> {
  readonly input = Any;
  readonly output = Any;
  async process(): Promise<unknown> {
    return new Promise(() => {});
  }
}

let dir = '';
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('a module a worker imports', () => {
  it('makes a context with recover: true that takes over no run in the worker', async () => {
    dir = await mkdtemp(join(tmpdir(), 'weir-worker-top-level-'));
    process.env.WEIR_APP_DB = join(dir, 'store');
    process.env.WEIR_APP_LOG = join(dir, 'log.txt');
    // The app module, as the main thread imports it: its own first recovery finds nothing.
    const { app, Hash } = await import('../fixtures/app-module.js');
    await app.recover();
    // A run of "victim" left running in the store, its lease released: stale.
    const leaver = new FlowContext({ results: ResultsManager.disk(process.env.WEIR_APP_DB), closeTimeout: 0 });
    const left = leaver.start(new Flow(new Blocks(), { name: 'victim' }), {});
    await new Promise((resolve) => leaver.once('step_start', resolve));
    await leaver.close();
    expect(await left.result()).toMatchObject({ status: 'running' });
    // A process step of Hash: its child imports the app module, whose context would recover the run there.
    const ctx = new FlowContext({ results: ResultsManager.disk(process.env.WEIR_APP_DB) });
    try {
      expect((await ctx.run(new Flow(new Hash(), { name: 'hash', type: 'process' }), {})).output).toBe(42);
      // The one wait of this kind: that something does not happen can only be shown by giving it the time it would take.
      await new Promise((resolve) => setTimeout(resolve, 500));
      const log = existsSync(process.env.WEIR_APP_LOG) ? readFileSync(process.env.WEIR_APP_LOG, 'utf8') : '';
      expect(log).not.toContain('victim ran');
      expect((await ctx.getRun(left.runId)).status).toBe('running');
    } finally {
      await ctx.close();
      await app.close();
    }
  });
});
