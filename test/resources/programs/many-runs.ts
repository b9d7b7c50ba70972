// The memory test's child process: one long-lived context runs many one-step runs, 500 started at
// once then awaited, and prints one JSON line: the heap after forced full GCs once the warm-up runs
// ended and once all ended, how many runs failed, how many the history lists, and what `getRun`
// says of the first run and of the last (its status, or its error's code).
// Run with `node --expose-gc --import tsx`.
// argv: <memory | sqlite file> <finished runs the memory store keeps> <warm-up runs> <runs> <turn | busy>
//   turn: the event loop gets one turn between batches, as in any app that serves requests;
//   busy: it never does (the whole load runs in one macrotask).
import { setImmediate as turn, setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { Flow, FlowContext, FlowError, Processor, ResultsManager } from '../../../src/index.js';

const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error('run the program with node --expose-gc');

const [, , store, keep, warmUp, total, between] = process.argv as [string, string, string, string, string, string, string];

const Item = z.object({ n: z.number(), text: z.string() });
type Item = z.infer<typeof Item>;

class Next extends Processor<typeof Item, typeof Item> {
  readonly input = Item;
  readonly output = Item;
  async process(input: Item): Promise<Item> {
    return { n: input.n + 1, text: input.text };
  }
}

/** Heap used after full collections (several, so weak references and finalizers are done), once timers due now fired. */
async function heap(): Promise<number> {
  if (between === 'turn') await sleep(50);
  for (let i = 0; i < 4; i++) gc!();
  return process.memoryUsage().heapUsed;
}

const results = store === 'memory' ? ResultsManager.memory({ keepFinishedRuns: Number(keep) }) : ResultsManager.sqlite(store);
const ctx = new FlowContext({ results, concurrency: 500 });
const one = new Flow(new Next(), { name: 'one' });
const text = 'the quick brown fox jumps over the lazy dog, then naps in the afternoon sun';
let first: string | undefined;
let last: string | undefined;
let started = 0;
let failed = 0;

async function runUntil(count: number): Promise<void> {
  while (started < count) {
    const handles = Array.from({ length: Math.min(500, count - started) }, (_, i) => ctx.start(one, { n: i, text }));
    started += handles.length;
    first ??= handles[0]!.runId;
    last = handles.at(-1)!.runId;
    for (const result of await Promise.all(handles.map((h) => h.result()))) if (result.status !== 'completed') failed++;
    if (between === 'turn') await turn();
  }
}

await runUntil(Number(warmUp));
const warm = await heap();
await runUntil(Number(total));
const final = await heap();
// What the history holds now: how many runs it lists, and what it says of the first and the last.
let listed = 0;
for (let before: string | undefined; ; ) {
  const page = await ctx.listRuns({ limit: 1000, ...(before === undefined ? {} : { before }) });
  listed += page.runs.length;
  if (page.next === undefined) break;
  before = page.next;
}
const lookUp = (runId: string): Promise<string> =>
  ctx.getRun(runId).then(
    (run) => run.status,
    (error: unknown) => (error instanceof FlowError ? error.code : `not a FlowError: ${String(error as Error)}`),
  );
process.stdout.write(`${JSON.stringify({ warm, final, runs: started, failed, listed, first: await lookUp(first!), last: await lookUp(last!) })}\n`);
await ctx.close();
