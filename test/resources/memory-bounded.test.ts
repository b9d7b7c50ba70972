import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, expect, it } from 'vitest';

// A long-lived context holds no more than its bounded history: a child process (with --expose-gc)
// runs many one-step runs and reads its heap after forced full GCs once a warm-up filled the
// history, and again at the end. A run kept by anything but the history (about 3 KB in the memory
// store, about 9 KB with its live `Run`) would add tens of MB over the runs after the warm-up.

const PROGRAM = fileURLToPath(new URL('./programs/many-runs.ts', import.meta.url));
/** Heap growth allowed from the end of the warm-up to the end: 2 MiB over 16,000 runs is 131 bytes a run. */
const GROWTH = 2 * 2 ** 20;
const mib = (bytes: number): string => `${(bytes / 2 ** 20).toFixed(1)} MiB`;

interface Report {
  readonly warm: number;
  readonly final: number;
  readonly runs: number;
  readonly failed: number;
  readonly listed: number;
  /** What `getRun` says of the first run and of the last: a status, or an error's code. */
  readonly first: string;
  readonly last: string;
}

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** Runs the program and returns what it printed. */
async function manyRuns(store: string, keep: number, warmUp: number, runs: number, between: 'turn' | 'busy' = 'turn'): Promise<Report> {
  const child = spawn(process.execPath, ['--expose-gc', '--import', 'tsx', PROGRAM, store, String(keep), String(warmUp), String(runs), between], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (err += chunk));
  const code = await new Promise<number | null>((resolve, reject) => child.on('error', reject).on('exit', resolve));
  expect(code, err).toBe(0);
  return JSON.parse(out) as Report;
}

it('keeps the heap flat over 20,000 runs on the memory store, and its history at its bound of 1,000 finished runs', { timeout: 60_000 }, async () => {
  const report = await manyRuns('memory', 1000, 4000, 20_000);
  expect(report).toMatchObject({ runs: 20_000, failed: 0, listed: 1000, first: 'WEIR_RUN_NOT_FOUND', last: 'completed' });
  expect(report.final - report.warm, `heap ${mib(report.warm)} after 4,000 runs, ${mib(report.final)} after 20,000`).toBeLessThan(GROWTH);
});

it('keeps the heap flat when the event loop never gets a turn between runs: a finished run waits for no timer to be let go', { timeout: 60_000 }, async () => {
  const report = await manyRuns('memory', 1000, 4000, 20_000, 'busy');
  expect(report).toMatchObject({ runs: 20_000, failed: 0, listed: 1000 });
  expect(report.final - report.warm, `heap ${mib(report.warm)} after 4,000 runs, ${mib(report.final)} after 20,000`).toBeLessThan(GROWTH);
});

it('keeps the heap flat over 10,000 runs on SQLite, which keeps every run on disk', { timeout: 60_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'weir-memory-'));
  dirs.push(dir);
  const report = await manyRuns(join(dir, 'runs.db'), 0, 2000, 10_000);
  expect(report).toMatchObject({ runs: 10_000, failed: 0, listed: 10_000, first: 'completed', last: 'completed' });
  expect(report.final - report.warm, `heap ${mib(report.warm)} after 2,000 runs, ${mib(report.final)} after 10,000`).toBeLessThan(GROWTH);
});
