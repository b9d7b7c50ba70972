import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const exec = promisify(execFile);
const root = resolve(import.meta.dirname, '../..');

/** Runs an example as a user would (`npx tsx examples/NAME.ts` from the project root). */
async function runExample(name: string): Promise<string> {
  const { stdout } = await exec(process.execPath, ['--import', 'tsx', join('examples', name)], { cwd: root, timeout: 30_000 });
  return stdout;
}

describe('examples run as written', () => {
  it('quickstart prints the completed output', async () => {
    const stdout = await runExample('quickstart.ts');
    expect(stdout).toContain(`completed { count: { words: 3 }, summary: { line: '"a b c" has 3 words' } }`);
  });

  it('demo prints each step, retries the flaky one and completes on SQLite', async () => {
    const stdout = await runExample('demo.ts');
    expect(stdout).toMatch(/step_retry keywords {2}keyword service busy \(attempt 1\)/);
    expect(stdout).toMatch(/step_complete report/);
    expect(stdout).toContain('completed: Weirs: 36 words (26 unique), longest "characteristics", keywords water, barrier, across');
  });

  it('crash-and-recover kills its child mid-run and recovers the run without re-running completed steps', async () => {
    const stdout = await runExample('crash-and-recover.ts');
    expect(stdout).toContain('child: killed with SIGKILL');
    expect(stdout).toMatch(/parent: run order-42 is running, \d of 6 steps done, stale: true/);
    expect(stdout).toContain('parent: run order-42 completed, total 21, trail step1 step2 step3 step4 step5 step6');
    // Steps the child completed before the kill never run again.
    expect(stdout).not.toMatch(/parent ran step[12]\n/);
    expect(stdout).toContain('parent ran step6');
  });

  it('checkout\'s tests pass with weir/testing on node\'s own test runner', async () => {
    const { stdout } = await exec(process.execPath, ['--import', 'tsx', '--test', '--test-reporter=tap', join('examples', 'checkout', 'checkout.test.ts')], { cwd: root, timeout: 30_000 });
    expect(stdout).toMatch(/^# pass 11$/m);
    expect(stdout).toMatch(/^# fail 0$/m);
    expect(stdout).toContain('ok 7 - crashes: after a crash right after the charge, the restarted process ships without charging again');
  });

  it('docs/testing.md shows tests of the checkout suite as they are written there', () => {
    const guide = readFileSync(join(root, 'docs', 'testing.md'), 'utf8');
    const suite = readFileSync(join(root, 'examples', 'checkout', 'checkout.test.ts'), 'utf8');
    const tests = [...guide.matchAll(/```ts\n(test\([\s\S]*?)```/g)].flatMap((m) => m[1]!.split(/\n(?=test\()/)).map((block) => block.trim());
    expect(tests.length).toBeGreaterThanOrEqual(10);
    expect(tests.filter((block) => !suite.includes(block))).toEqual([]);
  });

  it('http serves its flow with the dashboard; a large order waits for approval and an answer over HTTP finishes it; Ctrl-C closes it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'weir-demo-http-'));
    const child = spawn(process.execPath, ['--import', 'tsx', join('examples', 'http.ts')], { cwd: root, env: { ...process.env, WEIR_STORE: join(dir, 'runs.db') } });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    try {
      while (!/http:\/\/\S+/.test(output)) await new Promise((resolve) => setTimeout(resolve, 20));
      const url = /(http:\/\/\S+)/.exec(output)![1]!;
      expect(await (await fetch(url)).text()).toContain('dashboard.js');
      let runs: { runId: string; status: string }[] = [];
      for (let i = 0; i < 300 && !(runs.length === 3 && runs.filter((r) => r.status === 'completed').length === 2); i++) {
        runs = ((await (await fetch(`${url}api/runs`)).json()) as { runs: typeof runs }).runs;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      const large = runs.find((r) => r.runId.startsWith('large-'))!;
      expect(large.status).toBe('waiting');
      const answered = await fetch(`${url}api/runs/${large.runId}/input`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ key: 'approval', value: { approvedBy: 'ana' } }) });
      expect(answered.status).toBe(200);
      let status = '';
      for (let i = 0; i < 100 && status !== 'completed'; i++) {
        status = ((await (await fetch(`${url}api/runs/${large.runId}`)).json()) as { status: string }).status;
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      expect(status).toBe('completed');
      child.kill('SIGINT');
      expect(await exited).toBe(0);
      expect(output).toContain('closing');
    } finally {
      child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('approval parks a run waiting for input, and a child process answers it and finishes the run', async () => {
    const stdout = await runExample('approval.ts');
    expect(stdout).toContain('parent: run order-7 waits for approval (approve)');
    expect(stdout).toContain('parent: active runs in this context: 0');
    expect(stdout).toContain('child: answered approval');
    expect(stdout).toContain('child: run order-7 completed: shipped by ana');
    expect(stdout).toContain('parent: child exited with code 0');
    expect(stdout).toContain('parent: run order-7 completed: shipped by ana');
    // The asking step ran twice: once to ask, once with the answer.
    expect(stdout).toContain('parent: approve attempts: 1 waited for approval; 2 ran');
  });
});
