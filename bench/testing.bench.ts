/**
 * weir/testing: the real time of a test of a flow whose step fails five times with a minute of
 * backoff between attempts (five virtual minutes), against the same flow with no backoff on a plain
 * FlowContext; and the checkout example's test suite (examples/checkout) under `node --test`,
 * against an empty suite in the same runner. Run alone with `node --import ./bench/loader/register.mjs bench/testing.bench.ts`.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { z } from 'zod';
import { Flow, FlowContext, Processor, RetryableError, type Step } from '../src/index.js';
import { createTestContext } from '../src/testing/index.js';
import { measure, row } from './harness.js';

const exec = promisify(execFile);
const root = resolve(import.meta.dirname, '..');
const N = z.object({ n: z.number() });

/** Fails its first five attempts. */
class Flaky extends Processor<typeof N, typeof N> {
  readonly input = N;
  readonly output = N;
  process(input: z.infer<typeof N>, step: Step): z.infer<typeof N> {
    if (step.attempt <= 5) throw new RetryableError(`attempt ${step.attempt} failed`);
    return input;
  }
}

function flaky(initialInterval: number): Flow<z.infer<typeof N>, z.infer<typeof N>> {
  return new Flow(new Flaky(), { name: 'flaky', retry: { maxAttempts: 6, initialInterval, maxInterval: 60_000, jitter: 0 } });
}

/** Runs the suite in `file` under `node --test` and returns the wall time and the tests' own summed time, in ms. */
async function suite(file: string): Promise<{ wall: number; tests: number; passed: number }> {
  const start = performance.now();
  const { stdout } = await exec(process.execPath, ['--import', 'tsx', '--test', '--test-reporter=tap', file], { cwd: root });
  const wall = performance.now() - start;
  const durations = [...stdout.matchAll(/^ {2}duration_ms: ([\d.]+)$/gm)].map((m) => Number(m[1]));
  return { wall, tests: durations.reduce((a, b) => a + b, 0), passed: [...stdout.matchAll(/^ok \d+/gm)].length };
}

export async function testingBench(): Promise<void> {
  console.log('\n== weir/testing: virtual time ==');
  const plain = await measure('plain context, 5 retries with no backoff', async () => {
    const ctx = new FlowContext();
    await ctx.run(flaky(0), { n: 1 });
    await ctx.close();
  });
  const kit = await measure('test context, 5 retries 1 minute apart', async () => {
    const t = createTestContext();
    const result = await t.run(flaky(60_000), { n: 1 });
    if (result.status !== 'completed' || t.now() - Date.UTC(2030, 0, 1) !== 300_000) throw new Error('the retries did not run on virtual time');
    await t.close();
  });
  row('', 'ms', 'vs plain');
  row(plain.name, plain.ms.toFixed(2), '1.00x');
  row(kit.name, kit.ms.toFixed(2), `${(kit.ms / plain.ms).toFixed(2)}x`);

  console.log('\n== weir/testing: the checkout example suite under node --test ==');
  const dir = await mkdtemp(join(tmpdir(), 'weir-bench-'));
  try {
    const empty = join(dir, 'empty.test.ts');
    await writeFile(empty, "import { test } from 'node:test';\ntest('nothing', () => {});\n");
    const baseline = await suite(pathToFileURL(empty).pathname);
    const checkout = await suite('examples/checkout/checkout.test.ts');
    row('', 'wall ms', 'tests ms');
    row('empty suite (the runner and tsx alone)', baseline.wall.toFixed(0), baseline.tests.toFixed(1));
    row(`checkout suite (${checkout.passed} tests)`, checkout.wall.toFixed(0), checkout.tests.toFixed(1));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await testingBench();
