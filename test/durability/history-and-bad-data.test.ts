import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { FatalError, Flow, FlowContext, ResultsManager } from '../../src/index.js';
import { deferred, Fn } from '../fixtures/processors.js';
import { sqliteContexts } from '../fixtures/sqlite-contexts.js';

const temp = sqliteContexts('history');

const file = temp.file;
const context = (options: ConstructorParameters<typeof FlowContext>[0] = {}): FlowContext => temp.context({ closeTimeout: 0, ...options });

describe('getRun', () => {
  it('gives status, running steps, progress done/total, last update and every step’s attempts', async () => {
    const ctx = context();
    const p = Flow.parallel('report');
    const gate = deferred<string>();
    let flaky = 0;
    const a = new Flow(new Fn(() => {
      if (++flaky === 1) throw new Error('blip');
      return 'a';
    }), { name: 'a', retry: { maxAttempts: 2, initialInterval: 0 } }).registerTo(p);
    new Flow(new Fn(async (_i, step) => {
      step.progress(0.5, 'half way');
      return gate.promise;
    }), { name: 'slow' }).registerTo(p);
    new Flow(new Fn(() => 'c'), { name: 'c' }).registerTo(p, { required: [a, 'slow'] });
    ctx.register(p);
    const progressed = deferred();
    const aDone = deferred();
    ctx.on('step_progress', () => progressed.resolve());
    ctx.on('step_complete', (e) => e.step === 'a' && aDone.resolve());
    const handle = ctx.start(p, {});
    await Promise.all([progressed.promise, aDone.promise]);
    const running = await ctx.getRun(handle.runId);
    expect(running).toMatchObject({
      runId: handle.runId,
      flow: 'report',
      status: 'running',
      running: ['slow'],
      progress: { done: 1, total: 3 },
      stale: false,
      steps: {
        a: { status: 'completed', attempts: [{ attempt: 1, error: { message: 'blip' } }, { attempt: 2 }] },
        slow: { status: 'running', progress: { fraction: 0.5, message: 'half way' } },
        c: { status: 'pending', attempts: [] },
      },
    });
    expect(running.updatedAt).toBeGreaterThanOrEqual(running.createdAt);
    gate.resolve('slow');
    await handle.result();
    const done = await ctx.getRun(handle.runId);
    expect(done).toMatchObject({ status: 'completed', running: [], progress: { done: 3, total: 3 } });
    expect(done.endedAt).toBeGreaterThanOrEqual(done.createdAt);
    await expect(ctx.getRun('nope')).rejects.toMatchObject({ code: 'WEIR_RUN_NOT_FOUND' });
  });
});

describe('listRuns and prune', () => {
  it('pages through runs newest first, by status and flow', async () => {
    const ctx = context();
    const ok = new Flow(new Fn(() => 'ok'), { name: 'ok' });
    const bad = new Flow(new Fn(() => {
      throw new FatalError('bad');
    }), { name: 'bad' });
    const ids: string[] = [];
    // Ids that sort as they are made: runs made in the same millisecond are listed by id.
    for (let i = 0; i < 5; i++) ids.push((await ctx.run(ok, { i }, { runId: `r${i}` })).runId);
    const failed = (await ctx.run(bad, {}, { runId: 'r5' })).runId;
    const gate = deferred();
    const live = ctx.start(new Flow(new Fn(() => gate.promise), { name: 'live' }), {}, { runId: 'r6' });

    const all = await ctx.listRuns();
    expect(all.runs.map((r) => r.runId)).toEqual([live.runId, failed, ...ids.toReversed()]);
    const first = await ctx.listRuns({ flow: 'ok', limit: 2 });
    expect(first.runs.map((r) => r.runId)).toEqual([ids[4], ids[3]]);
    const second = await ctx.listRuns({ flow: 'ok', limit: 2, before: first.next! });
    expect(second.runs.map((r) => r.runId)).toEqual([ids[2], ids[1]]);
    const last = await ctx.listRuns({ flow: 'ok', limit: 2, before: second.next! });
    expect(last.runs.map((r) => r.runId)).toEqual([ids[0]]);
    expect(last.next).toBeUndefined();
    expect((await ctx.listRuns({ status: 'failed' })).runs).toMatchObject([{ runId: failed, error: { step: 'bad', message: 'bad' } }]);
    expect((await ctx.listRuns({ status: ['running', 'failed'] })).runs.map((r) => r.status)).toEqual(['running', 'failed']);
    await expect(ctx.listRuns({ limit: 0 })).rejects.toMatchObject({ code: 'WEIR_INVALID_OPTIONS' });

    // Pruning: every finished run ended before the cutoff goes; the running one stays.
    expect(await ctx.prune({ olderThan: new Date(Date.now() + 1000) })).toBe(6);
    expect((await ctx.listRuns()).runs.map((r) => r.runId)).toEqual([live.runId]);
    await expect(ctx.getRun(failed)).rejects.toMatchObject({ code: 'WEIR_RUN_NOT_FOUND' });
    gate.resolve();
    await live.result();
    expect(await ctx.prune({ olderThan: 60_000 })).toBe(0);
    await expect(ctx.prune({ olderThan: -1 })).rejects.toMatchObject({ code: 'WEIR_INVALID_OPTIONS' });
  });
});

