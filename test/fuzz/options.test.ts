/**
 * Fuzzed options objects of every public call that takes one: a bad value for one option (wrong
 * type, out of range, non-cloneable, cyclic, 1–5 MB, polluting keys), an unknown key, or options
 * that are not an options object at all. Each must be refused with a FlowError of a documented
 * code whose message names the option, what it takes and what it got, thrown by synchronous calls
 * and rejected by the others; on a SQLite store a refused call leaves no run behind.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCode, Flow, FlowContext, ResultsManager, type RunHandle } from '../../src/index.js';
import { createHandler, serve } from '../../src/http/index.js';
import { createMcpServer } from '../../src/mcp/index.js';
import { instrument } from '../../src/otel/index.js';
import { createTestContext, type TestContext } from '../../src/testing/index.js';
import { MAX_DELAY } from '../../src/util/clock.js';
import { AddOne } from '../fixtures/processors.js';
import { fcParams, Tally } from '../support/property.js';
import { anyBad, badOption, type Bad, expectNoPollution, nested, opt, type OptionSpec, polluting, refusedAsync, refusedSync, tried, unknownKey, v, watchUnhandled, wrongType } from './bad-values.js';

const NAME = /^[^/\p{Cc}]+$/u;
const RUN_ID = v.str(1, 200, NAME);
const STATUSES = ['pending', 'running', 'waiting', 'completed', 'failed', 'cancelled', 'skipped'];
const ms = (min: number): ReturnType<typeof v.int> => v.int(min, MAX_DELAY);
const retry: OptionSpec[] = [
  opt('retry', v.int(0)),
  opt('retry.maxAttempts', v.int(1)),
  opt('retry.initialInterval', v.num(0, MAX_DELAY)),
  opt('retry.backoffFactor', v.num(1)),
  opt('retry.maxInterval', v.num(0, MAX_DELAY)),
  opt('retry.jitter', v.num(0, 1)),
  opt('retry.retryOn', v.fn),
];
const context: OptionSpec[] = [
  opt('results', v.none),
  opt('concurrency', v.or(v.int(1), v.oneOf(Infinity))),
  ...retry,
  opt('timeout', ms(1)),
  opt('closeTimeout', ms(0)),
  opt('threads', v.none),
  opt('threads.max', v.int(1)),
  opt('threads.idleTimeout', ms(0)),
  opt('threads.spinMicros', v.int(0, 1000)),
  opt('threads.resourceLimits.stackSizeMb', v.num(Number.MIN_VALUE)),
  opt('processes.execArgv', v.strings),
  opt('processes.abortGrace', ms(0)),
  opt('processes.spinMicros', v.int(0, 1000)),
  opt('recover', v.bool),
  opt('leaseTimeout', ms(100)),
  opt('maxRecoveries', v.int(0)),
  opt('onFlowChange', v.oneOf('fail', 'continue')),
  opt('inputTimeout', ms(1)),
  opt('inputFallback', v.oneOf('fail', 'default', 'batch')),
  opt('queue.concurrency', v.int(1)),
  opt('queue.pollInterval', ms(10)),
];
const composite: OptionSpec[] = [
  opt('description', v.str()),
  opt('timeout', ms(1)),
  ...retry,
  opt('heartbeatTimeout', ms(1)),
  opt('allowFailure', v.bool),
  opt('version', v.str(1, 64, /^[^\p{Cc}]+$/u)),
  opt('concurrency', v.int(1)),
  opt('keyConcurrency', v.int(1)),
];
const leaf: OptionSpec[] = [opt('name', v.str(1, 128, NAME)), ...composite, opt('type', v.oneOf('inline', 'thread', 'process'))];
const runOptions: OptionSpec[] = [
  opt('mode', v.oneOf('batch', 'interactive', 'hybrid')),
  opt('humanInLoop', v.bool),
  opt('timeout', ms(1)),
  opt('runId', RUN_ID),
  opt('signal', v.none),
  opt('concurrency', v.int(1)),
];
const duration = v.or(v.num(0, Number.MAX_SAFE_INTEGER), v.str(0, Infinity, /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$/));
const handler: OptionSpec[] = [
  opt('prefix', v.str(0, Infinity, /^(\/[\w.~-]+)*$/)),
  opt('authorize', v.fn),
  opt('allowRemote', v.bool),
  opt('bodyLimit', v.int(1)),
  opt('keepAlive', v.int(1)),
];
const age = v.or(v.num(0), v.date);
/** Dependencies by name (no Flow is ever generated). */
const names: ReturnType<typeof v.int> = (x) => Array.isArray(x) && x.every(v.str(1, 128, NAME));
/** A record of outputs by name: a plain object without an own `__proto__` key (any other name is a flow's). */
const record: ReturnType<typeof v.int> = (x) =>
  typeof x === 'object' && x !== null && [Object.prototype, null].includes(Object.getPrototypeOf(x) as object | null) && !Object.hasOwn(x, '__proto__');

