/**
 * Fuzzed arguments of the exported functions and constructors that are not a context's methods:
 * the error classes and errors as data, `registerErrorClass`, `transfer`, the ResultsManager
 * factories, the test kit's calls, and the adapters given something that is not a FlowContext.
 */
import fc from 'fast-check';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  CancelledError,
  CycleError,
  DependencyError,
  ErrorCode,
  FatalError,
  Flow,
  FlowError,
  fromErrorData,
  InputRequiredError,
  registerErrorClass,
  ResultsManager,
  RetryableError,
  TimeoutError,
  toErrorData,
  transfer,
  UpstreamFailedError,
  ValidationError,
} from '../../src/index.js';
import { createHandler, serve } from '../../src/http/index.js';
import { createMcpServer, serveMcpStdio } from '../../src/mcp/index.js';
import { instrument } from '../../src/otel/index.js';
import { createTestContext, type TestContext } from '../../src/testing/index.js';
import { AddOne } from '../fixtures/processors.js';
import { fcParams, Tally } from '../support/property.js';
import { anyBad, type Bad, DOCUMENTED_CODES, expectNoPollution, refusedAsync, refusedSync, tried, v, watchUnhandled, wrongType } from './bad-values.js';

const unhandled = watchUnhandled();
beforeAll(() => unhandled.start());
afterAll(() => {
  unhandled.check();
  expectNoPollution();
  const tally = new Tally('fuzz functions');
  tally.add('bad inputs', tried.count);
  tally.report();
});

const RUN_ID = v.str(1, 200, /^[^/\p{Cc}]+$/u);
const CLASSES = [FlowError, FatalError, RetryableError, InputRequiredError, TimeoutError, CancelledError, CycleError, DependencyError, ValidationError, UpstreamFailedError] as const;
const notString = anyBad.filter((b) => { const x = b.make(); return x !== undefined && typeof x !== 'string'; });

