import { execFile } from 'node:child_process';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { expect, it } from 'vitest';
import { describePostgres, testDatabase } from '../support/postgres.js';

const root = resolve(import.meta.dirname, '../..');

describePostgres('examples/scale-out.ts', () => {
  it('runs as written: two workers share the queue, one is killed, the other takes over its runs', { timeout: 60_000 }, async () => {
    const db = await testDatabase();
    try {
      const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', join('examples', 'scale-out.ts')], {
        cwd: root,
        timeout: 50_000,
        env: { ...process.env, DATABASE_URL: db.url },
      });
      expect(stdout).toMatch(/^two workers ready: \d+, \d+$/m);
      expect(stdout).toMatch(/^killed worker \d+ with SIGKILL$/m);
      for (let i = 1; i <= 8; i++) expect(stdout).toContain(`invoice-${i}: completed, total 120`);
      expect(stdout).toMatch(/^8 of 8 completed; [1-9]\d* taken over after the kill$/m);
      expect(stdout).toMatch(/took over invoice-\d+ \(recovered\)/);
    } finally {
      await db.drop();
    }
  });
});
