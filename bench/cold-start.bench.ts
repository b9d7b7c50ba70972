/**
 * Cold start, measured from outside in fresh processes on the built package (built here from the
 * sources, or `WEIR_COLD_DIST=dist` for a build at hand): `import('weir')`, then each dependency
 * weir loads only when a run needs it, a `FlowContext` on a SQLite file, and `recover()` reaching the
 * first resumed step of runs left by a SIGKILLed process. Each figure is the median over ROUNDS
 * processes, the cases taken in turn round after round, against bare `node -e ''` and
 * `import('zod')` measured in the same rounds. Run alone with `node --import ./bench/loader/register.mjs bench/cold-start.bench.ts`.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Options } from 'tsup';
import ts from 'typescript';
import { row } from './harness.js';

const ROOT = resolve(import.meta.dirname, '..');
const PROGRAMS = join(import.meta.dirname, 'programs');
const ROUNDS = Number(process.env.WEIR_COLD_ROUNDS ?? 9);
/** Steps completed (durably) before the kill: about 1.5 of each of the 100 runs' 5 steps. */
const COMPLETED_BEFORE_KILL = 150;

/** The packages weir loads only when a run needs them, and what needs each. */
const LAZY = [
  ['piscina', 'a thread step'],
  ['better-sqlite3', 'a SQLite store'],
  ['keyv', 'a Keyv store'],
  ['superjson', 'a value plain JSON cannot carry'],
] as const;

interface Sample {
  /** From spawning the process to its exit, in ms. */
  readonly wall: number;
  /** The child's own marks, in ms since it started. */
  readonly marks: Readonly<Record<string, number>>;
}

/** Builds the package as `npm run build` does, without declarations, into `out`. */
async function build(out: string): Promise<void> {
  if (process.cwd() !== ROOT) throw new Error(`run the cold-start benchmark from ${ROOT} (tsup's entries are relative to it)`);
  const { build: tsup } = await import('tsup');
  const { default: configs } = (await import('../tsup.config.js')) as { default: Options[] };
  for (const config of configs) await tsup({ ...config, outDir: out, dts: false, sourcemap: false, silent: true, config: false });
}

/** The child programs, from TypeScript to JavaScript that bare Node runs (tsx would add its own start-up). */
async function transpilePrograms(out: string): Promise<void> {
  await mkdir(out, { recursive: true });
  for (const file of (await readdir(PROGRAMS)).filter((f) => f.startsWith('cold-') && f.endsWith('.ts'))) {
    const source = await readFile(join(PROGRAMS, file), 'utf8');
    const { outputText } = ts.transpileModule(source, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } });
    await writeFile(join(out, file.replace(/\.ts$/, '.js')), outputText);
  }
}

/** Runs one fresh process to its exit; its last stdout line is its marks. */
function sample(args: readonly string[]): Sample {
  const start = performance.now();
  const child = spawnSync(process.execPath, args, { encoding: 'utf8', cwd: ROOT });
  const wall = performance.now() - start;
  if (child.status !== 0) throw new Error(`node ${args.join(' ')} failed: ${child.stderr}`);
  const last = child.stdout.trim().split('\n').pop();
  return { wall, marks: last === undefined || last === '' ? {} : (JSON.parse(last) as Record<string, number>) };
}

