/**
 * Fuzzed arguments of a FlowContext on a SQLite file and of its ResultsManager: run ids, steps,
 * keys, flows and listeners of every kind of wrong; run inputs, step outputs, skipped outputs,
 * answers and stored values that cannot be stored, are cyclic, huge or carry polluting keys. Each
 * refusal is a FlowError of a documented code, thrown or rejected as the call is synchronous or
 * not; nothing hangs, and the store keeps no new or partial run and still works afterwards.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { z } from 'zod';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCode, FatalError, Flow, FlowContext, ResultsManager, type RunInfo, type Step } from '../../src/index.js';
import { AddOne, Fn } from '../fixtures/processors.js';
import { fcParams, Tally } from '../support/property.js';
import { anyBad, type Bad, cyclicObject, DOCUMENTED_CODES, expectFlowError, expectNoPollution, huge, nonCloneable, polluting, refusedAsync, refusedSync, settled, tried, v, watchUnhandled, wrongType } from './bad-values.js';

const RUN_ID = v.str(1, 200, /^[^/\p{Cc}]+$/u);
const label = (text: string, make: () => unknown): Bad => ({ label: text, make, [fc.toStringMethod]: () => text }) as Bad;

/** Strings that look like ids but are not, and every other bad value. */
const badRunId: fc.Arbitrary<Bad> = fc.oneof(
  fc.constantFrom('', 'a/b', 'tab\there', 'nul\u0000', '\n', 'x'.repeat(201)).map((s) => label(JSON.stringify(s.slice(0, 20)), () => s)),
  anyBad.filter((b) => !RUN_ID(b.make())),
);
/** Ids of runs that do not exist. */
const absentRunId: fc.Arbitrary<string> = fc.stringMatching(/^[a-zA-Z0-9 ._:-]{1,40}$/).map((s) => `absent-${s}`);

let dir: string;
let ctx: FlowContext;
let add: Flow<{ n: number }, { n: number }>;
let echo: Flow;
let failedRun: string;
let waitingRun: string;
const unhandled = watchUnhandled();

beforeAll(async () => {
  unhandled.start();
  dir = mkdtempSync(join(tmpdir(), 'weir-fuzz-arguments-'));
  ctx = new FlowContext({ results: ResultsManager.sqlite(join(dir, 'runs.db')) });
  add = new Flow(new AddOne(), { name: 'add' });
  echo = new Flow(new Fn((input) => input), { name: 'echo' });
  const fails = new Flow(new Fn(() => Promise.reject(new FatalError('no'))), { name: 'fails' });
  const asks = new Flow(new Fn((_input, step) => step.waitForInput('answer', z.unknown())), { name: 'asks' });
  for (const flow of [add, echo, fails, asks]) ctx.register(flow);
  failedRun = (await ctx.run(fails, {})).runId;
  const waiting = ctx.start(asks, {}, { mode: 'interactive', runId: 'waiting' });
  waitingRun = waiting.runId;
  while ((await ctx.getRun(waitingRun)).status !== 'waiting') await new Promise((resolve) => setImmediate(resolve));
});

afterAll(async () => {
  await ctx.close();
  rmSync(dir, { recursive: true, force: true });
  unhandled.check();
  expectNoPollution();
  const tally = new Tally('fuzz arguments');
  tally.add('bad inputs', tried.count);
  tally.report();
});

/** Every run in the store, by id, as listRuns shows it. */
async function runs(): Promise<Map<string, string>> {
  return new Map((await ctx.listRuns({ limit: 10_000 })).runs.map((r) => [r.runId, `${r.status}:${r.updatedAt}`]));
}

/** Runs `property` over `arbitrary`; the store must hold the same runs afterwards, and still run a flow. */
async function unchanged<T>(arbitrary: fc.Arbitrary<T>, runs_: number, property: (value: T) => Promise<void>): Promise<void> {
  const before = await runs();
  await fc.assert(
    fc.asyncProperty(arbitrary, async (value) => {
      await property(value);
      expect(await runs()).toEqual(before);
    }),
    fcParams(runs_),
  );
  expectNoPollution();
  expect((await ctx.run(add, { n: 1 })).output).toEqual({ n: 2 });
}

