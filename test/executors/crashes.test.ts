import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode, Flow, FlowContext } from '../../src/index.js';
import { Crash } from '../fixtures/remote.js';

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
