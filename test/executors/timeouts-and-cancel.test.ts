import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ErrorCode, Flow, FlowContext } from '../../src/index.js';
import { AwaitAbort, Multiply, Spin } from '../fixtures/remote.js';
import { deferred } from '../fixtures/processors.js';

let ctx: FlowContext;
afterEach(() => ctx.close());

const pools = { threads: { max: 1, abortGrace: 20 }, processes: { max: 1, abortGrace: 20 } };

/** Starts the pool's one worker, so a step's timeout is not spent starting it. */
async function warm(type: 'thread' | 'process'): Promise<void> {
  expect((await ctx.run(new Flow(new Multiply(1), { name: 'warm', type }), { n: 1 })).status).toBe('completed');
}

describe.each(['thread', 'process'] as const)('timeouts and cancel on a %s', (type) => {
  it('terminates a step stuck in while (true) past its timeout, reports a TimeoutError, and frees the slot', async () => {
    ctx = new FlowContext(pools);
    await warm(type);
    const root = Flow.parallel('root');
    const stuck = new Flow(new Spin(), { name: 'stuck', type, timeout: 300 }).registerTo(root);
    new Flow(new Multiply(2), { name: 'next', type }).registerTo(root, { optional: [stuck] });
    const result = await ctx.run(root, { n: 4 });
    expect(result.steps.stuck).toMatchObject({ status: 'failed', error: { name: 'TimeoutError', code: ErrorCode.TIMEOUT } });
    expect(result.steps.next).toMatchObject({ status: 'completed', output: { n: 8 } });
  });

  it('aborts step.signal in the worker with the timeout as its reason', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'weir-abort-'));
    try {
      ctx = new FlowContext({ ...pools, threads: { max: 1, abortGrace: 5_000 }, processes: { max: 1, abortGrace: 5_000 } });
      const file = join(dir, 'reason.json');
      // Cold: the timeout fires while the worker is still starting. A queued child task is dropped at once;
      // a thread task already handed to Piscina is marked aborted, and the thread never starts it.
      const coldFile = join(dir, 'cold.json');
      const cold = await ctx.run(new Flow(Object.assign(new AwaitAbort(), { file: coldFile }), { name: 'cold', type, timeout: 100 }), null);
      expect(cold.error).toMatchObject({ name: 'TimeoutError' });
      await warm(type);
      await expect(readFile(coldFile, 'utf8')).rejects.toMatchObject({ code: 'ENOENT' });
      const result = await ctx.run(new Flow(Object.assign(new AwaitAbort(), { file }), { name: 'waits', type, timeout: 300 }), null);
      expect(result.error).toMatchObject({ name: 'TimeoutError' });
      await vi.waitFor(async () => expect(JSON.parse(await readFile(file, 'utf8'))).toEqual({ name: 'TimeoutError', code: ErrorCode.TIMEOUT }));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('stops a running step when its run is cancelled, and frees the slot', async () => {
    ctx = new FlowContext(pools);
    const spinning = deferred();
    ctx.on('step_progress', () => spinning.resolve());
    const handle = ctx.start(new Flow(new Spin(), { name: 'stuck', type }), null);
    await spinning.promise;
    await ctx.cancel(handle.runId);
    const result = await handle.result();
    expect(result.status).toBe('cancelled');
    expect(result.steps.stuck?.error).toMatchObject({ name: 'CancelledError' });
    expect((await ctx.run(new Flow(new Multiply(3), { name: 'after', type }), { n: 1 })).output).toEqual({ n: 3 });
  });
});
