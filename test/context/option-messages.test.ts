import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { ErrorCode, Flow, FlowContext, ValidationError, type FlowContextOptions } from '../../src/index.js';
import { runOptionsSchema } from '../../src/model/run-options.js';
import { AddOne, Fn } from '../fixtures/processors.js';

let ctx: FlowContext | undefined;
afterEach(async () => {
  await ctx?.close();
  ctx = undefined;
});

/** The error `fn` throws; fails the test if it throws nothing. */
function thrown(fn: () => unknown): ValidationError {
  try {
    fn();
  } catch (error) {
    return error as ValidationError;
  }
  throw new Error('expected a throw');
}

const STATUSES = '"pending", "running", "waiting", "completed", "failed", "cancelled" or "skipped"';

describe('option messages', () => {
  it.each([
    [{ retry: { jitter: true } }, 'new FlowContext(): retry.jitter: expected a number from 0 to 1, got true'],
    [{ retry: 1.5 }, 'new FlowContext(): retry: expected a whole number of retries >= 0 or a retry policy object, got 1.5'],
    [{ retry: 'twice' }, 'new FlowContext(): retry: expected a whole number of retries >= 0 or a retry policy object, got "twice"'],
    [{ retry: { maxAttempts: 0 } }, 'new FlowContext(): retry.maxAttempts: expected a whole number of attempts >= 1, got 0'],
    [{ retry: { retryOn: true } }, 'new FlowContext(): retry.retryOn: expected a function (error, attempt) => boolean, got true'],
    [{ retry: { initialInterval: 5000, maxInterval: 1000 } }, 'new FlowContext(): retry.maxInterval: expected a number of milliseconds >= initialInterval (5000), got 1000'],
    [{ concurrency: 0 }, 'new FlowContext(): concurrency: expected a positive whole number or Infinity, got 0'],
    [{ results: {} }, 'new FlowContext(): results: expected a ResultsManager, got an object'],
    [{ threads: { idleTimeout: -1 } }, 'new FlowContext(): threads.idleTimeout: expected a whole number of milliseconds >= 0 (at most 50 million days), got -1'],
    [{ threads: { spinMicros: 5000 } }, 'new FlowContext(): threads.spinMicros: expected a whole number of microseconds from 0 to 1000, got 5000'],
    [{ processes: { spinMicros: -1 } }, 'new FlowContext(): processes.spinMicros: expected a whole number of microseconds from 0 to 1000, got -1'],
    [{ processes: { execArgv: '--inspect' } }, 'new FlowContext(): processes.execArgv: expected an array of strings, got "--inspect"'],
    [{ onFlowChange: 'ignore' }, 'new FlowContext(): onFlowChange: expected "fail" or "continue", got "ignore"'],
    [{ retires: 3 }, 'new FlowContext(): retires: expected one of the options'],
    [5, 'new FlowContext(): expected an object, got 5'],
  ])('say the path, what is expected and what was given: new FlowContext(%j)', (options, message) => {
    const error = thrown(() => new FlowContext(options as FlowContextOptions));
    expect(error).toBeInstanceOf(ValidationError);
    expect(error.code).toBe(ErrorCode.INVALID_OPTIONS);
    expect(error.message.slice(0, message.length)).toBe(message);
    expect(error.message).not.toContain('Invalid input');
  });

  it('report the member of a union the value has the shape of, with its path in issues', () => {
    const error = thrown(() => new FlowContext({ retry: { jitter: true as never, backoffFactor: 0.5 } }));
    expect(error.message).toBe('new FlowContext(): retry.backoffFactor: expected a number >= 1, got 0.5; retry.jitter: expected a number from 0 to 1, got true');
    expect(error.issues).toEqual([
      { code: 'too_small', path: ['retry', 'backoffFactor'], message: 'expected a number >= 1, got 0.5' },
      { code: 'invalid_type', path: ['retry', 'jitter'], message: 'expected a number from 0 to 1, got true' },
    ]);
  });

  it('name an unknown option and the known ones', () => {
    const error = thrown(() => new Flow(new AddOne(), { name: 'a', retires: 3 } as never));
    expect(error.message).toBe('flow "a": retires: expected one of the options name, description, timeout, retry, heartbeatTimeout, type, allowFailure, version, concurrency or keyConcurrency, got an unknown option');
    expect(error.code).toBe(ErrorCode.INVALID_CONFIG);
  });

  it('use the same style for run, listRuns, prune, resume and events options', async () => {
    ctx = new FlowContext();
    const flow = new Flow(new AddOne(), { name: 'add' });
    expect(() => ctx!.start(flow, { n: 1 }, { timeout: -1 })).toThrow('run options: timeout: expected a positive whole number of milliseconds (at most 50 million days), got -1');
    expect(() => ctx!.start(flow, { n: 1 }, { mode: 'sometimes' as 'batch' })).toThrow('run options: mode: expected "batch", "interactive" or "hybrid", got "sometimes"');
    expect(() => ctx!.start(flow, { n: 1 }, { runId: 'a/b' })).toThrow('run options: runId: expected a string of 1 to 200 characters without "/" or control characters, got "a/b"');
    expect(() => ctx!.start(flow, { n: 1 }, { signal: 'stop' as never })).toThrow('run options: signal: expected an AbortSignal, got "stop"');
    await expect(ctx.listRuns({ status: 'done' as 'completed' })).rejects.toThrow(`listRuns options: status: expected ${STATUSES}, or an array of them, got "done"`);
    await expect(ctx.listRuns({ status: ['failed', 'done'] as never })).rejects.toThrow(`listRuns options: status[1]: expected ${STATUSES}, got "done"`);
    await expect(ctx.listRuns({ limit: 0 })).rejects.toThrow('listRuns options: limit: expected a whole number from 1 to 10000, got 0');
    await expect(ctx.prune({ olderThan: -1 })).rejects.toThrow('prune options: olderThan: expected an age in milliseconds >= 0 or a valid Date, got -1');
    await expect(ctx.prune({ olderThan: new Date('never') })).rejects.toThrow('prune options: olderThan: expected an age in milliseconds >= 0 or a valid Date, got an invalid Date');
    const result = await ctx.run(flow, { n: 1 });
    await expect(ctx.resume(result.runId, { from: '' })).rejects.toThrow('resume options: from: expected a non-empty string, got ""');
    const handle = await ctx.handle(result.runId);
    expect(() => handle.events({ after: 1.5 })).toThrow('events options: after: expected a whole number >= 0, got 1.5');
  });

  it('use the same style for a step’s waitForInput call, failing the step without retry', async () => {
    ctx = new FlowContext();
    const ask = (name: string, key: string, options: object) => new Flow(new Fn((_i, step) => step.waitForInput(key, z.string(), options)), { name, retry: 2 });
    const badTimeout = await ctx.run(ask('t', 'colour', { timeout: 0 }), {}, { mode: 'interactive' });
    expect(badTimeout.error).toMatchObject({
      name: 'FatalError',
      code: ErrorCode.INVALID_OPTIONS,
      message: 'flow "t": waitForInput("colour") options: timeout: expected a positive whole number of milliseconds (at most 50 million days), got 0',
    });
    expect(badTimeout.steps.t?.attempts).toHaveLength(1);
    const badKey = await ctx.run(ask('k', '', {}), {}, { mode: 'interactive' });
    expect(badKey.error?.message).toBe('flow "k": waitForInput(): key: expected a string of 1 to 200 characters, got ""');
    const unknown = await ctx.run(ask('u', 'colour', { deadline: 5 }), {}, { mode: 'interactive' });
    expect(unknown.error?.message).toBe('flow "u": waitForInput("colour") options: deadline: expected one of the options timeout or default, got an unknown option');
  });
});

describe('run options without any given', () => {
  it('parse to nothing: ctx.start given no options skips the parse, so the schema must fill in no default', () => {
    expect(runOptionsSchema.parse({})).toEqual({});
  });

  it('start the run as an empty options object does', async () => {
    ctx = new FlowContext();
    const flow = new Flow(new AddOne(), { name: 'add' });
    const bare = await ctx.start(flow, { n: 1 }).result();
    const empty = await ctx.start(flow, { n: 1 }, {}).result();
    expect({ status: bare.status, output: bare.output }).toEqual({ status: 'completed', output: { n: 2 } });
    expect({ status: empty.status, output: empty.output }).toEqual({ status: bare.status, output: bare.output });
    expect((await ctx.getRun(bare.runId))?.mode).toBe('batch');
  });
});
