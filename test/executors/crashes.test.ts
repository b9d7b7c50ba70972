import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode, Flow, FlowContext } from '../../src/index.js';
import { Crash, Multiply } from '../fixtures/remote.js';

let ctx: FlowContext;
afterEach(() => ctx.close());

const cases = [
  ['thread', 'throw-later', /worker thread running attempt 1 crashed \(thrown from a timer\)/],
  ['thread', 'exit', /worker thread running attempt 1 crashed \(worker exited with code: 1\)/],
  ['thread', 'oom', /worker thread running attempt 1 ran out of memory/],
  ['process', 'throw-later', /child process running attempt 1 crashed with an exception thrown outside the step \(Error: thrown from a timer\)/],
  ['process', 'exit', /child process running attempt 1 exited with code 1/],
  ['process', 'sigkill', /child process running attempt 1 was killed by SIGKILL/],
] as const;

describe('a worker that crashes', () => {
  it.each(cases)('on a %s (%s) fails only that attempt, is replaced, and the retry succeeds', async (type, how, message) => {
    ctx = new FlowContext({
      threads: { max: 1, ...(how === 'oom' ? { resourceLimits: { maxOldGenerationSizeMb: 48, maxYoungGenerationSizeMb: 8 } } : {}) },
      processes: { max: 1 },
    });
    const flow = new Flow(Object.assign(new Crash(), { how }), { name: 'crash', type, retry: { maxAttempts: 2, initialInterval: 0 } });
    const result = await ctx.run(flow, null);
    expect(result.status).toBe('completed');
    expect(result.output).toEqual({ recovered: 2 });
    const first = result.attempts[0]?.error;
    expect(first).toMatchObject({ name: 'RetryableError', code: ErrorCode.WORKER_CRASHED, retryable: true });
    expect(first?.message).toMatch(message);
  });
});

describe('a pool whose workers cannot start', () => {
  it('fails the attempt instead of waiting forever, on a thread', async () => {
    ctx = new FlowContext({ threads: { max: 1, resourceLimits: { maxOldGenerationSizeMb: 2, maxYoungGenerationSizeMb: 1 } } });
    const result = await ctx.run(new Flow(new Multiply(2), { name: 'x', type: 'thread' }), { n: 1 });
    expect(result.error).toMatchObject({ name: 'RetryableError', code: ErrorCode.WORKER_CRASHED });
    expect(result.error?.message).toContain('no worker thread could start');
  });

  it('fails the attempt instead of waiting forever, in a process', async () => {
    ctx = new FlowContext({ processes: { max: 1, execArgv: ['--no-such-node-option'] } });
    const result = await ctx.run(new Flow(new Multiply(2), { name: 'x', type: 'process' }), { n: 1 });
    expect(result.error).toMatchObject({ name: 'RetryableError', code: ErrorCode.WORKER_CRASHED });
    expect(result.error?.message).toMatch(/could not start \(exited with code 9\)/);
  });
});
