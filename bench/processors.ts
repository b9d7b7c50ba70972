/** Processors the executor benchmark runs on threads and in child processes. */
import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { z } from 'zod';
import { Processor } from '../src/index.js';

const N = z.object({ n: z.number() });
type N = z.infer<typeof N>;

/** Adds one: as little work as a step can do, to show dispatch cost. */
export class Inc extends Processor<typeof N, typeof N> {
  static module = import.meta.url;
  readonly input = N;
  readonly output = N;
  process(input: N): N {
    return { n: input.n + 1 };
  }
}

/** A number and about 75 bytes of text: outputs of about 100 bytes, like a small real result. */
export const Carried = z.object({ n: z.number(), text: z.string() });
export type Carried = z.infer<typeof Carried>;

/** The text a `Next` chain carries from step to step. */
export const TEXT = 'the quick brown fox jumps over the lazy dog, then naps in the afternoon sun';

/** Adds one and carries the text on: the step of the durable benchmarks' chains. */
export class Next extends Processor<typeof Carried, typeof Carried> {
  readonly input = Carried;
  readonly output = Carried;
  async process(input: Carried): Promise<Carried> {
    return { n: input.n + 1, text: input.text };
  }
}

const Bytes = z.object({ bytes: z.number() });

/** Gzips each of `files`, `rounds` times; returns the compressed size. CPU-bound. */
export class GzipFiles extends Processor<z.ZodUnknown, typeof Bytes> {
  static module = import.meta.url;
  readonly input = z.unknown();
  readonly output = Bytes;
  files: string[] = [];
  rounds = 1;
  process(): { bytes: number } {
    return { bytes: gzipFiles(this.files, this.rounds) };
  }
}

/** The work itself, shared with the inline and hand-written Piscina baselines. */
export function gzipFiles(files: readonly string[], rounds: number): number {
  let bytes = 0;
  for (let r = 0; r < rounds; r++) for (const file of files) bytes += gzipSync(readFileSync(file)).length;
  return bytes;
}

/** The same function as a plain-JS module source, for the hand-written Piscina baseline. */
export const rawGzipWorker = `
import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
export default function ({ files, rounds }) {
  let bytes = 0;
  for (let r = 0; r < rounds; r++) for (const file of files) bytes += gzipSync(readFileSync(file)).length;
  return { bytes };
}
`;

/** The trivial function as a Piscina worker and as a forked child, for the dispatch baselines. */
export const rawIncWorker = `export default function ({ n }) { return { n: n + 1 }; }\n`;
export const rawIncChild = `process.on('message', ({ n }) => process.send({ n: n + 1 }));\n`;
