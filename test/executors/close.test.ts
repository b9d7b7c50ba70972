import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);

describe('closing a context that used threads and child processes', () => {
  it('lets the process exit by itself once close() resolves', async () => {
    const program = join(import.meta.dirname, '../fixtures/programs/executors-close-exits.ts');
    const { stdout } = await run(process.execPath, ['--import', 'tsx', program], { timeout: 15_000 });
    expect(JSON.parse(stdout)).toEqual({ status: 'completed', output: { thread: { n: 6 }, process: { n: 8 } }, workers: { threads: 0, processes: 0 } });
  });
});
