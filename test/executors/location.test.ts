import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode, FatalError, Flow, FlowContext, FlowError } from '../../src/index.js';
import { DeclaredAs, MissingFile, NeedsOptions, NoModule, RelativeModule, Renamed, WithCallback } from '../fixtures/unlocatable.js';

let ctx: FlowContext;
afterEach(() => ctx.close());

function thrown(fn: () => unknown): FlowError {
  try {
    fn();
  } catch (error) {
    return error as FlowError;
  }
  throw new Error('expected a throw');
}

describe.each(['thread', 'process'] as const)('locating a %s processor', (type) => {
  it('refuses at registration a class without static module, and says how to add it', () => {
    ctx = new FlowContext();
    const error = thrown(() => ctx.register(new Flow(new NoModule(), { name: 'x', type })));
    expect(error).toBeInstanceOf(FlowError);
    expect(error.code).toBe(ErrorCode.PROCESSOR_MODULE);
    expect(error.message).toContain('flow "x"');
    expect(error.message).toContain('static module = import.meta.url');
  });

  it('refuses a module that does not exist, or is not a URL or absolute path', () => {
    ctx = new FlowContext();
    const missing = thrown(() => ctx.register(new Flow(new MissingFile(), { name: 'x', type })));
    expect(missing.code).toBe(ErrorCode.PROCESSOR_MODULE);
    expect(missing.message).toMatch(/no-such-file\.ts does not exist/);
    const relative = thrown(() => ctx.register(new Flow(new RelativeModule(), { name: 'y', type })));
    expect(relative.code).toBe(ErrorCode.PROCESSOR_MODULE);
    expect(relative.message).toContain('absolute path');
  });

  it('refuses state that cannot be structured-cloned, naming the field', () => {
    ctx = new FlowContext();
    const error = thrown(() => ctx.register(new Flow(new WithCallback(), { name: 'x', type })));
    expect(error.code).toBe(ErrorCode.PROCESSOR_STATE);
    expect(error.message).toContain('field "onDone" of WithCallback');
  });

  it(type === 'thread' ? 'accepts a SharedArrayBuffer field, shared with the thread' : 'refuses a SharedArrayBuffer field, which a child cannot share', () => {
    ctx = new FlowContext();
    const flow = new Flow(Object.assign(new DeclaredAs(), { shared: new SharedArrayBuffer(8) }), { name: 'x', type });
    if (type === 'thread') expect(() => ctx.register(flow)).not.toThrow();
    else expect(() => ctx.register(flow)).toThrow(expect.objectContaining({ code: ErrorCode.PROCESSOR_STATE, message: expect.stringContaining('field "shared"') }));
  });

  it('refuses a class whose constructor throws without arguments', () => {
    ctx = new FlowContext();
    const error = thrown(() => ctx.register(new Flow(new NeedsOptions({ url: 'HTTP://X' }), { name: 'x', type })));
    expect(error.code).toBe(ErrorCode.PROCESSOR_CONSTRUCTOR);
    expect(error.message).toContain('new NeedsOptions()');
    expect(error.cause).toBeInstanceOf(TypeError);
  });

  it('fails the run, without retrying, when the module does not export the class under its name', async () => {
    ctx = new FlowContext({ retry: 3 });
    const flow = new Flow(new Renamed(), { name: 'x', type });
    ctx.register(flow);
    const result = await ctx.run(flow, 1);
    expect(result.status).toBe('failed');
    expect(result.attempts).toHaveLength(1);
    expect(result.error).toMatchObject({ name: FatalError.name, code: ErrorCode.PROCESSOR_EXPORT, step: 'x' });
    expect(result.error?.message).toContain('no export named "Hidden"');
  });

  it('finds a class by its static exportName', async () => {
    ctx = new FlowContext({ threads: { max: 1 }, processes: { max: 1 } });
    const result = await ctx.run(new Flow(new DeclaredAs(), { name: 'x', type }), 7);
    expect(result.output).toEqual({ declared: 7 });
  });
});
