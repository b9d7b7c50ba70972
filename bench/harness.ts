/** A tiny benchmark harness: warm up, repeat, report the median. Figures are for comparison within one run. */

/**
 * Node options that make a child program run TypeScript sources the way `npm run bench` does: compiled
 * as the package build compiles them (bench/loader), so a child times the same code as its parent.
 */
export const TS_LOADER: readonly string[] = ['--import', new URL('./loader/register.mjs', import.meta.url).href];

export interface Measurement {
  readonly name: string;
  /** Median wall time of one repetition, in milliseconds. */
  readonly ms: number;
  readonly runs: number;
}

/** Options of `measure`. */
export interface MeasureOptions {
  readonly warmup?: number;
  readonly runs?: number;
  /** Untimed work after each repetition, such as deleting what it stored. */
  readonly after?: () => Promise<unknown>;
}

/** Runs `fn` `warmup` times, then `runs` times, and returns the median duration. */
export async function measure(name: string, fn: () => Promise<unknown>, options: MeasureOptions = {}): Promise<Measurement> {
  const { warmup = 10, runs = 21, after } = options;
  for (let i = 0; i < warmup; i++) {
    await fn();
    await after?.();
  }
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const start = performance.now();
    await fn();
    times.push(performance.now() - start);
    await after?.();
  }
  times.sort((a, b) => a - b);
  return { name, ms: times[Math.floor(times.length / 2)]!, runs };
}

/** Formats microseconds per item. */
export function perItem(m: Measurement, items: number): string {
  return `${((m.ms * 1000) / items).toFixed(2)} µs`;
}

/** Prints a table row. */
export function row(...cells: string[]): void {
  console.log(cells.map((c, i) => (i === 0 ? c.padEnd(52) : c.padStart(14))).join(''));
}
