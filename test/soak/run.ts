// `npm run soak -- --minutes 10 [--seed N] [--scale 3] [--only property,faults,load,fuzz]`: runs the
// generated tests (property, crash points, store faults, load, fuzz) again and again on new seeds
// until the time is up, at `scale` times the cases `npm test` runs; prints each round's seed, and on
// a failure the command that replays it. Exits 1 on the first failing round.
import { spawn } from 'node:child_process';
import { parseArgs } from 'node:util';

const SUITES: Readonly<Record<string, readonly string[]>> = {
  property: ['test/property'],
  faults: ['test/faults'],
  load: ['test/load'],
  fuzz: ['test/fuzz'],
};

const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: '10' },
    seed: { type: 'string' },
    scale: { type: 'string', default: '3' },
    only: { type: 'string', default: Object.keys(SUITES).join(',') },
  },
});
const minutes = Number(values.minutes);
const scale = Number(values.scale);
if (!(minutes > 0)) fail(`--minutes must be a positive number, got ${values.minutes}`);
if (!(scale >= 1)) fail(`--scale must be a number >= 1, got ${values.scale}`);
if (values.seed !== undefined && !Number.isSafeInteger(Number(values.seed))) fail(`--seed must be an integer, got ${values.seed}`);
const only = values.only.split(',').map((s) => s.trim());
for (const name of only) if (SUITES[name] === undefined) fail(`--only: unknown suite "${name}" (known: ${Object.keys(SUITES).join(', ')})`);
const paths = only.flatMap((name) => SUITES[name]!);

const deadline = Date.now() + minutes * 60_000;
const totals = new Map<string, Record<string, number>>();
let round = 0;
let seed = values.seed === undefined ? randomSeed() : Number(values.seed);
do {
  round++;
  const replay = `WEIR_SEED=${seed} WEIR_SCALE=${scale} npx vitest run ${paths.join(' ')}`;
  process.stdout.write(`soak round ${round}: seed ${seed} (replay: ${replay})\n`);
  const { code, output } = await vitest(paths, { WEIR_SEED: String(seed), WEIR_SCALE: String(scale), WEIR_REPORT: '1' });
  for (const line of output.split('\n')) {
    const at = line.indexOf('weir-tally ');
    if (at === -1) continue;
    const { test, seed: _seed, scale: _scale, ...counts } = JSON.parse(line.slice(at + 'weir-tally '.length)) as Record<string, number> & { test: string };
    const sum = totals.get(test) ?? {};
    for (const [k, v] of Object.entries(counts)) sum[k] = (sum[k] ?? 0) + v;
    totals.set(test, sum);
  }
  if (code !== 0) {
    process.stdout.write(`${output}\nsoak: round ${round} failed on seed ${seed}; replay it with:\n  ${replay}\n`);
    report();
    process.exit(1);
  }
  seed = randomSeed();
} while (Date.now() < deadline);
report();

function report(): void {
  process.stdout.write(`soak: ${round} round(s) in ${((Date.now() - (deadline - minutes * 60_000)) / 60_000).toFixed(1)} min\n`);
  for (const [test, counts] of totals) process.stdout.write(`  ${test}: ${Object.entries(counts).map(([k, v]) => `${k} ${v}`).join(', ')}\n`);
}

function vitest(args: readonly string[], env: Record<string, string>): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['node_modules/vitest/vitest.mjs', 'run', ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.on('close', (code) => resolve({ code: code ?? 1, output }));
  });
}

function randomSeed(): number {
  return Math.floor(Math.random() * 2 ** 31);
}

function fail(message: string): never {
  process.stderr.write(`soak: ${message}\n`);
  process.exit(2);
}