describe('fuzzed arguments of a FlowContext on SQLite', () => {
  const byRunId: [string, (runId: unknown) => unknown][] = [
    ['ctx.getRun()', (id) => ctx.getRun(id as string)],
    ['ctx.handle()', (id) => ctx.handle(id as string)],
    ['ctx.resume()', (id) => ctx.resume(id as string)],
    ['ctx.retry()', (id) => ctx.retry(id as string)],
    ['ctx.cancel()', (id) => ctx.cancel(id as string)],
    ['ctx.skip()', (id) => ctx.skip(id as string, 'fails', 1)],
    ['ctx.submitInput()', (id) => ctx.submitInput(id as string, 'answer', 1)],
    ['ctx.setHumanInLoop()', (id) => ctx.setHumanInLoop(id as string, true)],
  ];

  it('refuses a run id that is not one, naming runId, in every call that takes one', async () => {
    await unchanged(fc.tuple(fc.constantFrom(...byRunId), badRunId), 200, async ([[, call], id]) => {
      const given = id.make();
      await refusedAsync(() => call(given), { code: ErrorCode.INVALID_OPTIONS, path: ['runId'], given });
    });
    fc.assert(
      fc.property(badRunId, (id) => {
        const given = id.make();
        refusedSync(() => ctx.events(given as string), { code: ErrorCode.INVALID_OPTIONS, path: ['runId'], given });
      }),
      fcParams(30),
    );
  });

  it('says WEIR_RUN_NOT_FOUND for a well-formed id of no run', async () => {
    await unchanged(fc.tuple(fc.constantFrom(...byRunId), absentRunId), 60, async ([[, call], id]) => {
      await refusedAsync(() => call(id), { code: ErrorCode.RUN_NOT_FOUND });
    });
  });

  it('refuses a bad step, key, reason or switch after a good run id', async () => {
    const cases: [string, readonly string[], (bad: unknown) => unknown, (x: unknown) => boolean][] = [
      ['ctx.skip() step', ['step'], (b) => ctx.skip(failedRun, b as string, 1), v.str(1, 128)],
      ['ctx.cancel() reason', ['reason'], (b) => ctx.cancel(failedRun, b as string), (x) => x === undefined || typeof x === 'string'],
      ['ctx.submitInput() key', ['key'], (b) => ctx.submitInput(waitingRun, b as string, 1), v.str(1, 200)],
      ['ctx.setHumanInLoop() on', ['on'], (b) => ctx.setHumanInLoop(waitingRun, b as boolean), v.bool],
    ];
    const arbitrary = fc.constantFrom(...cases).chain((c) => anyBad.filter((b) => !c[3](b.make())).map((b) => [c, b] as const));
    await unchanged(arbitrary, 120, async ([[, path, call], bad]) => {
      const given = bad.make();
      await refusedAsync(() => call(given), { code: ErrorCode.INVALID_OPTIONS, path, given });
    });
  });

  it('refuses what is not a Flow, as the flow of a call or the parent of registerTo', async () => {
    const calls: [string, 'sync' | 'async', (flow: unknown) => unknown][] = [
      ['ctx.register()', 'sync', (f) => ctx.register(f as Flow)],
      ['ctx.start()', 'sync', (f) => ctx.start(f as Flow, {})],
      ['ctx.run()', 'async', (f) => ctx.run(f as Flow, {})],
      ['ctx.enqueue()', 'async', (f) => ctx.enqueue(f as Flow, {})],
      ['ctx.handle(runId, flow)', 'async', (f) => ctx.handle(failedRun, (f ?? null) as Flow)],
    ];
    await unchanged(fc.tuple(fc.constantFrom(...calls), anyBad), 100, async ([[, how, call], bad]) => {
      const given = bad.make();
      const expected = { code: ErrorCode.INVALID_OPTIONS, path: ['flow'] };
      if (how === 'sync') refusedSync(() => call(given), expected);
      else await refusedAsync(() => call(given), expected);
    });
    fc.assert(
      fc.property(anyBad, (bad) => {
        const error = refusedSync(() => new Flow(new AddOne(), { name: 'child' }).registerTo(bad.make() as Flow), { code: ErrorCode.DEPENDENCY });
        expect(error.message).toMatch(/parent: expected a composite .+, got /);
      }),
      fcParams(30),
    );
  });

  it('refuses an unknown event type, a listener or a close hook that is not a function', () => {
    const types = ['event', 'run_start', 'step_failed', 'run_complete'];
    const badType = fc.oneof(anyBad.filter((b) => !types.includes(b.make() as string)), fc.constantFrom('nope', 'run-start', 'EVENT').map((s) => label(s, () => s)));
    const badListener = anyBad.filter((b) => typeof b.make() !== 'function');
    const listen = fc.constantFrom<'on' | 'once' | 'off'>('on', 'once', 'off');
    fc.assert(
      fc.property(listen, badType, badListener, fc.boolean(), (method, type, listener, badIsType) => {
        const [t, l] = badIsType ? [type.make(), () => {}] : [fc.sample(fc.constantFrom(...types), 1)[0], listener.make()];
        refusedSync(() => ctx[method](t as 'event', l as () => void), { code: ErrorCode.INVALID_OPTIONS, path: [badIsType ? 'type' : 'listener'] });
      }),
      fcParams(80),
    );
    fc.assert(
      fc.property(badListener, (fn) => {
        const given = fn.make();
        refusedSync(() => ctx.beforeClose(given as () => void), { code: ErrorCode.INVALID_OPTIONS, path: ['fn'], given });
        refusedSync(() => ctx.listenerCount(given as 'event'), { code: ErrorCode.INVALID_OPTIONS, path: ['type'] });
      }),
      fcParams(30),
    );
  });
});

