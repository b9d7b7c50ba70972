/** weir/testing: one flow of a tree alone with stub dependencies, a Step for process(), thread and process steps on virtual time. */
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { FatalError, Flow, Processor, RetryableError, type Step } from '../../src/index.js';
import { createTestContext, type TestContext } from '../../src/testing/index.js';
import { Fn } from '../fixtures/processors.js';
import { AwaitSignal, Multiply, SumDeps } from '../fixtures/remote.js';

let t: TestContext;
afterEach(async () => {
  await t?.close();
});

const User = z.object({ name: z.string() });
const Greeting = z.object({ text: z.string() });

class Fetch extends Processor<z.ZodAny, typeof User> {
  readonly input = z.any();
  readonly output = User;
  process(): z.infer<typeof User> {
    throw new Error('fetch must not run in these tests');
  }
}

class Greet extends Processor<z.ZodAny, typeof Greeting> {
  readonly input = z.any();
  readonly output = Greeting;
  calls = 0;
  async process(_input: unknown, step: Step): Promise<z.infer<typeof Greeting>> {
    this.calls++;
    const user = (await step.deps.get<z.infer<typeof User>>('fetch'))!;
    const title = await step.deps.get<string>('title');
    step.progress(0.5, 'greeting');
    return { text: `Hello ${title ?? ''}${user.name}` };
  }
}

/** profile: fetch, then greet (needs fetch, may use title). */
function profile() {
  const tree = Flow.parallel('profile');
  const fetch = new Flow(new Fetch(), { name: 'fetch' }).registerTo(tree);
  const greeter = new Greet();
  const greet = new Flow(greeter, { name: 'greet', retry: { maxAttempts: 3, initialInterval: 60_000, jitter: 0 } }).registerTo(tree, {
    required: [fetch],
    optional: ['title'],
  });
  return { tree, greet, greeter };
}

describe('t.runStep', () => {
  it('runs one child of a composite alone with stub outputs for its dependencies', async () => {
    t = createTestContext();
    const { greet, greeter } = profile();
    // Alone, the child cannot reach its dependencies.
    const alone = await t.run(greet, {});
    expect(alone.error?.message).toMatch(/"fetch" is not one of its dependencies/);

    const result = await t.runStep(greet, {}, { deps: { fetch: { name: 'Ada' } } });
    expect(result).toMatchObject({ status: 'completed', name: 'greet', output: { text: 'Hello Ada' } });
    expect(Object.keys(result.steps)).toEqual(['greet']);
    expect(result.attempts).toHaveLength(1);
    expect(greeter.calls).toBe(2);

    const titled = await t.runStep(greet, {}, { deps: { fetch: { name: 'Lovelace' }, title: 'Lady ' } });
    expect(titled.output).toEqual({ text: 'Hello Lady Lovelace' });
  });

  it('keeps the flow\'s own retries and its doubles', async () => {
    t = createTestContext();
    const { greet } = profile();
    t.fail('greet', new RetryableError('busy'), { times: 2 });
    // 1 minute, twice (jitter 0, maxInterval 1 minute): the clock moves 2 minutes, in no real time to speak of.
    const result = await t.runStep(greet, {}, { deps: { fetch: { name: 'Ada' } } });
    expect(result.status).toBe('completed');
    expect(result.attempts).toHaveLength(3);
    expect(t.now() - Date.UTC(2030, 0, 1)).toBe(120_000);
  });

  it('checks a stub by the real dependency\'s output schema, and names missing and unknown dependencies', async () => {
    t = createTestContext();
    const { greet } = profile();
    const wrong = await t.runStep(greet, {}, { deps: { fetch: { nom: 'Ada' } } });
    expect(wrong.status).toBe('failed');
    expect(wrong.error).toMatchObject({ code: 'WEIR_VALIDATION', message: expect.stringContaining('"fetch"') });
    await expect(t.runStep(greet, {})).rejects.toThrow('t.runStep(flow "greet"): give the output of its required dependency "fetch" in { deps: { fetch: ... } }');
    await expect(t.runStep(greet, {}, { deps: { fetch: {}, user: {} } })).rejects.toThrow('"user" is not one of its dependencies (it has "fetch", "title")');
  });

  it('runs a composite child with its subtree, and a leaf with no dependencies', async () => {
    t = createTestContext();
    const app = Flow.sequential('app');
    const load = new Flow(new Fn(() => 10), { name: 'load' }).registerTo(app);
    const sum = Flow.parallel('sum').registerTo(app, { required: [load] });
    new Flow(new Fn(() => 1), { name: 'one' }).registerTo(sum);
    new Flow(new Fn(async (_i, step: Step) => ((await step.deps.get<number>('one')) ?? 0) + 1), { name: 'two' }).registerTo(sum, { required: ['one'] });
    const result = await t.runStep(sum, {}, { deps: { load: 5 } });
    expect(result.status).toBe('completed');
    expect(result.output).toEqual({ one: 1, two: 2 });
    expect(Object.keys(result.steps).sort()).toEqual(['one', 'two']);
    expect((await t.runStep(load, {})).output).toBe(10);
  });
});