describe('fuzzed errors', () => {
  it('builds an error or refuses its arguments with WEIR_INVALID_OPTIONS, never a TypeError', () => {
    const fields = ['code', 'timeout', 'cycle', 'dependency', 'upstream', 'issues'];
    const options = fc.oneof(
      notString.filter((b) => { const x = b.make(); return typeof x !== 'object' || x === null || Array.isArray(x); }).map((b) => ({ path: ['options'], bad: b, build: (x: unknown) => x })),
      fc.tuple(fc.constantFrom(...fields), anyBad.filter((b) => b.make() !== undefined)).map(([field, b]) => ({ path: ['options', field], bad: b, build: (x: unknown) => ({ [field]: x }) })),
    );
    fc.assert(
      fc.property(fc.constantFrom(...CLASSES), fc.oneof(notString.map((b) => ({ path: ['message'], bad: b, build: null })), options), (Class, c) => {
        const given = c.bad.make();
        const make = (): Error => (c.build === null ? new Class(given as string) : new Class('message', c.build(given) as never));
        let built: Error;
        try {
          built = make();
        } catch (error) {
          const e = refusedSync(() => { throw error; }, { code: ErrorCode.INVALID_OPTIONS, path: c.path, given });
          expect(e.message.startsWith(`new ${Class.name}(): `)).toBe(true);
          return;
        }
        // Taken only where the value is right for the field (`code` of a string, say).
        tried.count++;
        expect(built).toBeInstanceOf(FlowError);
        expect(typeof (built as FlowError).code).toBe('string');
      }),
      fcParams(200),
    );
  });

  it('turns any thrown value into data that fromErrorData rebuilds', () => {
    // Plain errors named as weir's classes, with fields of any kind: rebuilt as those classes.
    const named = fc
      .tuple(fc.constantFrom(...CLASSES.map((C) => C.name), 'constructor', '__proto__'), fc.constantFrom('timeout', 'cycle', 'dependency', 'upstream', 'issues', 'code'), anyBad)
      .map(([name, field, bad]) => Object.assign(new Error('x'), { name, [field]: bad.make() }));
    const thrown = fc.oneof(anyBad.map((b) => b.make()), named, fc.constantFrom(...CLASSES).map((C) => Object.assign(new C('x'), { name: 5 })), fc.anything());
    fc.assert(
      fc.property(thrown, (value) => {
        const data = toErrorData(value);
        expect(typeof data.name).toBe('string');
        expect(typeof data.message).toBe('string');
        expect(fromErrorData(data)).toBeInstanceOf(Error);
        tried.count++;
      }),
      fcParams(100),
    );
  });

  it('refuses data that is not ErrorData, naming the field, and bounds a cyclic cause chain', () => {
    const base = { name: 'FatalError', message: 'm', code: 'WEIR_FATAL', retryable: false };
    const field = fc.constantFrom('name', 'message', 'code', 'retryable', 'stack', 'step', 'issues', 'details', 'kind');
    const valid: Record<string, (x: unknown) => boolean> = { name: v.str(), message: v.str(), code: v.str(1), retryable: v.bool, stack: v.str(), step: v.str(), kind: v.str(), issues: Array.isArray, details: (x) => typeof x === 'object' && x !== null && [Object.prototype, null].includes(Object.getPrototypeOf(x) as object | null) };
    fc.assert(
      fc.property(field, anyBad, fc.integer({ min: 0, max: 3 }), (key, bad, depth) => {
        const given = bad.make();
        if (valid[key]!(given) || given === undefined) return;
        let data: Record<string, unknown> = { ...base, [key]: given };
        for (let i = 0; i < depth; i++) data = { ...base, cause: data };
        refusedSync(() => fromErrorData(data as never), { code: ErrorCode.INVALID_OPTIONS, path: ['data', ...Array<string>(depth).fill('cause'), key], given });
      }),
      fcParams(100),
    );
    fc.assert(
      fc.property(wrongType, (bad) => void refusedSync(() => fromErrorData(bad.make() as never), { code: ErrorCode.INVALID_OPTIONS })),
      fcParams(20),
    );
    const cyclic: Record<string, unknown> = { ...base };
    cyclic.cause = cyclic;
    let depth = 0;
    for (let e: unknown = fromErrorData(cyclic as never); e instanceof Error; e = e.cause) depth++;
    expect(depth).toBe(6);
  });

  it('refuses registerErrorClass of what is not an Error class, and transfer of what cannot move', () => {
    fc.assert(
      fc.property(anyBad, (bad) => {
        const given = bad.make();
        refusedSync(() => registerErrorClass(given as never), { code: ErrorCode.INVALID_OPTIONS, path: ['ctor'], given });
        if (given !== undefined && typeof given !== 'string') refusedSync(() => registerErrorClass(class Named extends Error {}, given as never), { code: ErrorCode.INVALID_OPTIONS, path: ['name'] });
        refusedSync(() => transfer(given), { code: ErrorCode.INVALID_OPTIONS, path: ['value'], given });
        const emptyList = Array.isArray(given) && given.length === 0;
        if (given !== undefined && !emptyList) refusedSync(() => transfer(new ArrayBuffer(1), given as never), { code: ErrorCode.INVALID_OPTIONS, path: ['transferList'] });
      }),
      fcParams(60),
    );
  });
});