describe('fuzzed values that must be stored, on SQLite', () => {
  it('fails a run whose input cannot be stored, before it is stored; enqueue refuses it', async () => {
    await unchanged(fc.tuple(nonCloneable, fc.boolean()), 40, async ([bad, enqueue]) => {
      if (enqueue) {
        await refusedAsync(() => ctx.enqueue(echo, bad.make()), { code: ErrorCode.SERIALIZATION });
        return;
      }
      const outcome = await settled(ctx.run(echo, bad.make()));
      if (outcome.status === 'rejected') throw outcome.reason;
      expect(outcome.value).toMatchObject({ status: 'failed', error: { code: ErrorCode.SERIALIZATION } });
      tried.count++;
    });
  });

  it('runs or fails a run of a cyclic, polluting, huge or odd input as one whole record', async () => {
    const inputs = fc.oneof(polluting, huge, wrongType, fc.constant(label('a cyclic object', cyclicObject)));
    // A store of its own: megabytes of inputs would slow every later listRuns of the shared one.
    const own = new FlowContext({ results: ResultsManager.sqlite(join(dir, 'inputs.db')) });
    const takes = new Flow(new Fn(() => 'ok'), { name: 'echo' });
    await fc.assert(
      fc.asyncProperty(inputs, async (bad) => {
        const outcome = await settled(own.run(takes, bad.make()));
        if (outcome.status === 'rejected') throw outcome.reason;
        const result = outcome.value;
        tried.count++;
        if (result.status === 'failed') expect(DOCUMENTED_CODES.has(result.error!.code), result.error!.message).toBe(true);
        const stored = await settled(own.getRun(result.runId));
        if (result.error?.code === ErrorCode.SERIALIZATION && result.error.step === undefined) {
          // Refused before it was stored: nothing of it is.
          expect(stored).toMatchObject({ status: 'rejected', reason: { code: ErrorCode.RUN_NOT_FOUND } });
        } else {
          expect(stored.status).toBe('fulfilled');
          const info = (stored as PromiseFulfilledResult<RunInfo>).value;
          expect(info.status).toBe(result.status);
          expect(Object.keys(info.steps)).toEqual(['echo']);
          expect(info.steps.echo!.status).toBe(result.steps.echo!.status);
        }
      }),
      fcParams(25),
    );
    await own.close();
    expectNoPollution();
  });

  it('fails a step whose output or heartbeat details cannot be stored, and keeps the run whole', async () => {
    await fc.assert(
      // A promise returned is awaited: its value is the output.
      fc.asyncProperty(nonCloneable.filter((b) => b.label !== 'a Promise'), fc.boolean(), async (bad, heartbeat) => {
        const process = heartbeat ? (_input: unknown, step: Step) => (step.heartbeat(bad.make()), 1) : () => bad.make();
        const flow = new Flow(new Fn(process), { name: 'returns' });
        const result = await ctx.run(flow, {});
        tried.count++;
        expect(result).toMatchObject({ status: 'failed', error: { code: ErrorCode.SERIALIZATION, step: 'returns' } });
        expect((await ctx.getRun(result.runId)).status).toBe('failed');
      }),
      fcParams(15),
    );
  });

  it('refuses a skipped output or an answer that cannot be stored, and leaves the run as it was', async () => {
    await unchanged(fc.tuple(nonCloneable, fc.boolean()), 40, async ([bad, skip]) => {
      if (skip) await refusedAsync(() => ctx.skip(failedRun, 'fails', bad.make()), { code: ErrorCode.SERIALIZATION });
      else await refusedAsync(() => ctx.submitInput(waitingRun, 'answer', bad.make()), { code: ErrorCode.SERIALIZATION });
    });
    expect((await ctx.getRun(waitingRun)).status).toBe('waiting');
  });
});