/** One call that takes an options object, and what its options take. */
interface OptionsApi {
  readonly name: string;
  readonly specs: readonly OptionSpec[];
  /** Keys it knows besides those of `specs` (an unknown key must be none of them). */
  readonly known?: readonly string[];
  /** What every generated options object starts from (a flow's name, say). */
  readonly base?: Readonly<Record<string, unknown>>;
  readonly how: 'sync' | 'async';
  readonly code?: string;
  /** Where the options sit in the message's paths (`options.table` for `ResultsManager.sqlite(file, options)`). */
  readonly prefix?: readonly string[];
  /** A code the call may give instead, for a value its own check reports (`registerTo`'s dependencies). */
  readonly alternative?: string;
  /** Makes the call; `undefined` options are left out. */
  call(options: unknown): unknown;
  /** Whether the store must be as it was after the call. */
  readonly durable?: boolean;
}

/** One generated case: the options, and what the refusal must name. */
interface Case {
  readonly label: string;
  build(): { options: unknown; path?: readonly PropertyKey[]; given?: unknown };
}

function caseLabel<C extends Case>(c: C): C {
  return Object.assign(c, { [fc.toStringMethod]: () => c.label });
}

function casesOf(api: OptionsApi): fc.Arbitrary<Case> {
  const known = [...new Set([...api.specs.map((s) => s.path[0]!), ...(api.known ?? [])])];
  const base = api.base ?? {};
  const oneBad = badOption(api.specs).map(({ spec, value }) =>
    caseLabel({
      label: `${spec.path.join('.')} = ${value.label}`,
      build: () => {
        const given = value.make();
        const options = { ...base, ...nested(spec.path, given) };
        return { options, path: [...(api.prefix ?? []), ...spec.path], given };
      },
    }),
  );
  const unknown = fc.tuple(unknownKey(known), anyBad).map(([key, value]) =>
    caseLabel({
      label: `unknown key ${JSON.stringify(key)} = ${value.label}`,
      build: () => ({ options: { ...base, [key]: value.make() }, path: [...(api.prefix ?? []), key] }),
    }),
  );
  // Whole options that are no options object: other types, class instances, cyclic or polluting objects.
  const whole = fc.oneof(wrongType, polluting).filter((b) => isEmptyPlainObject(b) === false).map((value: Bad) => caseLabel({ label: `options = ${value.label}`, build: () => ({ options: value.make() }) }));
  return fc.oneof({ arbitrary: oneBad, weight: 4 }, { arbitrary: unknown, weight: 1 }, { arbitrary: whole, weight: 1 });
}

/** `undefined` options are defaults, and `{}` often is: neither is bad. */
function isEmptyPlainObject(bad: Bad): boolean {
  const value = bad.make();
  return value === undefined || (typeof value === 'object' && value !== null && Object.getPrototypeOf(value) === Object.prototype && Object.keys(value).length === 0);
}

let dir: string;
let ctx: FlowContext;
let flow: Flow<{ n: number }, { n: number }>;
let done: RunHandle<{ n: number }>;
let t: TestContext;
const unhandled = watchUnhandled();

beforeAll(async () => {
  unhandled.start();
  dir = mkdtempSync(join(tmpdir(), 'weir-fuzz-options-'));
  ctx = new FlowContext({ results: ResultsManager.sqlite(join(dir, 'runs.db')) });
  flow = new Flow(new AddOne(), { name: 'add' });
  ctx.register(flow);
  done = ctx.start(flow, { n: 1 }, { runId: 'done' });
  await done.result();
  t = createTestContext();
});

