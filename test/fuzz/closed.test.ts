/**
 * Every call on a closed context, with good or fuzzed arguments: a FlowContext on SQLite (and the
 * ResultsManager it closed), a test context, and the adapters given a closed context. Each call is
 * refused with a documented code (`WEIR_CONTEXT_CLOSED`, `WEIR_STORE_CLOSED`, or the argument's own
 * refusal), thrown or rejected as the call is synchronous or not, and nothing hangs.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCode, Flow, FlowContext, ResultsManager } from '../../src/index.js';
import { createHandler, serve } from '../../src/http/index.js';
import { createMcpServer, serveMcpStdio } from '../../src/mcp/index.js';
import { instrument } from '../../src/otel/index.js';
import { createTestContext } from '../../src/testing/index.js';
import { AddOne } from '../fixtures/processors.js';
import { fcParams, Tally } from '../support/property.js';
import { anyBad, expectFlowError, expectNoPollution, refusedAsync, refusedSync, settled, tried, watchUnhandled } from './bad-values.js';

const unhandled = watchUnhandled();
let dir: string;
let ctx: FlowContext;
let runId: string;
const flow = new Flow(new AddOne(), { name: 'add' });

beforeAll(async () => {
  unhandled.start();
  dir = mkdtempSync(join(tmpdir(), 'weir-fuzz-closed-'));
  ctx = new FlowContext({ results: ResultsManager.sqlite(join(dir, 'runs.db')) });
  ctx.register(flow);
  runId = (await ctx.run(flow, { n: 1 })).runId;
  await ctx.close();
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
  unhandled.check();
  expectNoPollution();
  const tally = new Tally('fuzz closed');
  tally.add('bad inputs', tried.count);
  tally.report();
});

/** Each call of a context, given one argument (good ones are picked sometimes). */
const calls: [string, 'sync' | 'async', (x: unknown) => unknown][] = [
  ['register', 'sync', (x) => ctx.register((x ?? flow) as Flow)],
  ['start', 'sync', (x) => ctx.start(flow, x)],
  ['run', 'async', (x) => ctx.run(flow, x)],
  ['enqueue', 'async', (x) => ctx.enqueue(flow, x)],
  ['events', 'sync', (x) => ctx.events((x ?? runId) as string)],
  ['on', 'sync', (x) => ctx.on('event', (x ?? (() => {})) as () => void)],
  ['once', 'sync', (x) => ctx.once('event', (x ?? (() => {})) as () => void)],
  ['cancel', 'async', (x) => ctx.cancel((x ?? runId) as string)],
  ['handle', 'async', (x) => ctx.handle((x ?? runId) as string)],
  ['recover', 'async', () => ctx.recover()],
  ['resume', 'async', (x) => ctx.resume((x ?? runId) as string)],
  ['retry', 'async', (x) => ctx.retry((x ?? runId) as string)],
  ['skip', 'async', (x) => ctx.skip(runId, 'add', x)],
  ['submitInput', 'async', (x) => ctx.submitInput(runId, 'k', x)],
  ['setHumanInLoop', 'async', (x) => ctx.setHumanInLoop(runId, (x ?? true) as boolean)],
  ['getRun', 'async', (x) => ctx.getRun((x ?? runId) as string)],
  ['listRuns', 'async', (x) => ctx.listRuns(x ?? {})],
  ['prune', 'async', (x) => ctx.prune((x ?? { olderThan: 0 }) as never)],
  ['ready', 'async', () => ctx.ready()],
  ['flow.execute on a context made after', 'async', (x) => flow.execute(x as { n: number })],
];

describe('a closed FlowContext on SQLite', () => {
  it('refuses every call with WEIR_CONTEXT_CLOSED, or its arguments, thrown or rejected as the call is', async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...calls), fc.option(anyBad, { freq: 4 }), async ([name, how, call], bad) => {
        const given = bad === null ? undefined : bad.make();
        if (name.startsWith('flow.execute')) {
          // The default context is made again after it was closed: a bad input fails the run, it does not reject.
          const outcome = await settled(call(given ?? { n: 1 }) as Promise<unknown>);
          if (outcome.status === 'rejected') expectFlowError(outcome.reason);
          else tried.count++;
          return;
        }
        const error = how === 'sync' ? refusedSync(() => call(given)) : await refusedAsync(() => call(given));
        expect([ErrorCode.CONTEXT_CLOSED, ErrorCode.INVALID_OPTIONS], `${name}: ${error.message}`).toContain(error.code);
        if (bad === null) expect(error.code, name).toBe(ErrorCode.CONTEXT_CLOSED);
      }),
      fcParams(120),
    );
    await FlowContext.getInstance().close();
  });

  it('stays closed: close() again resolves, health() reports, and its ResultsManager refuses with WEIR_STORE_CLOSED', async () => {
    await ctx.close();
    expect(ctx.state).toBe('closed');
    expect((await ctx.health()).ok).toBe(false);
    const results = ctx.results;
    await fc.assert(
      fc.asyncProperty(fc.constantFrom('get', 'set', 'has', 'delete', 'cleanup', 'ready'), fc.string({ minLength: 1, maxLength: 10 }), async (method, key) => {
        const call = {
          get: () => results.get(key),
          set: () => results.set(key, 1),
          has: () => results.has(key),
          delete: () => results.delete(key),
          cleanup: () => results.cleanup({ olderThan: 0 }),
          ready: () => results.ready(),
        }[method];
        await refusedAsync(call, { code: ErrorCode.STORE_CLOSED });
      }),
      fcParams(30),
    );
    await results.close();
  });

  it('is refused by the adapters with WEIR_CONTEXT_CLOSED, before they listen or connect', async () => {
    for (const call of [() => createHandler(ctx), () => createMcpServer(ctx), () => instrument(ctx)]) refusedSync(call, { code: ErrorCode.CONTEXT_CLOSED });
    for (const call of [() => serve(ctx), () => serveMcpStdio(ctx)]) await refusedAsync(call, { code: ErrorCode.CONTEXT_CLOSED });
  });
});

describe('a closed test context', () => {
  it('refuses runs and reads with a documented code, and closes again', async () => {
    const t = createTestContext({ store: 'sqlite' });
    const first = await t.run(flow, { n: 1 });
    await t.close();
    const calls: [string, () => unknown][] = [
      ['t.start', () => t.start(flow, { n: 1 })],
      ['t.run', () => t.run(flow, { n: 1 })],
      ['t.runStep', () => t.runStep(flow, { n: 1 })],
      ['t.result', () => t.result(first.runId)],
      ['t.answer', () => t.answer(first.runId, 'k', 1)],
      ['t.expectWaiting', () => t.expectWaiting(first.runId)],
      ['t.eventLog', () => t.eventLog(first.runId)],
    ];
    for (const [name, call] of calls) {
      let outcome: PromiseSettledResult<unknown>;
      try {
        outcome = await settled(Promise.resolve(call()));
      } catch (error) {
        outcome = { status: 'rejected', reason: error };
      }
      expect(outcome.status, name).toBe('rejected');
      expectFlowError((outcome as PromiseRejectedResult).reason);
    }
    await t.close();
  });
});