describe('fuzzed first arguments of the ResultsManager factories', () => {
  it('refuses a dir, file, Keyv or Postgres target of the wrong kind, naming it', () => {
    const factories: [string, (x: unknown) => unknown, (x: unknown) => boolean][] = [
      ['dir', (x) => ResultsManager.disk(x as string), v.str(1)],
      ['file', (x) => ResultsManager.sqlite(x as string), v.str(1)],
      ['keyv', (x) => ResultsManager.keyv(x as never), v.none],
      ['target', (x) => ResultsManager.postgres(x as string), v.str(0, Infinity, /^postgres(ql)?:\/\//)],
    ];
    fc.assert(
      fc.property(fc.constantFrom(...factories), anyBad, ([path, make, valid], bad) => {
        const given = bad.make();
        if (valid(given)) return;
        refusedSync(() => make(given), { code: ErrorCode.INVALID_OPTIONS, path: [path], given });
      }),
      fcParams(80),
    );
  });
});

describe('fuzzed arguments of the test kit', () => {
  let t: TestContext;
  const flow = new Flow(new AddOne(), { name: 'add' });
  beforeEach(() => {
    t = createTestContext();
  });
  afterEach(async () => {
    await t.close();
  });

  it('refuses a bad step, duration, run, result or flow, and still runs afterwards', async () => {
    const sync: [string, (x: unknown) => unknown, (x: unknown) => boolean][] = [
      ['t.mock', (x) => t.mock(x as string, 1), (x) => typeof x === 'string' && x !== ''],
      ['t.fail', (x) => t.fail(x as string, new Error('x')), (x) => typeof x === 'string' && x !== ''],
      ['t.crashAfter', (x) => t.crashAfter(x as string), (x) => typeof x === 'string' && x !== ''],
      ['t.crashBefore', (x) => t.crashBefore(x as string), (x) => typeof x === 'string' && x !== ''],
      ['t.expectSteps', (x) => t.expectSteps(x as never), v.none],
      ['t.summary', (x) => t.summary(x as never), v.none],
      ['t.start', (x) => t.start(x as Flow, {}), v.none],
    ];
    const async: [string, (x: unknown) => unknown, (x: unknown) => boolean][] = [
      ['t.advance', (x) => t.advance(x as number), v.or(v.num(0), v.str(0, Infinity, /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$/))],
      // A well-formed id of no run is another refusal (WEIR_RUN_NOT_FOUND), or none (an empty log).
      ['t.result', (x) => t.result(x as string), RUN_ID],
      ['t.answer', (x) => t.answer(x as string, 'k', 1), RUN_ID],
      ['t.eventLog', (x) => t.eventLog(x as string), RUN_ID],
      ['t.run', (x) => t.run(x as Flow, {}), v.none],
      ['t.runStep', (x) => t.runStep(x as Flow, {}), v.none],
    ];
    const calls = fc.oneof(fc.constantFrom(...sync).map((c) => ['sync', ...c] as const), fc.constantFrom(...async).map((c) => ['async', ...c] as const));
    await fc.assert(
      fc.asyncProperty(calls, anyBad, async ([how, , call, valid], bad: Bad) => {
        const given = bad.make();
        if (valid(given)) return;
        const error = how === 'sync' ? refusedSync(() => call(given)) : await refusedAsync(() => call(given));
        expect(error.message).toMatch(/expected .+, got /);
      }),
      fcParams(120),
    );
    // A refused t.start left nothing behind: the context restarts and runs.
    await t.restart();
    expect((await t.run(flow, { n: 1 })).output).toEqual({ n: 2 });
  });
});

describe('fuzzed contexts given to the adapters', () => {
  it('refuses what is not a FlowContext, naming ctx, before it listens or connects', async () => {
    const sync: [string, (x: unknown) => unknown][] = [
      ['createHandler', (x) => createHandler(x as never)],
      ['createMcpServer', (x) => createMcpServer(x as never)],
      ['instrument', (x) => instrument(x as never)],
    ];
    const async: [string, (x: unknown) => unknown][] = [
      ['serve', (x) => serve(x as never)],
      ['serveMcpStdio', (x) => serveMcpStdio(x as never)],
    ];
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...sync, ...async), anyBad, async ([name, call], bad) => {
        const given = bad.make();
        const expected = { code: ErrorCode.INVALID_OPTIONS, path: ['ctx'], given };
        if (async.some(([n]) => n === name)) await refusedAsync(() => call(given), expected);
        else refusedSync(() => call(given), expected);
      }),
      fcParams(60),
    );
    expect(DOCUMENTED_CODES.size).toBeGreaterThan(30);
  });
});