describe('bad data', () => {
  it('fails a run with a corrupt record when recovering it, naming the record, and recovers the others', async () => {
    const owner = context({ leaseTimeout: 100 });
    const make = () => {
      const s = Flow.sequential('job');
      new Flow(new Fn(() => 'a'), { name: 'a' }).registerTo(s);
      new Flow(new Fn(() => 'b'), { name: 'b' }).registerTo(s);
      return s;
    };
    owner.register(make());
    const one = await owner.run(owner.getFlow('job')!, {});
    const two = await owner.run(owner.getFlow('job')!, {});
    await owner.close();
    // Both runs look interrupted (running, lease long gone); one of them has a damaged step record:
    // step records ride on the last event of their commit, so the records of the event carrying a's.
    const db = new Database(file());
    db.prepare("UPDATE weir_runs SET status = 'running', lease_expires_at = 1").run();
    const carrier = db
      .prepare(
        `SELECT max(seq) FROM weir_events WHERE run_id = ? AND records IS NOT NULL
           AND EXISTS (SELECT 1 FROM json_each(records, '$.s') WHERE json_extract(value, '$.step') = 'a')`,
      )
      .pluck()
      .get(one.runId) as number | null;
    expect(carrier).toEqual(expect.any(Number));
    db.prepare("UPDATE weir_events SET records = 'garbage' WHERE run_id = ? AND seq = ?").run(one.runId, carrier);
    db.close();

    const ctx = context().register(make());
    const handles = await ctx.recover();
    expect(handles.map((h) => h.runId)).toEqual([two.runId]);
    expect(await handles[0]!.result()).toMatchObject({ status: 'completed', output: { a: 'a', b: 'b' } });
    const broken = (await ctx.listRuns({ status: 'failed' })).runs;
    expect(broken).toMatchObject([{ runId: one.runId, error: { code: 'WEIR_CORRUPT_RECORD', message: expect.stringContaining(`"${one.runId}#${carrier} records"`) } }]);
    await expect(ctx.getRun(one.runId)).rejects.toMatchObject({ code: 'WEIR_CORRUPT_RECORD' });
  });

  it('fails a run whose input cannot be stored before any step runs', async () => {
    const ctx = context();
    let ran = false;
    const flow = new Flow(new Fn(() => (ran = true)), { name: 'never' });
    const result = await ctx.run(flow, { callback: () => 1 });
    expect(result.status).toBe('failed');
    expect(result.error).toMatchObject({ code: 'WEIR_SERIALIZATION' });
    expect(result.steps.never?.status).toBe('skipped');
    expect(ran).toBe(false);
    expect((await ctx.listRuns()).runs).toEqual([]);
  });

  it('fails the step whose output cannot be stored, alone, without losing its siblings’ outputs', async () => {
    const ctx = context();
    const p = Flow.parallel('mixed');
    for (let i = 0; i < 4; i++) new Flow(new Fn(() => ({ i })), { name: `fine${i}` }).registerTo(p);
    new Flow(new Fn(() => ({ fn: () => 1 })), { name: 'unstorable' }).registerTo(p);
    ctx.register(p);
    const result = await ctx.run(p, {});
    expect(result.status).toBe('failed');
    expect(result.error).toMatchObject({ step: 'unstorable', code: 'WEIR_SERIALIZATION' });
    const stored = await (await ctx.handle(result.runId)).result();
    for (let i = 0; i < 4; i++) expect(stored.steps[`fine${i}`]).toMatchObject({ status: 'completed', output: { i } });
    expect(stored.steps.unstorable?.status).toBe('failed');
  });
});

describe('the memory journal', () => {
  it('keeps the most recent finished runs, as many as keepFinishedRuns, and forgets older ones', async () => {
    const ctx = new FlowContext({ results: ResultsManager.memory({ keepFinishedRuns: 3 }) });
    temp.track(ctx);
    const flow = new Flow(new Fn((input) => input), { name: 'echo' });
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await ctx.run(flow, { i })).runId);
    expect((await ctx.listRuns()).runs.map((r) => r.runId).toSorted()).toEqual(ids.slice(2).toSorted());
    await expect(ctx.getRun(ids[0]!)).rejects.toMatchObject({ code: 'WEIR_RUN_NOT_FOUND' });
    expect(() => ResultsManager.memory({ keepFinishedRuns: -1 })).toThrow('ResultsManager.memory(): keepFinishedRuns: expected a whole number >= 0 or Infinity, got -1');
  });
});
