import { afterEach, describe, expect, it } from 'vitest';
import { Flow, FlowContext, FlowError, ValidationError } from '../../src/index.js';
import { AddOne, Fn } from '../fixtures/processors.js';

let ctx: FlowContext | undefined;
afterEach(async () => {
  await ctx?.close();
  ctx = undefined;
});

describe('Flow and FlowConfig', () => {
  it('freezes a validated config and fills the type', () => {
    const flow = new Flow(new AddOne(), { name: 'add', timeout: 500, retry: 2, description: 'adds one' });
    expect(Object.isFrozen(flow.config)).toBe(true);
    expect(flow.config).toEqual({ name: 'add', timeout: 500, retry: 2, description: 'adds one' });
    expect(flow.type).toBe('inline');
    expect(flow.isComposite).toBe(false);
    expect(() => {
      (flow.config as { timeout: number }).timeout = 1;
    }).toThrow(TypeError);
  });

  it('rejects a bad config with a ValidationError naming the flow and the field', () => {
    const bad = () => new Flow(new AddOne(), { name: 'parse', timeout: -5 });
    expect(bad).toThrow(ValidationError);
    expect(bad).toThrow('flow "parse": timeout: expected a positive whole number of milliseconds (at most 50 million days), got -5');
    try {
      bad();
    } catch (error) {
      expect((error as ValidationError).code).toBe('WEIR_INVALID_CONFIG');
      expect((error as ValidationError).issues[0]?.path).toEqual(['timeout']);
    }
  });

  it('rejects unknown config keys, empty names and bad retry policies', () => {
    expect(() => new Flow(new AddOne(), { name: 'a', retires: 3 } as never)).toThrow(/retires/);
    expect(() => new Flow(new AddOne(), { name: '' })).toThrow('name: expected a name of 1 to 128 characters without "/" or control characters, got ""');
    expect(() => new Flow(new AddOne(), { name: 'a/b' })).toThrow('name: expected a name of 1 to 128 characters without "/" or control characters, got "a/b"');
    expect(() => new Flow(new AddOne(), { name: 'a', retry: { jitter: 2 } })).toThrow(/retry/);
    expect(() => new Flow(new AddOne(), { name: 'a', retry: -1 })).toThrow(ValidationError);
  });

  it('refuses a retry policy whose maxInterval is below its initialInterval, on a flow and on a composite', () => {
    const flow = () => new Flow(new AddOne(), { name: 'a', retry: { initialInterval: 2000, maxInterval: 500 } });
    expect(flow).toThrow(ValidationError);
    expect(flow).toThrow(expect.objectContaining({
      code: 'WEIR_INVALID_CONFIG',
      message: 'flow "a": retry.maxInterval: expected a number of milliseconds >= initialInterval (2000), got 500',
    }));
    expect(() => Flow.parallel('p', { retry: { initialInterval: 10, maxInterval: 9 } })).toThrow('flow "p": retry.maxInterval: expected a number of milliseconds >= initialInterval (10), got 9');
    expect(new Flow(new AddOne(), { name: 'b', retry: { initialInterval: 500, maxInterval: 500 } }).config.retry).toEqual({ initialInterval: 500, maxInterval: 500 });
  });

  it('says what a retry option takes, not "Invalid input"', () => {
    expect(() => new Flow(new AddOne(), { name: 'a', retry: { jitter: 2 } })).toThrow('flow "a": retry.jitter: expected a number from 0 to 1, got 2');
    expect(() => new Flow(new AddOne(), { name: 'a', retry: -1 })).toThrow('flow "a": retry: expected a whole number of retries >= 0 or a retry policy object, got -1');
    expect(() => new Flow(new AddOne(), { name: 'a', retry: { tries: 2 } as never })).toThrow(
      'flow "a": retry.tries: expected one of the options maxAttempts, initialInterval, backoffFactor, maxInterval, jitter or retryOn, got an unknown option',
    );
  });

  it('rejects something that is not a processor', () => {
    expect(() => new Flow({} as never, { name: 'x' })).toThrow(FlowError);
    expect(() => new Flow({} as never, { name: 'x' })).toThrow(/must be a Processor/);
  });

  it('makes parallel and sequential composites that flows register to, by Flow or by name', () => {
    const pipeline = Flow.parallel('pipeline', { retry: 1 });
    const a = new Flow(new AddOne(), { name: 'a' }).registerTo(pipeline);
    const b = new Flow(new AddOne(), { name: 'b' }).registerTo(pipeline, { required: [a] });
    const c = new Flow(new AddOne(), { name: 'c' }).registerTo(pipeline, { required: ['a'], optional: [b, 'later'] });
    expect(pipeline.type).toBe('parallel');
    expect(pipeline.isComposite).toBe(true);
    expect(pipeline.children.map((f) => f.name)).toEqual(['a', 'b', 'c']);
    expect(c.parent).toBe(pipeline);
    expect(c.dependencies).toEqual({ required: ['a'], optional: ['b', 'later'] });
    expect(Flow.sequential('steps').type).toBe('sequential');
  });

  it('nests composites and runs them to one output keyed by name', async () => {
    ctx = new FlowContext();
    const root = Flow.parallel('root');
    const inner = Flow.sequential('inner').registerTo(root);
    new Flow(new AddOne(), { name: 'one' }).registerTo(inner);
    new Flow(new AddOne(), { name: 'two' }).registerTo(inner);
    new Flow(new AddOne(), { name: 'side' }).registerTo(root);
    const result = await ctx.run(root, { n: 0 });
    expect(result.status).toBe('completed');
    expect(result.output).toEqual({ inner: { one: { n: 1 }, two: { n: 2 } }, side: { n: 1 } });
  });

  it('refuses to register to a leaf, twice, under a taken name, or inside itself', () => {
    const p = Flow.parallel('p');
    const leaf = new Flow(new AddOne(), { name: 'leaf' });
    expect(() => new Flow(new AddOne(), { name: 'x' }).registerTo(leaf)).toThrow(/registerTo\(\): parent: expected a composite \(Flow.parallel or Flow.sequential\), got inline flow "leaf"/);
    leaf.registerTo(p);
    expect(() => leaf.registerTo(Flow.parallel('q'))).toThrow(expect.objectContaining({ code: 'WEIR_ALREADY_REGISTERED' }));
    expect(() => new Flow(new Fn(() => 1), { name: 'leaf' }).registerTo(p)).toThrow(expect.objectContaining({ code: 'WEIR_DUPLICATE_NAME' }));
    const inner = Flow.parallel('inner').registerTo(p);
    expect(() => p.registerTo(inner)).toThrow(expect.objectContaining({ code: 'WEIR_CYCLE' }));
  });

  it('rejects the same name twice in one tree when the graph is registered', () => {
    ctx = new FlowContext();
    const root = Flow.parallel('root');
    const left = Flow.parallel('left').registerTo(root);
    const right = Flow.parallel('right').registerTo(root);
    new Flow(new AddOne(), { name: 'fetch' }).registerTo(left);
    new Flow(new AddOne(), { name: 'fetch' }).registerTo(right);
    expect(() => ctx!.register(root)).toThrow(expect.objectContaining({ code: 'WEIR_DUPLICATE_NAME' }));
    expect(() => ctx!.register(root)).toThrow(/"fetch" appears twice/);
  });

  it('refuses at registration a thread flow whose processor a worker could not find', () => {
    ctx = new FlowContext();
    const flow = new Flow(new AddOne(), { name: 'heavy', type: 'thread' });
    expect(() => ctx!.register(flow)).toThrow(expect.objectContaining({ code: 'WEIR_PROCESSOR_MODULE' }));
  });

  it('runs what was registered deep inside a tree after an earlier run of it, and leaves other trees as they were', async () => {
    ctx = new FlowContext();
    const root = Flow.sequential('root');
    const inner = Flow.parallel('inner');
    inner.registerTo(root);
    new Flow(new Fn(() => 'a'), { name: 'a' }).registerTo(inner);
    const other = Flow.parallel('other');
    new Flow(new Fn(() => 'x'), { name: 'x' }).registerTo(other);
    expect((await ctx.run(root, {})).output).toEqual({ inner: { a: 'a' } });
    expect((await ctx.run(other, {})).output).toEqual({ x: 'x' });

    new Flow(new Fn(() => 'b'), { name: 'b' }).registerTo(inner);
    expect((await ctx.run(root, {})).output).toEqual({ inner: { a: 'a', b: 'b' } });
    expect((await ctx.run(inner, {})).output).toEqual({ a: 'a', b: 'b' });
    expect((await ctx.run(other, {})).output).toEqual({ x: 'x' });
  });
});
