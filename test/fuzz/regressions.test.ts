/** The smallest counterexamples the fuzz tests found, each a plain test of its fix. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CycleError, ErrorCode, FatalError, Flow, FlowContext, FlowError, fromErrorData, registerErrorClass, ResultsManager, toErrorData, ValidationError } from '../../src/index.js';
import { createHandler, serve } from '../../src/http/index.js';
import { createMcpServer } from '../../src/mcp/index.js';
import { instrument } from '../../src/otel/index.js';
import { createTestContext, type TestContext } from '../../src/testing/index.js';
import { AddOne, Fn } from '../fixtures/processors.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function context(options: ConstructorParameters<typeof FlowContext>[0] = {}): FlowContext {
  const ctx = new FlowContext(options);
  cleanups.push(() => ctx.close());
  return ctx;
}

function testContext(): TestContext {
  const t = createTestContext();
  cleanups.push(() => t.close());
  return t;
}

const invalid = (message: string): FlowError => expect.objectContaining({ code: ErrorCode.INVALID_OPTIONS, message }) as FlowError;

describe('fuzz regressions: errors', () => {
  it('fromErrorData refuses null and data with a bad field instead of throwing a TypeError', () => {
    expect(() => fromErrorData(null as never)).toThrow(invalid('fromErrorData(): data: expected an object, got null'));
    expect(() => fromErrorData({ name: 'Error', message: 'x', code: 'E', retryable: false, cause: { name: 5 } } as never)).toThrow(ValidationError);
  });

  it('fromErrorData rebuilds a cyclic cause chain to 5 causes instead of overflowing the stack', () => {
    const data: Record<string, unknown> = { name: 'FatalError', message: 'x', code: 'WEIR_FATAL', retryable: false };
    data.cause = data;
    let depth = 0;
    for (let e: unknown = fromErrorData(data as never); e instanceof Error; e = e.cause) depth++;
    expect(depth).toBe(6);
  });

  it('fromErrorData rebuilds a name such as "constructor" as an Error, not as a String object', () => {
    const error = fromErrorData({ name: 'constructor', message: 'x', code: 'E', retryable: false });
    expect(error).toBeInstanceOf(Error);
    expect(error).toMatchObject({ name: 'constructor', message: 'x', code: 'E' });
  });

  it('fromErrorData leaves out details a class refuses rather than throwing across a boundary', () => {
    const plain = Object.assign(new Error('slow'), { name: 'TimeoutError', timeout: '5s' });
    expect(fromErrorData(toErrorData(plain))).toMatchObject({ name: 'TimeoutError', message: 'slow', timeout: undefined });
  });

  it('toErrorData keeps an error whose name is not a string as data fromErrorData rebuilds', () => {
    const error = Object.assign(new Error('x'), { name: 5 });
    expect(fromErrorData(toErrorData(error))).toMatchObject({ name: 'Error', message: 'x' });
    expect(fromErrorData(toErrorData(Object.assign(new Error('x'), { code: '' })))).toMatchObject({ code: ErrorCode.UNKNOWN });
  });

  it('error constructors refuse options that are not options, with WEIR_INVALID_OPTIONS naming them', () => {
    expect(() => new FatalError('x', null as never)).toThrow(invalid('new FatalError(): options: expected an object ({ cause?, code? }), got null'));
    expect(() => new CycleError('x', { cycle: 5 as never })).toThrow(invalid('new CycleError(): options.cycle: expected an array of flow names, got 5'));
    expect(() => new FlowError(Symbol('m') as never)).toThrow(invalid('new FlowError(): message: expected a string, got a symbol (Symbol(m))'));
    expect(() => new FatalError('x', { code: 5 as never })).toThrow(invalid('new FatalError(): options.code: expected a non-empty string, got 5'));
  });

  it('registerErrorClass refuses a null name rather than taking the class name', () => {
    expect(() => registerErrorClass(class Named extends Error {}, null as never)).toThrow(invalid('registerErrorClass(): name: expected a non-empty string, got null'));
  });
});

describe('fuzz regressions: a FlowContext', () => {
  it('refuses a run id that is not one, instead of a TypeError or a store error', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'weir-fuzz-regression-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const ctx = context({ results: ResultsManager.sqlite(join(dir, 'runs.db')) });
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    const id = 'a string of 1 to 200 characters without "/" or control characters';
    await expect(ctx.getRun(cyclic as never)).rejects.toThrow(invalid(`ctx.getRun(): runId: expected ${id}, got an object`));
    await expect(ctx.getRun({} as never)).rejects.toMatchObject({ code: ErrorCode.INVALID_OPTIONS });
    await expect(ctx.retry(Symbol('id') as never)).rejects.toMatchObject({ code: ErrorCode.INVALID_OPTIONS });
    const error = await ctx.getRun('x'.repeat(5_000_000)).catch((e: unknown) => e as FlowError);
    expect(error).toMatchObject({ code: ErrorCode.INVALID_OPTIONS });
    expect((error as FlowError).message.length).toBeLessThan(300);
    expect(() => ctx.events(5 as never)).toThrow(invalid(`ctx.events(): runId: expected ${id}, got 5`));
  });

  it('refuses a bad step, key, reason or switch of a run', async () => {
    const ctx = context();
    await expect(ctx.skip('r', {} as never)).rejects.toThrow(invalid('ctx.skip(): step: expected a step name of 1 to 128 characters, got an object'));
    await expect(ctx.cancel('r', 5 as never)).rejects.toThrow(invalid('ctx.cancel(): reason: expected a string, got 5'));
    await expect(ctx.submitInput('r', 'k'.repeat(201), 1)).rejects.toMatchObject({ code: ErrorCode.INVALID_OPTIONS });
    await expect(ctx.setHumanInLoop('r', 1 as never)).rejects.toThrow(invalid('ctx.setHumanInLoop(): on: expected true or false, got 1'));
  });

  it('refuses an unknown event type, a listener or a close hook that is not a function', () => {
    const ctx = context();
    expect(() => ctx.on('event', 5 as never)).toThrow(invalid('ctx.on(): listener: expected a function, got 5'));
    expect(() => ctx.once('nope' as 'event', () => {})).toThrow(/^ctx\.once\(\): type: expected "event", "run_start", .+, got "nope"$/);
    expect(() => ctx.beforeClose(5 as never)).toThrow(invalid('ctx.beforeClose(): fn: expected a function, got 5'));
    expect(() => ctx.listenerCount('nope' as never)).toThrow(ValidationError);
  });

  it('refuses listeners once closed', async () => {
    const ctx = context();
    await ctx.close();
    expect(() => ctx.on('event', () => {})).toThrow(expect.objectContaining({ code: ErrorCode.CONTEXT_CLOSED }));
  });

  it('names the flow argument that is not a Flow', async () => {
    const ctx = context();
    expect(() => ctx.register(5 as never)).toThrow('flow: expected a Flow, got 5');
    await expect(ctx.handle('r', 'x' as never)).rejects.toThrow('ctx.handle(): flow: expected a Flow, got "x"');
  });

  it('refuses class instances given as options objects, which zod takes as empty ones', async () => {
    expect(() => new FlowContext(new Date(0) as never)).toThrow(invalid('new FlowContext(): expected a plain object, got a Date (1970-01-01T00:00:00.000Z)'));
    expect(() => new FlowContext({ retry: new Map() as never })).toThrow(
      invalid('new FlowContext(): retry: expected a whole number of retries >= 0 or a retry policy object, got a Map'),
    );
    await expect(context().listRuns(new Map() as never)).rejects.toThrow(invalid('listRuns options: expected a plain object, got a Map'));
  });
});

describe('fuzz regressions: flows', () => {
  it('refuses a composite config that is not a plain object', () => {
    for (const config of [5, null, new Map()]) expect(() => Flow.parallel('p', config as never)).toThrow(expect.objectContaining({ code: ErrorCode.INVALID_CONFIG }));
    expect(() => Flow.sequential('s', 5 as never)).toThrow('flow "s": expected an object, got 5');
  });

  it('refuses a name among a composite’s options, which it would drop (found by the soak)', () => {
    expect(() => Flow.parallel('p', { name: 'other' } as never)).toThrow(expect.objectContaining({ code: ErrorCode.INVALID_CONFIG, message: expect.stringContaining('name') as string }));
    expect(() => Flow.sequential('s', { name: null } as never)).toThrow(expect.objectContaining({ code: ErrorCode.INVALID_CONFIG }));
  });

  it('shows a 5 MB name shortened, not in full', () => {
    const error = (() => {
      try {
        return new Flow(new AddOne(), { name: 'x'.repeat(5_000_000) });
      } catch (e) {
        return e as FlowError;
      }
    })() as FlowError;
    expect(error.code).toBe(ErrorCode.INVALID_CONFIG);
    expect(error.message.length).toBeLessThan(300);
    expect(error.message.startsWith('flow "?": name: expected a name of 1 to 128 characters')).toBe(true);
  });

  it('refuses a dependency that is neither a Flow nor a flow name, saying which and what it got', () => {
    const child = (): Flow => new Flow(new AddOne(), { name: 'child' });
    expect(() => child().registerTo(Flow.parallel('p'), { required: [Symbol('d') as never] })).toThrow(
      'flow "child": registerTo options: required[0]: expected a Flow or a flow name (a name of 1 to 128 characters without "/" or control characters), got a symbol (Symbol(d))',
    );
    expect(() => child().registerTo(Flow.parallel('p'), { optional: ['ok', ''] })).toThrow(expect.objectContaining({ code: ErrorCode.DEPENDENCY, message: expect.stringContaining('optional[1]') }));
    expect(() => child().registerTo(5 as never)).toThrow('flow "child": registerTo(): parent: expected a composite (Flow.parallel or Flow.sequential), got 5');
  });

  it('toMermaid refuses a run that is not one and a direction it does not draw', () => {
    const flow = new Flow(new AddOne(), { name: 'add' });
    expect(() => flow.toMermaid({ run: 5 } as never)).toThrow(invalid('flow "add": toMermaid() options: run: expected an object, got 5'));
    expect(() => flow.toMermaid({ direction: 'TD\nclick n0 evil' } as never)).toThrow(ValidationError);
  });
});

describe('fuzz regressions: the test kit', () => {
  it('createTestContext refuses null and an own __proto__ key', () => {
    expect(() => createTestContext(null as never)).toThrow(invalid('createTestContext(): expected an object, got null'));
    expect(() => createTestContext(JSON.parse('{"__proto__": {"polluted": true}}') as never)).toThrow(invalid('createTestContext(): __proto__: expected no "__proto__" key, got an object'));
  });

  it('t.start refuses options that are not an object, and a flow that is not one leaves restart working', async () => {
    const t = testContext();
    const flow = new Flow(new AddOne(), { name: 'add' });
    expect(() => t.start(flow, { n: 1 }, /re/ as never)).toThrow(invalid('run options: expected a plain object, got a RegExp'));
    expect(() => t.start(flow, { n: 1 }, 5 as never)).toThrow(invalid('run options: expected an object, got 5'));
    expect(() => t.start(5 as never, {})).toThrow('flow: expected a Flow, got 5');
    await t.restart();
    expect((await t.run(flow, { n: 1 })).runId).toBe('run-1');
  });

  it('refuses a result, a flow or a run that is not one, instead of a TypeError', async () => {
    const t = testContext();
    expect(() => t.expectSteps(null as never)).toThrow(invalid('t.expectSteps(): expected an object, got null'));
    expect(() => t.summary(5 as never)).toThrow(invalid('t.summary(): expected an object, got 5'));
    await expect(t.runStep(null as never, {})).rejects.toThrow(invalid('t.runStep(): flow: expected a Flow, got null'));
    await expect(t.result(null as never)).rejects.toMatchObject({ code: ErrorCode.INVALID_OPTIONS });
  });

  it('t.step refuses deps with an own __proto__ key, and reads an optional dependency not given as undefined', async () => {
    const t = testContext();
    expect(() => t.step({ deps: JSON.parse('{"__proto__": 1}') as Record<string, unknown> })).toThrow(invalid('t.step(): deps.__proto__: expected no "__proto__" key, got 1'));
    const parent = Flow.parallel('p');
    const flow = new Flow(new Fn(() => 1), { name: 'reads' }).registerTo(parent, { optional: ['toString'] });
    expect(await t.step({ flow }).deps.get('toString')).toBeUndefined();
  });
});

describe('fuzz regressions: the adapters', () => {
  it('refuse what is not a FlowContext, or a closed one, and bad options', async () => {
    const ctx = context();
    expect(() => createHandler({} as never)).toThrow(invalid('createHandler(): ctx: expected a FlowContext, got an object'));
    expect(() => instrument(null as never)).toThrow(invalid('instrument(): ctx: expected a FlowContext, got null'));
    expect(() => instrument(ctx, { tracer: 5 as never })).toThrow(invalid('instrument() options: tracer: expected an OpenTelemetry Tracer, got 5'));
    expect(() => createMcpServer(ctx, { name: 5 as never })).toThrow(invalid('createMcpServer() options: name: expected a string of 1 to 200 characters, got 5'));
    await expect(serve(ctx, null as never)).rejects.toThrow(invalid('serve() options: expected an object, got null'));
    await ctx.close();
    await expect(serve(ctx)).rejects.toThrow(expect.objectContaining({ code: ErrorCode.CONTEXT_CLOSED, message: 'serve(): the FlowContext is closed' }));
  });

  it('take a test context’s FlowContext', () => {
    const t = testContext();
    expect(typeof createHandler(t.ctx)).toBe('function');
  });
});
