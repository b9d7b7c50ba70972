/** The `weir` command, run as a child process against a SQLite file with real runs. */
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Flow, FlowContext, ResultsManager } from '../../src/index.js';
import { deferred, Fn } from '../fixtures/processors.js';
import { order } from '../fixtures/cli-flows.js';

const root = resolve(import.meta.dirname, '../..');
const bin = join(root, 'src', 'cli', 'bin.ts');
const module = join(root, 'test', 'fixtures', 'cli-flows.ts');
let dir: string;
let store: string;

/** Runs `weir ...args` with WEIR_STORE set; resolves to its exit code and output. */
function weir(args: readonly string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile(process.execPath, ['--import', 'tsx', bin, ...args], { cwd: root, env: { ...process.env, WEIR_STORE: store, ...env }, timeout: 30_000 }, (error, stdout, stderr) => {
      done({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : 1, stdout, stderr });
    });
  });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'weir-cli-'));
  store = join(dir, 'runs.db');
  const ctx = new FlowContext({ results: ResultsManager.sqlite(store) });
  ctx.register(order);
  await ctx.run(order, {}, { runId: 'batch-1', mode: 'batch' });
  ctx.start(order, {}, { runId: 'waits-1', mode: 'interactive' });
  await new Promise((done) => ctx.once('run_waiting', () => done(undefined)));
  await ctx.close();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('weir', () => {
  it('lists runs as a table, and as JSON for scripts', async () => {
    const listed = await weir(['runs']);
    expect(listed.code).toBe(0);
    expect(listed.stdout).toMatch(/^RUN\s+FLOW\s+STATUS\s+CREATED\s+UPDATED\s+ERROR\n/);
    expect(listed.stdout).toMatch(/waits-1\s+order\s+waiting/);
    expect(listed.stdout).toMatch(/batch-1\s+order\s+failed\s+.*WEIR_INPUT_REQUIRED/);
    const json = await weir(['--json', 'runs', '--status', 'waiting']);
    expect(JSON.parse(json.stdout)).toMatchObject({ runs: [{ runId: 'waits-1', status: 'waiting' }] });
  });

  it('shows a run: its steps, and what it waits for with the command that answers it', async () => {
    const shown = await weir(['show', 'waits-1']);
    expect(shown.code).toBe(0);
    expect(shown.stdout).toMatch(/^run waits-1 {2}order {2}waiting {2}1\/2 steps/);
    expect(shown.stdout).toMatch(/prepare\s+completed\s+1/);
    expect(shown.stdout).toContain(`waits for "approval" (step "approve"): weir answer waits-1 approval '<json>'`);
  });

  it('answers a waiting run; a context with the flow goes on with it', async () => {
    const refused = await weir(['answer', 'waits-1', 'approval', '{"ok":"yes"}']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^weir: WEIR_VALIDATION: .*ok/);
    expect((await weir(['answer', 'waits-1', 'approval', 'not json'])).stderr).toMatch(/^weir: WEIR_VALIDATION: the answer is not JSON/);
    const answered = await weir(['answer', 'waits-1', 'approval', '{"ok":true}']);
    expect(answered).toMatchObject({ code: 0, stdout: 'answered "approval" of run waits-1\n' });
    const ctx = new FlowContext({ results: ResultsManager.sqlite(store) });
    try {
      ctx.register(order);
      await ctx.recover();
      expect((await (await ctx.handle('waits-1')).result()).status).toBe('completed');
    } finally {
      await ctx.close();
    }
  });

  it('watches a run live until it ends, in plain lines without a terminal', async () => {
    const ctx = new FlowContext({ results: ResultsManager.sqlite(store) });
    const gate = deferred();
    const slow = new Flow(new Fn(async () => gate.promise.then(() => 'done')), { name: 'slow' });
    ctx.start(slow, {}, { runId: 'live-1' });
    try {
      const child = spawn(process.execPath, ['--import', 'tsx', bin, 'watch', 'live-1', '--no-tty'], { cwd: root, env: { ...process.env, WEIR_STORE: store } });
      let out = '';
      child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
      const exited = new Promise<number | null>((done) => child.once('exit', done));
      try {
        while (!out.includes('step_start')) await new Promise((done) => setTimeout(done, 20));
        gate.resolve();
        expect(await exited).toBe(0);
      } finally {
        child.kill('SIGKILL');
      }
      expect(out.split('\n').filter(Boolean).map((line) => line.trim().split(/\s+/)[1])).toEqual(['run_start', 'step_start', 'step_complete', 'run_complete']);
    } finally {
      await ctx.close();
    }
  });

  it('prints a module\'s flow as Mermaid', async () => {
    const graph = await weir(['graph', module]);
    expect(graph.code).toBe(0);
    expect(graph.stdout).toBe(order.toMermaid());
    expect(await weir(['graph', module, 'refund'])).toMatchObject({ code: 1, stderr: expect.stringMatching(/^weir: WEIR_INVALID_OPTIONS: .*exports no flow named "refund" \(it exports "order"\)\n$/) });
  });

  it('cancels and prunes', async () => {
    const ctx = new FlowContext({ results: ResultsManager.sqlite(store) });
    ctx.register(order);
    ctx.start(order, {}, { runId: 'waits-2', mode: 'interactive' });
    await new Promise((done) => ctx.once('run_waiting', () => done(undefined)));
    await ctx.close();
    // A waiting run is cancelled under its flow: without the module, the command says what to give.
    expect((await weir(['cancel', 'waits-2'])).stderr).toMatch(/^weir: WEIR_FLOW_NOT_REGISTERED: .*; give --module <file> that exports it\n$/);
    expect(await weir(['--module', module, 'cancel', 'waits-2', '--reason', 'test'])).toMatchObject({ code: 0, stdout: 'cancelled run waits-2\n' });
    expect(JSON.parse((await weir(['--json', 'show', 'waits-2'])).stdout)).toMatchObject({ status: 'cancelled' });
    expect(await weir(['prune', '--older-than', '7d'])).toMatchObject({ code: 0, stdout: 'deleted 0 runs\n' });
    expect(JSON.parse((await weir(['--json', 'prune', '--older-than', '0s'])).stdout).deleted).toBeGreaterThanOrEqual(2);
  });

  it('resumes a failed run from a step, with the module that exports its flow', async () => {
    const ctx = new FlowContext({ results: ResultsManager.sqlite(store) });
    await ctx.run(order, {}, { runId: 'batch-2', mode: 'batch' });
    await ctx.close();
    const resumed = await weir(['--module', module, 'resume', 'batch-2', '--from', 'approve']);
    // A batch run asks nobody: it fails at the same step again, and says so.
    expect(resumed).toMatchObject({ code: 0, stdout: 'run batch-2: failed\n' });
    expect((await weir(['resume', 'batch-2'])).stderr).toMatch(/give --module <file> that exports it\n$/);
  });

  it('serves the runs over HTTP until Ctrl-C', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', bin, 'serve', '--port', '0'], { cwd: root, env: { ...process.env, WEIR_STORE: store } });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    const exited = new Promise<number | null>((done) => child.once('exit', done));
    try {
      while (!/http:\/\/\S+/.test(out)) await new Promise((done) => setTimeout(done, 20));
      const url = /(http:\/\/\S+)/.exec(out)![1]!;
      expect(await (await fetch(`${url}health`)).json()).toMatchObject({ ok: true });
      expect((await fetch(`${url}api/runs`)).status).toBe(200);
      child.kill('SIGINT');
      expect(await exited).toBe(0);
    } finally {
      child.kill('SIGKILL');
    }
  });

  it('refuses bad input with one line naming what to fix: exit 1, or 2 for usage', async () => {
    const unknown = await weir(['show', 'nobody']);
    expect(unknown).toMatchObject({ code: 1, stdout: '' });
    expect(unknown.stderr).toMatch(/^weir: WEIR_RUN_NOT_FOUND: [^\n]*nobody[^\n]*\n$/);
    const missing = join(dir, 'missing.db');
    const noStore = await weir(['runs'], { WEIR_STORE: missing });
    expect(noStore).toMatchObject({ code: 1, stderr: `weir: WEIR_STORE: no store at ${missing}: the file does not exist\n` });
    expect(existsSync(missing)).toBe(false);
    expect((await weir(['graph', join(dir, 'nothing.js')])).stderr).toMatch(/^weir: WEIR_PROCESSOR_MODULE: no module at/);
    expect((await weir(['prune', '--older-than', 'a while'])).stderr).toMatch(/^weir: WEIR_INVALID_OPTIONS: --older-than: expected an age/);
    const ctx = new FlowContext({ results: ResultsManager.sqlite(store) });
    await ctx.run(order, {}, { runId: 'skip-me', mode: 'batch' });
    await ctx.close();
    const noStep = await weir(['--module', module, 'skip', 'skip-me', 'nothing', '{}']);
    expect(noStep.code).toBe(1);
    expect(noStep.stderr).toMatch(/^weir: WEIR_[A-Z_]+: [^\n]*"nothing"[^\n]*\n$/);
    expect((await weir(['frobnicate'])).code).toBe(2);
    expect((await weir(['show'])).code).toBe(2);
    expect((await weir(['runs', '--limit', 'many'])).code).toBe(2);
    for (const result of [unknown, noStore]) expect(result.stderr).not.toMatch(/\n\s+at /);
  });
});