afterAll(async () => {
  await t.close();
  await ctx.close();
  await FlowContext.getInstance().close();
  rmSync(dir, { recursive: true, force: true });
  unhandled.check();
  expectNoPollution();
  const tally = new Tally('fuzz options');
  tally.add('bad inputs', tried.count);
  tally.report();
});

/** The ids of the runs in the store. */
async function runIds(): Promise<string[]> {
  return (await ctx.listRuns({ limit: 10_000 })).runs.map((r) => r.runId).sort();
}

const apis: OptionsApi[] = [
  { name: 'new FlowContext()', specs: context, how: 'sync', call: (o) => new FlowContext(o as never) },
  { name: 'new Flow()', specs: leaf, base: { name: 'f' }, how: 'sync', code: ErrorCode.INVALID_CONFIG, call: (o) => new Flow(new AddOne(), o as never) },
  { name: 'Flow.parallel()', specs: composite, how: 'sync', code: ErrorCode.INVALID_CONFIG, call: (o) => Flow.parallel('p', o as never) },
  { name: 'Flow.sequential()', specs: composite, how: 'sync', code: ErrorCode.INVALID_CONFIG, call: (o) => Flow.sequential('s', o as never) },
  {
    name: 'flow.registerTo()',
    specs: [opt('required', names), opt('optional', names)],
    how: 'sync',
    alternative: ErrorCode.DEPENDENCY,
    call: (o) => new Flow(new AddOne(), { name: 'child' }).registerTo(Flow.parallel('parent'), o as never),
  },
  { name: 'flow.toMermaid()', specs: [opt('direction', v.oneOf('TD', 'LR')), opt('run', v.none)], how: 'sync', call: (o) => flow.toMermaid(o as never) },
  { name: 'ctx.start()', specs: runOptions, how: 'sync', durable: true, call: (o) => ctx.start(flow, { n: 1 }, o as never) },
  { name: 'ctx.run()', specs: runOptions, how: 'async', durable: true, call: (o) => ctx.run(flow, { n: 1 }, o as never) },
  { name: 'flow.execute()', specs: runOptions, how: 'async', call: (o) => flow.execute({ n: 1 }, o as never) },
  {
    name: 'ctx.enqueue()',
    specs: [...runOptions.filter((s) => ['mode', 'humanInLoop', 'runId'].includes(s.path[0]!)), opt('priority', v.int(-1_000_000, 1_000_000)), opt('concurrencyKey', v.str(1, 200))],
    how: 'async',
    durable: true,
    call: (o) => ctx.enqueue(flow, { n: 1 }, o as never),
  },
  {
    name: 'ctx.listRuns()',
    specs: [
      opt('status', v.or(v.oneOf(...STATUSES), (x) => Array.isArray(x) && x.every((s) => STATUSES.includes(s as string)))),
      opt('flow', v.str(1)),
      opt('limit', v.int(1, 10_000)),
      opt('before', v.str(1)),
      opt('stale', v.bool),
      opt('stranded', v.bool),
    ],
    how: 'async',
    durable: true,
    call: (o) => ctx.listRuns(o as never),
  },
  { name: 'ctx.prune()', specs: [opt('olderThan', age)], how: 'async', durable: true, call: (o) => ctx.prune(o as never) },
  { name: 'ctx.resume()', specs: [opt('from', v.str(1))], how: 'async', durable: true, call: (o) => ctx.resume('done', o as never) },
  { name: 'ctx.events()', specs: [opt('after', v.int(0)), opt('signal', v.none)], how: 'sync', call: (o) => ctx.events('done', o as never) },
  { name: 'handle.events()', specs: [opt('after', v.int(0)), opt('signal', v.none)], how: 'sync', call: (o) => done.events(o as never) },
  { name: 'ResultsManager.memory()', specs: [opt('keepFinishedRuns', v.or(v.int(0, Infinity), v.oneOf(Infinity))), opt('checkSerializable', v.bool)], how: 'sync', call: (o) => ResultsManager.memory(o as never) },
  {
    name: 'ResultsManager.sqlite()',
    specs: [opt('table', v.str(1, Infinity, /^[A-Za-z_][A-Za-z0-9_]*$/)), opt('synchronous', v.oneOf('NORMAL', 'FULL')), opt('busyTimeout', v.int(0))],
    how: 'sync',
    prefix: ['options'],
    call: (o) => ResultsManager.sqlite(join(dir, 'never.db'), o as never),
  },
  {
    name: 'ResultsManager.postgres()',
    specs: [opt('schema', v.str(1, 63, /^[a-z_][a-z0-9_]{0,62}$/)), opt('poolSize', v.int(3)), opt('reconnectFor', v.int(0))],
    how: 'sync',
    prefix: ['options'],
    call: (o) => ResultsManager.postgres('postgres://weir@127.0.0.1:1/none', o as never),
  },
  { name: 'results.cleanup()', specs: [opt('olderThan', age)], how: 'async', call: (o) => ctx.results.cleanup(o as never) },
  {
    name: 'createTestContext()',
    specs: [opt('store', v.oneOf('memory', 'sqlite')), opt('startTime', age), opt('stepWait', duration), ...context.filter((s) => s.path[0] !== 'results')],
    how: 'sync',
    call: (o) => createTestContext(o as never),
  },
  {
    name: 't.step()',
    specs: [opt('flow', v.none), opt('name', v.str(1)), opt('runId', v.str(1)), opt('attempt', v.int(1)), opt('deps', record), opt('answers', record)],
    how: 'sync',
    call: (o) => t.step(o as never),
  },
  { name: 't.fail()', specs: [opt('times', v.int(1))], how: 'sync', call: (o) => t.fail('never-run', new Error('x'), o as never) },
  { name: 't.failStore()', specs: [opt('on', v.oneOf('create', 'commit', 'input', 'lease', 'write')), opt('times', v.int(1)), opt('step', v.str(1))], base: { on: 'commit' }, how: 'sync', known: ['error'], call: (o) => t.failStore(o as never) },
  { name: 't.restart()', specs: [opt('downtime', duration)], how: 'async', call: (o) => t.restart(o as never) },
  { name: 't.run()', specs: runOptions.filter((s) => s.path[0] !== 'runId'), how: 'async', call: (o) => t.run(flow, { n: 1 }, o as never) },
  { name: 't.runStep()', specs: [opt('deps', record), ...runOptions.filter((s) => s.path[0] !== 'runId')], how: 'async', call: (o) => t.runStep(flow, { n: 1 }, o as never) },
  { name: 'createHandler()', specs: handler, how: 'sync', call: (o) => createHandler(ctx, o as never) },
  { name: 'serve()', specs: [opt('port', v.int(0, 65_535)), opt('host', v.str(1)), ...handler], how: 'async', call: (o) => serve(ctx, o as never) },
  { name: 'createMcpServer()', specs: [opt('name', v.str(1, 200)), opt('version', v.str(1, 200))], how: 'sync', call: (o) => createMcpServer(ctx, o as never) },
  { name: 'instrument()', specs: [opt('tracer', v.none), opt('meter', v.none)], how: 'sync', call: (o) => instrument(ctx, o as never) },
];

describe('fuzzed options', () => {
  for (const api of apis) {
    it(`${api.name} refuses a bad option, an unknown key or options of another type, naming what was wrong`, async () => {
      const before = api.durable === true ? await runIds() : [];
      await fc.assert(
        fc.asyncProperty(casesOf(api), async (c) => {
          const { options, path, given } = c.build();
          const code = api.alternative !== undefined && Array.isArray(given) ? api.alternative : (api.code ?? ErrorCode.INVALID_OPTIONS);
          const expected = { code, ...(path === undefined ? {} : { path }), ...(given === undefined ? {} : { given }) };
          const error = api.how === 'sync' ? refusedSync(() => api.call(options), expected) : await refusedAsync(() => api.call(options), expected);
          if (path === undefined) expect(error.message).toMatch(/expected .+, got /);
          if (api.durable === true) expect(await runIds()).toEqual(before);
        }),
        fcParams(api.durable === true ? 40 : 60),
      );
      expectNoPollution();
      // The store still works for a good call.
      if (api.durable === true) expect((await ctx.run(flow, { n: 2 })).output).toEqual({ n: 3 });
    });
  }
});