/** Starts runs on `db` in a child and SIGKILLs it midway. */
async function crash(programs: string, entry: string, db: string): Promise<void> {
  const child = spawn(process.execPath, [join(programs, 'cold-crash.js'), entry, db, String(COMPLETED_BEFORE_KILL)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const failsafe = setTimeout(() => child.kill('SIGKILL'), 60_000);
  child.stdout.on('data', (chunk: Buffer) => {
    if (chunk.toString().includes('ready')) child.kill('SIGKILL');
  });
  const signal = await new Promise<NodeJS.Signals | null>((done) => child.on('exit', (_, s) => done(s)));
  clearTimeout(failsafe);
  if (signal !== 'SIGKILL') throw new Error(`the child ended by itself (${String(signal)}) instead of being killed`);
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

export async function coldStartBench(): Promise<void> {
  const work = join(ROOT, 'node_modules', '.cache', `weir-cold-start-${process.pid}`);
  // Under node_modules so the build and the programs find weir's dependencies; `type: module` so
  // Node does not first try the ES modules as CommonJS.
  await mkdir(work, { recursive: true });
  await writeFile(join(work, 'package.json'), '{ "type": "module" }\n');
  try {
    const given = process.env.WEIR_COLD_DIST;
    const dist = given === undefined ? join(work, 'dist') : resolve(ROOT, given);
    if (given === undefined) await build(dist);
    const programs = join(work, 'programs');
    await transpilePrograms(programs);
    const entry = pathToFileURL(join(dist, 'index.js')).href;
    const probe = (which: string, db?: string): Sample => sample([join(programs, 'cold-probe.js'), entry, which, ...(db === undefined ? [] : [db])]);

    console.log(`\n## Cold start: fresh processes on the built package (${given ?? 'built from the sources'}), median of ${ROUNDS}\n`);
    const cases = new Map<string, Sample[]>();
    const add = (name: string, s: Sample): void => {
      const list = cases.get(name) ?? [];
      list.push(s);
      cases.set(name, list);
    };
    const loads: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      loads.push(loadavg()[0]!);
      add('node', sample(['-e', '']));
      add('zod', sample(['--input-type=module', '-e', "await import('zod')"]));
      add('import', probe('import'));
      for (const [name] of LAZY) add(`+${name}`, probe(`import+${name}`));
      add('+all', probe(`import+${LAZY.map(([name]) => name).join('+')}`));
      add('context', probe('context', join(work, `context-${round}.db`)));
      const db = join(work, `recover-${round}.db`);
      await crash(programs, entry, db);
      add('recover', probe('recover', db));
    }
    loads.push(loadavg()[0]!);

    const wall = (name: string): number => median(cases.get(name)!.map((s) => s.wall));
    // A child's mark `to` less its mark `from` (or, without one, since the child started).
    const mark = (name: string, to: string, from?: string): number => median(cases.get(name)!.map((s) => s.marks[to]! - (from === undefined ? 0 : s.marks[from]!)));
    const node = wall('node');
    const zod = wall('zod') - node;
    // Wall time of the process, its ratio to bare Node's start, and what it adds to that start as a multiple of what zod alone adds.
    const line = (label: string, name: string, inside: string): void =>
      row(label, `${wall(name).toFixed(0)} ms`, `${(wall(name) / node).toFixed(2)}x`, `${((wall(name) - node) / zod).toFixed(2)}x`, inside);
    row('case (wall: spawn to exit)', 'wall', 'x node', 'added x zod', '  in the process');
    row("node -e '' (baseline)", `${node.toFixed(0)} ms`, '1.00x', '', '');
    line("import('zod') alone (baseline)", 'zod', '');
    line("import('weir')", 'import', `  import ${mark('import', 'imported', 'start').toFixed(1)} ms`);
    for (const [name, need] of LAZY) line(`  then ${name} (${need})`, `+${name}`, `  +${mark(`+${name}`, 'loaded', 'imported').toFixed(1)} ms`);
    line('  then all four', '+all', `  +${mark('+all', 'loaded', 'imported').toFixed(1)} ms`);
    line('import + new FlowContext(SQLite file)', 'context', `  ctor ${mark('context', 'context', 'imported').toFixed(1)} ms`);
    line('  + recover() to the first resumed step', 'recover', `  recover() ${mark('recover', 'firstStep', 'recover').toFixed(1)} ms`);
    console.log(
      `\n(in the process: ms from its first line; the first resumed step comes ${mark('recover', 'firstStep').toFixed(0)} ms after ` +
        `the process started. 1-min load average ${Math.min(...loads).toFixed(2)}-${Math.max(...loads).toFixed(2)})`,
    );
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  console.log(`weir cold-start benchmark on Node ${process.version}`);
  await coldStartBench();
}
