import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const exec = promisify(execFile);
const programs = join(import.meta.dirname, 'programs');

/** The packages loaded after each step of `programs/lazy-loads.ts`, run in a fresh process that records them. */
let loads: Map<string, string[]>;
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'weir-lazy-'));
  const { stdout } = await exec(
    process.execPath,
    ['--import', 'tsx', join(programs, 'lazy-loads.ts'), dir],
    { timeout: 60_000 },
  );
  loads = new Map(stdout.trim().split('\n').map((line) => {
    const { step, packages } = JSON.parse(line) as { step: string; packages: string[] };
    return [step, packages];
  }));
}, 90_000);

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('the dependencies a process loads', () => {
  it('records packages at all: importing weir loads zod', () => {
    expect(loads.get('start')).toEqual([]);
    expect(loads.get('import')).toContain('zod');
  });

  it('leaves piscina, keyv, better-sqlite3 and superjson unloaded by importing weir and making a context', () => {
    for (const step of ['import', 'context']) {
      expect(loads.get(step)).not.toContain('piscina');
      expect(loads.get(step)).not.toContain('keyv');
      expect(loads.get(step)).not.toContain('better-sqlite3');
      expect(loads.get(step)).not.toContain('superjson');
    }
  });

  it('loads better-sqlite3 once a SQLite store is used, and still no superjson for plain JSON values', () => {
    expect(loads.get('inline run')).toContain('better-sqlite3');
    expect(loads.get('inline run')).not.toContain('superjson');
    expect(loads.get('inline run')).not.toContain('piscina');
  });

  it('loads superjson for the first value that plain JSON cannot carry', () => {
    expect(loads.get('a Date stored')).toContain('superjson');
    expect(loads.get('a Date stored')).not.toContain('piscina');
  });

  it('loads piscina for the first thread step, and never keyv without a Keyv store', () => {
    expect(loads.get('thread run')).toContain('piscina');
    expect(loads.get('thread run')).not.toContain('keyv');
  });
});
