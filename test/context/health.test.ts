/** ctx.health(): the store reachable and its last commit, pools, leases on time, runs active and waiting; over HTTP at /health. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { Flow, FlowContext, ResultsManager, type Step } from '../../src/index.js';
import { serve } from '../../src/http/index.js';
import { createTestContext, type TestContext } from '../../src/testing/index.js';
import { Fn } from '../fixtures/processors.js';

let ctx: FlowContext | undefined;
let t: TestContext | undefined;
let dir: string | undefined;
afterEach(async () => {
  await ctx?.close();
  await t?.close();
  ctx = t = undefined;
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});

const asks = (): Flow<unknown, unknown> => new Flow(new Fn(async (_i, step: Step) => step.waitForInput('ok', z.boolean())), { name: 'asks' });

describe('ctx.health()', () => {
  it('reports a fresh context as ok, with nothing held', async () => {
    ctx = new FlowContext();
    expect(await ctx.health()).toEqual({
      ok: true,
      state: 'open',
      store: { kind: 'memory', reachable: true, readMs: expect.any(Number) },
      workers: { threads: 0, processes: 0 },
      leases: { held: 0, onTime: true },
      runs: { active: 0, waiting: 0 },
    });
  });

  it('reports the last commit, the waiting runs and the one that has waited longest, on SQLite', async () => {
    dir = mkdtempSync(join(tmpdir(), 'weir-health-'));
    ctx = new FlowContext({ results: ResultsManager.sqlite(join(dir, 'runs.db')) });
    const first = ctx.start(asks(), {}, { runId: 'first', mode: 'interactive' });
    await new Promise((resolve) => ctx!.once('run_waiting', () => resolve(undefined)));
    await new Promise((resolve) => setTimeout(resolve, 5));
    ctx.start(asks(), {}, { runId: 'second', mode: 'interactive' });
    await new Promise((resolve) => ctx!.once('run_waiting', () => resolve(undefined)));
    const health = await ctx.health();
    expect(health.ok).toBe(true);
    expect(health.store).toMatchObject({ kind: 'sqlite', reachable: true, lastCommitMs: expect.any(Number), lastCommitAt: expect.any(Number) });
    expect(health.runs).toMatchObject({ waiting: 2, oldestWaiting: { runId: first.runId, since: expect.any(Number) } });
  });

  it('says when the store cannot be read, and never throws', async () => {
    const results = ResultsManager.memory();
    ctx = new FlowContext({ results });
    await results.close();
    expect(await ctx.health()).toMatchObject({ ok: false, store: { reachable: false, error: 'WEIR_STORE_CLOSED' } });
  });

  it('says when leases are not renewed on time', async () => {
    t = createTestContext({ leaseTimeout: 3000 });
    const slow = new Flow(new Fn((_i, step: Step) => new Promise((_r, reject) => step.signal.addEventListener('abort', () => reject(step.signal.reason as Error)))), { name: 'slow' });
    t.start(slow, {});
    await t.advance('1s');
    expect(await t.ctx.health()).toMatchObject({ ok: true, leases: { held: 1, onTime: true }, runs: { active: 1 } });
    t.failStore({ on: 'lease', times: 3 });
    await t.advance('1s');
    expect(await t.ctx.health()).toMatchObject({ ok: false, leases: { onTime: false } });
  });

  it('is served at /health: 200 when ok, 503 when not', async () => {
    const results = ResultsManager.memory();
    ctx = new FlowContext({ results });
    const { url } = await serve(ctx);
    const ok = await fetch(`${url}health`);
    expect(ok.status).toBe(200);
    expect(await ok.json()).toMatchObject({ ok: true, state: 'open' });
    await results.close();
    const down = await fetch(`${url}health`);
    expect(down.status).toBe(503);
    expect(await down.json()).toMatchObject({ ok: false, store: { reachable: false } });
  });
});