describe('t.runStep as the step runs in its tree', () => {
  it('inherits the retry and timeout of its composites', async () => {
    t = createTestContext();
    const app = Flow.parallel('app', { retry: { maxAttempts: 3, initialInterval: 1000, jitter: 0 } });
    const inner = Flow.parallel('inner', { timeout: 5000 }).registerTo(app);
    let calls = 0;
    const step = new Flow(
      new Fn((_i, s: Step) => {
        if (++calls < 3) throw new RetryableError('again');
        return new Promise((_r, reject) => s.signal.addEventListener('abort', () => reject(s.signal.reason as Error)));
      }),
      { name: 'step' },
    ).registerTo(inner);
    const handle = t.runStep(step, {});
    await t.advance('3s');
    await t.advance('5s');
    const result = await handle;
    expect(result.attempts).toHaveLength(3);
    expect(result.error).toMatchObject({ code: 'WEIR_TIMEOUT', message: expect.stringContaining('timeout of 5000 ms') });
  });

  it('gives a child of a sequential composite its predecessor\'s output as its input and as a dependency', async () => {
    t = createTestContext();
    const pipe = Flow.sequential('pipe');
    new Flow(new Fn(() => 1), { name: 'first' }).registerTo(pipe);
    const second = new Flow(new Fn(async (input, step: Step) => ({ input, first: await step.deps.get('first') })), { name: 'second' }).registerTo(pipe);
    expect((await t.runStep(second, 41)).output).toEqual({ input: 41, first: 41 });
    expect((await t.runStep(second, 41, { deps: { first: 7 } })).output).toEqual({ input: 41, first: 7 });
    expect(() => t.step({ flow: second })).toThrow('give the output of its required dependency "first"');
  });

  it('reports the step\'s own failure when it may fail without failing its run', async () => {
    t = createTestContext();
    const tree = Flow.parallel('tree');
    const optional = new Flow(new Fn(() => Promise.reject(new FatalError('no'))), { name: 'optional', allowFailure: true }).registerTo(tree);
    const result = await t.runStep(optional, {});
    expect(result).toMatchObject({ status: 'failed', error: { code: 'WEIR_FATAL', message: 'no' } });
  });
});

