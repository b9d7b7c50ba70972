import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ErrorCode } from '../../src/index.js';

/** Runs a fixture program under tsx; resolves to how it ended, whatever its exit code. */
function runProgram(name: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const program = join(import.meta.dirname, '../fixtures/programs', name);
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', program], { timeout: 30_000 }, (error, stdout, stderr) => {
      resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : null, stdout, stderr });
    });
  });
}

describe('a one-file script that exports its processors and runs them with top-level await', () => {
  it('runs its thread and process steps, whose processors may run flows of their own, and the workers go no further than its run', async () => {
    const { code, stdout, stderr } = await runProgram('one-file-script.ts');
    expect(stderr).toBe('');
    expect(code).toBe(0);
    expect(stdout.trim().split('\n').map((line) => JSON.parse(line) as unknown)).toEqual([
      { status: 'completed', output: { double: { n: 40 }, 'add-on-thread': { n: 41 }, 'add-in-child': { n: 42 } } },
    ]);
  }, 40_000);

  it('fails at once with WEIR_PROCESSOR_MODULE, saying what to do, when the class is defined only after a run', async () => {
    const { code, stderr } = await runProgram('one-file-script-late.ts');
    expect(code).toBe(1);
    const lines = stderr.trim().split('\n').sort();
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(new RegExp(`^in-child: ${ErrorCode.PROCESSOR_MODULE}: .*class Late`));
    expect(lines[1]).toMatch(new RegExp(`^on-thread: ${ErrorCode.PROCESSOR_MODULE}: .*class Late`));
    for (const line of lines) expect(line).toContain('before its first run');
  }, 40_000);
});
