/** The `weir` command against a Postgres store: the same commands, a URL for --store. */
import { execFile } from 'node:child_process';
import { join, resolve } from 'node:path';
import { expect, it } from 'vitest';
import { Flow, FlowContext, ResultsManager } from '../../src/index.js';
import { AddOne } from '../fixtures/processors.js';
import { describePostgres, testDatabase } from '../support/postgres.js';

const root = resolve(import.meta.dirname, '../..');
const bin = join(root, 'src', 'cli', 'bin.ts');

function weir(args: readonly string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile(process.execPath, ['--import', 'tsx', bin, ...args], { cwd: root, env: { ...process.env, ...env }, timeout: 30_000 }, (error, stdout, stderr) => {
      done({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : 1, stdout, stderr });
    });
  });
}

describePostgres('weir on a Postgres store', () => {
  it('lists and shows runs, lists the stranded ones, and refuses a schema weir never made', { timeout: 60_000 }, async () => {
    const db = await testDatabase();
    try {
      const add = new Flow(new AddOne(), { name: 'add', version: 'v1' });
      const ctx = new FlowContext({ results: ResultsManager.postgres(db.url, { schema: 'cli' }) });
      ctx.register(add);
      await ctx.run(add, { n: 1 }, { runId: 'done-1' });
      await ctx.enqueue(add, { n: 2 }, { runId: 'queued-1' });
      await ctx.close();
      const env = { WEIR_STORE: db.url, WEIR_SCHEMA: 'cli' };
      const listed = await weir(['runs', '--json'], env);
      expect(listed.code).toBe(0);
      expect((JSON.parse(listed.stdout) as { runs: { runId: string; status: string }[] }).runs.map((r) => [r.runId, r.status])).toEqual([
        ['queued-1', 'pending'],
        ['done-1', 'completed'],
      ]);
      // No worker has flow add at v1: the queued run is stranded.
      const stranded = await weir(['runs', '--stranded', '--json'], env);
      expect((JSON.parse(stranded.stdout) as { runs: { runId: string }[] }).runs.map((r) => r.runId)).toEqual(['queued-1']);
      const shown = await weir(['show', 'done-1'], env);
      expect(shown.code).toBe(0);
      expect(shown.stdout).toContain('completed');
      const wrong = await weir(['runs'], { WEIR_STORE: db.url, WEIR_SCHEMA: 'nothing_here' });
      expect(wrong.code).toBe(1);
      expect(wrong.stderr).toContain('WEIR_STORE');
      expect(wrong.stderr).toContain('schema "nothing_here": it has no weir tables');
    } finally {
      await db.drop();
    }
  });
});
