/**
 * One seed and one scale for every generated test (property, crash, fault, load and fuzz tests), so
 * `npm run soak` can run them longer and a failure can be replayed:
 * `WEIR_SEED=123 npx vitest run test/property` runs the cases that seed makes, and
 * `WEIR_SCALE=10` runs ten times as many cases as `npm test` does.
 */
import type { Parameters as FcParameters } from 'fast-check';

/** The seed given by the environment (`WEIR_SEED`), or one drawn now and printed when a property fails. */
export const seed: number = parseSeed(process.env.WEIR_SEED);

/** How many times the bounded case counts of `npm test` run (`WEIR_SCALE`, at least 1). @default 1 */
export const scale: number = Math.max(1, Number(process.env.WEIR_SCALE ?? 1) || 1);

/** `n` cases, times the scale. */
export function cases(n: number): number {
  return Math.max(1, Math.round(n * scale));
}

/** fast-check's parameters for a property of `n` bounded cases, on the shared seed (a failure's report gives the seed and path to replay it). */
export function fcParams<T>(n: number, extra: FcParameters<T> = {}): FcParameters<T> {
  // WEIR_NO_SHRINK=1 reports the first failing case as generated, at once (to read a failure that shrinks slowly).
  const noShrink = process.env.WEIR_NO_SHRINK !== undefined && process.env.WEIR_NO_SHRINK !== '' ? { endOnFailure: true } : {};
  return { numRuns: cases(n), seed, ...extra, ...noShrink };
}

function parseSeed(text: string | undefined): number {
  if (text === undefined || text === '') return (Date.now() ^ (process.pid << 16)) | 0;
  const n = Number(text);
  if (!Number.isSafeInteger(n)) throw new Error(`WEIR_SEED must be an integer, got ${JSON.stringify(text)}`);
  return n | 0;
}

/** A test's time limit for `ms` at scale 1, stretched with the scale (for `npm run soak`). */
export function testTimeout(ms: number): number {
  return Math.round(ms * scale);
}

/** Counts a generated test keeps (cases, kills, faults...), printed after it when `WEIR_REPORT` is set (`npm run soak` sets it). */
export class Tally {
  readonly #counts = new Map<string, number>();
  constructor(readonly name: string) {}
  add(what: string, n = 1): void {
    this.#counts.set(what, (this.#counts.get(what) ?? 0) + n);
  }
  get(what: string): number {
    return this.#counts.get(what) ?? 0;
  }
  /** Prints the counts as one JSON line (`weir-tally {...}`), when asked to. */
  report(): void {
    if (process.env.WEIR_REPORT === undefined || process.env.WEIR_REPORT === '') return;
    process.stdout.write(`weir-tally ${JSON.stringify({ test: this.name, seed, scale, ...Object.fromEntries(this.#counts) })}\n`);
  }
}
