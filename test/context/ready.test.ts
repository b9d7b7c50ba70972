import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FlowContext, ResultsManager } from '../../src/index.js';
import { Fn } from '../fixtures/processors.js';
import { Flow } from '../../src/index.js';

let dir = '';
const contexts: FlowContext[] = [];
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'weir-ready-'));
});
afterEach(async () => {
  await Promise.all(contexts.splice(0).map((c) => c.close()));
  await rm(dir, { recursive: true, force: true });
});
function context(results: ResultsManager): FlowContext {
  const ctx = new FlowContext({ results });
  contexts.push(ctx);
  return ctx;
}

describe('ctx.ready()', () => {
  it('opens a SQLite store at once: the file and its tables exist, and it resolves to the context', async () => {
    const file = join(dir, 'sub', 'runs.db');
    const ctx = context(ResultsManager.sqlite(file));
    await expect(ctx.ready()).resolves.toBe(ctx);
    await expect(ctx.ready()).resolves.toBe(ctx);
    expect((await ctx.listRuns()).runs).toEqual([]);
    expect((await ctx.run(new Flow(new Fn(() => 1), { name: 'one' }), {})).status).toBe('completed');
  });

  it('fails with WEIR_STORE and SQLite\'s reason for a directory given as the file', async () => {
    const ctx = context(ResultsManager.sqlite(dir));
    const error = await ctx.ready().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toMatchObject({ name: 'RetryableError', code: 'WEIR_STORE' });
    expect((error as Error).message).toContain(JSON.stringify(dir));
    expect((error as Error).message).toContain('it is a directory');
  });

  it('fails with WEIR_STORE and SQLite\'s reason for a file that is not a database', async () => {
    const file = join(dir, 'garbage.db');
    await writeFile(file, 'this is not a database, just some text that is long enough to be read as a header '.repeat(20));
    const ctx = context(ResultsManager.sqlite(file));
    await expect(ctx.ready()).rejects.toMatchObject({ code: 'WEIR_STORE', message: expect.stringMatching(/not a database|SQLITE_NOTADB/) });
  });

  it('fails with WEIR_STORE for a SQLite path under a file, and for a disk store that cannot be written', async () => {
    const file = join(dir, 'plain.txt');
    await writeFile(file, 'x');
    await expect(context(ResultsManager.sqlite(join(file, 'runs.db'))).ready()).rejects.toMatchObject({ code: 'WEIR_STORE', message: expect.stringMatching(/EEXIST|ENOTDIR/) });
    await expect(context(ResultsManager.disk(join(file, 'results'))).ready()).rejects.toMatchObject({ code: 'WEIR_STORE', message: expect.stringContaining('ENOTDIR') });
  });

  it('creates a disk store\'s directory, and is a no-op on memory', async () => {
    const results = join(dir, 'disk', 'results');
    await mkdir(dir, { recursive: true });
    await context(ResultsManager.disk(results)).ready();
    const { stat } = await import('node:fs/promises');
    expect((await stat(results)).isDirectory()).toBe(true);
    await expect(context(ResultsManager.memory()).ready()).resolves.toBeInstanceOf(FlowContext);
  });

  it('is refused after close(), with WEIR_CONTEXT_CLOSED', async () => {
    const ctx = context(ResultsManager.memory());
    await ctx.close();
    await expect(ctx.ready()).rejects.toMatchObject({ code: 'WEIR_CONTEXT_CLOSED' });
  });
});

describe('ResultsManager.ready()', () => {
  it('is what ctx.ready() uses, and after close() fails with WEIR_STORE_CLOSED', async () => {
    const results = ResultsManager.sqlite(join(dir, 'r.db'));
    await results.ready();
    await results.set('k', 1);
    await results.close();
    await expect(results.ready()).rejects.toMatchObject({ code: 'WEIR_STORE_CLOSED' });
  });
});

describe('after close()', () => {
  it('every entry point that reads or changes runs fails with WEIR_CONTEXT_CLOSED, not a store error', async () => {
    const ctx = context(ResultsManager.sqlite(join(dir, 'closed.db')));
    const { runId } = await ctx.run(new Flow(new Fn(() => 1), { name: 'one' }), {});
    await ctx.close();
    const closed = expect.objectContaining({ code: 'WEIR_CONTEXT_CLOSED' });
    await expect(ctx.getRun(runId)).rejects.toEqual(closed);
    await expect(ctx.listRuns()).rejects.toEqual(closed);
    await expect(ctx.handle(runId)).rejects.toEqual(closed);
    await expect(ctx.cancel(runId)).rejects.toEqual(closed);
    await expect(ctx.prune({ olderThan: 0 })).rejects.toEqual(closed);
    expect(() => ctx.events(runId)).toThrow(closed);
    await expect(ctx.resume(runId)).rejects.toEqual(closed);
    await expect(ctx.submitInput(runId, 'k', 1)).rejects.toEqual(closed);
  });
});