describe('t.step', () => {
  it('calls process() directly with deps, answers and an attempt, and keeps what it reported', async () => {
    t = createTestContext();
    const { greet, greeter } = profile();
    // Given the flow, the step has its name, and its optional dependencies not given read `undefined`.
    const step = t.step({ flow: greet, deps: { fetch: { name: 'Ada' } }, attempt: 2 });
    expect(await greeter.process({}, step)).toEqual({ text: 'Hello Ada' });
    expect(step).toMatchObject({ name: 'greet', runId: 'run-1', attempt: 2, idempotencyKey: 'run-1:greet' });
    expect(step.progressReports).toEqual([{ fraction: 0.5, message: 'greeting' }]);
    await expect(step.deps.get('user')).rejects.toThrow('flow "greet": "user" is not one of its dependencies (it has "fetch", "title")');
    expect(() => t.step({ flow: greet })).toThrow('t.step(flow "greet"): give the output of its required dependency "fetch" in { deps: { fetch: ... } }');
    // Without the flow, only the names given are its dependencies.
    await expect(greeter.process({}, t.step())).rejects.toThrow('flow "step": "fetch" is not one of its dependencies (it has none; give it in t.step({ deps }))');
    expect(await greeter.process({}, t.step({ deps: { fetch: { name: 'Bo' }, title: 'Dr ' } }))).toEqual({ text: 'Hello Dr Bo' });
  });

  it('answers waitForInput from answers, validated, else the default, else fails as a batch run', async () => {
    t = createTestContext();
    const ask = (step: Step): Promise<boolean> => step.waitForInput('go', z.boolean(), { default: false });
    const asked = t.step({ answers: { go: true } });
    expect(await ask(asked)).toBe(true);
    expect(asked.asks).toEqual([{ key: 'go', answered: true }]);
    expect(await ask(t.step())).toBe(false);
    await expect(t.step({ answers: { go: 'yes' } }).waitForInput('go', z.boolean())).rejects.toMatchObject({ code: 'WEIR_VALIDATION' });
    await expect(t.step().waitForInput('go', z.boolean())).rejects.toMatchObject({ code: 'WEIR_INPUT_REQUIRED', message: expect.stringContaining('t.step({ answers })') });
    // As in a run: a default the schema refuses, a bad key, and bad options.
    await expect(t.step().waitForInput('n', z.number(), { default: 'nope' as never })).rejects.toMatchObject({ code: 'WEIR_VALIDATION' });
    await expect(t.step().waitForInput('', z.number())).rejects.toMatchObject({ name: 'FatalError', code: 'WEIR_INVALID_OPTIONS' });
    await expect(t.step().waitForInput('n', z.number(), { wait: 1 } as never)).rejects.toMatchObject({ code: 'WEIR_INVALID_OPTIONS' });
    expect(() => t.step({ attempt: 0 })).toThrow('t.step(): attempt: expected a positive whole number, got 0');
    expect(() => t.step({ dep: {} } as never)).toThrow('t.step(): dep: expected one of the options');
  });

  it('aborts its signal, and records heartbeats', () => {
    t = createTestContext();
    const step = t.step();
    step.heartbeat({ at: 3 });
    step.abort(new Error('stop'));
    expect(step.signal.aborted).toBe(true);
    expect(step.heartbeats).toEqual([{ at: 3 }]);
  });
});

describe('thread and process steps on virtual time', () => {
  it('runs them, with their stub dependencies, and a start-up that does not count against a virtual timeout', async () => {
    t = createTestContext({ threads: { max: 1 }, processes: { max: 1 } });
    const tree = Flow.parallel('remote');
    const base = new Flow(new Multiply(1), { name: 'base' }).registerTo(tree);
    const onThread = new Flow(new SumDeps(), { name: 'onThread', type: 'thread', timeout: 50 }).registerTo(tree, { required: [base] });
    const inChild = new Flow(new Multiply(3), { name: 'inChild', type: 'process', timeout: 50 }).registerTo(tree, { required: [onThread] });
    // Starting a worker takes far longer than 50 ms of real time; the virtual timeout counts from the processor's start.
    const threaded = await t.runStep(onThread, { n: 1 }, { deps: { base: { n: 10 } } });
    expect(threaded).toMatchObject({ status: 'completed', output: { n: 11 } });
    const forked = await t.runStep(inChild, { n: 2 }, { deps: { onThread: { n: 0 } } });
    expect(forked).toMatchObject({ status: 'completed', output: { n: 6 } });
  });

  it('times out a thread step that waits on its signal once the clock passes its timeout', async () => {
    t = createTestContext({ threads: { max: 1 } });
    const waits = new Flow(new AwaitSignal(), { name: 'waits', type: 'thread', timeout: 60_000 });
    const handle = t.start(waits, {});
    await t.advance('59s');
    expect((await t.ctx.getRun(handle.runId)).status).toBe('running');
    await t.advance('1s');
    expect(await t.result(handle)).toMatchObject({ status: 'failed', error: { code: 'WEIR_TIMEOUT' } });
  });
});