describe('fuzzed keys and values of a ResultsManager on SQLite', () => {
  const methods = ['get', 'has', 'delete'] as const;

  it('refuses a key that is not a non-empty string, naming key', async () => {
    const badKey = anyBad.filter((b) => !v.str(1)(b.make()));
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...methods, 'set' as const), badKey, async (method, key) => {
        const given = key.make();
        const call = method === 'set' ? () => ctx.results.set(given as string, 1) : () => ctx.results[method](given as string);
        await refusedAsync(call, { code: ErrorCode.INVALID_OPTIONS, path: ['key'], given });
      }),
      fcParams(60),
    );
  });

  it('refuses a value it cannot store and keeps the one stored before', async () => {
    await fc.assert(
      fc.asyncProperty(fc.oneof(nonCloneable, polluting), fc.string({ minLength: 1, maxLength: 20 }), async (bad, key) => {
        await ctx.results.set(key, { kept: key });
        const value = bad.make();
        const outcome = await settled(ctx.results.set(key, value));
        if (outcome.status === 'rejected') expectFlowError(outcome.reason, { code: ErrorCode.SERIALIZATION });
        else tried.count++;
        // Refused: the old value stays; taken (a polluting key kept as data): it comes back as given.
        const back = await ctx.results.get(key);
        if (outcome.status === 'rejected') expect(back).toEqual({ kept: key });
        else expect(JSON.stringify(back)).toBe(JSON.stringify(value));
        expectNoPollution();
      }),
      fcParams(40),
    );
  });

  it('stores and gives back huge keys, huge values and cyclic values', async () => {
    await fc.assert(
      fc.asyncProperty(huge, fc.boolean(), async (big, asKey) => {
        const text = big.make() as string;
        const [key, value] = asKey ? [text, { cyclic: cyclicObject() }] : ['huge-value', text];
        await ctx.results.set(key, value);
        const back = await ctx.results.get<unknown>(key);
        if (asKey) expect((back as { cyclic: { self: unknown } }).cyclic.self).toBe((back as { cyclic: unknown }).cyclic);
        else expect(back).toBe(text);
        expect(await ctx.results.delete(key)).toBe(true);
        tried.count++;
      }),
      fcParams(6),
    );
  });
});
