import { execFile } from 'node:child_process';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const exec = promisify(execFile);
const root = resolve(import.meta.dirname, '../..');
const loader = pathToFileURL(join(root, 'bench/loader/register.mjs')).href;

describe('the benchmarks loader (npm run bench)', () => {
  it('runs weir from its sources compiled as the build compiles them, without kept names, inline, on a thread and in a process', async () => {
    const { stdout } = await exec(process.execPath, ['--import', loader, join(import.meta.dirname, 'programs/compiled-as-built.ts')], {
      cwd: root,
      timeout: 60_000,
    });
    const report = JSON.parse(stdout.trim()) as { outputs: Record<string, unknown>; keptNames: boolean };
    expect(report.outputs).toEqual({ inline: { n: 6 }, thread: { n: 6 }, process: { n: 6 } });
    // tsx (under vitest and in `npx tsx`) wraps every named closure in `__name`; the build does not.
    expect(report.keptNames).toBe(false);
  }, 90_000);
});
