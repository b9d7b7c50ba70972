/**
 * Human in the loop: 1000 interactive runs of prepare -> approve (asks "approval") -> ship started
 * at once, on the memory store and on SQLite NORMAL. Measures the time until all 1000 parked, the
 * heap the parked runs hold (after a forced GC), and the time from answering all 1000 (at once, and
 * one after another) until every run completed; against the same flow run 1000 at once in batch
 * mode, where the ask takes its default and nothing waits. Run alone with `node --import ./bench/loader/register.mjs bench/waiting.bench.ts`.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { z } from 'zod';
import { Flow, FlowContext, Processor, ResultsManager, type FlowResult, type RunHandle, type Step } from '../src/index.js';
import { measure, row } from './harness.js';

const RUNS = 1000;
const Order = z.object({ order: z.number() });
type Order = z.infer<typeof Order>;
const Approval = z.object({ ok: z.boolean() });
const Approved = z.object({ order: z.number(), ok: z.boolean() });
type Approved = z.infer<typeof Approved>;
const Shipped = z.object({ order: z.number(), shipped: z.boolean() });

class Prepare extends Processor<typeof Order, typeof Order> {
  readonly input = Order;
  readonly output = Order;
  async process(input: Order): Promise<Order> {
    return { order: input.order };
  }
}

/** Asks a person; batch runs take the default at once. */
class Approve extends Processor<typeof Order, typeof Approved> {
  readonly input = Order;
  readonly output = Approved;
  async process(input: Order, step: Step): Promise<Approved> {
    const { ok } = await step.waitForInput('approval', Approval, { default: { ok: true } });
    return { order: input.order, ok };
  }
}

class Ship extends Processor<typeof Approved, typeof Shipped> {
  readonly input = Approved;
  readonly output = Shipped;
  async process(input: Approved): Promise<z.infer<typeof Shipped>> {
    return { order: input.order, shipped: input.ok };
  }
}

function orderFlow(): Flow<Order, Record<string, unknown>> {
  const root = Flow.sequential<Order>('order');
  new Flow(new Prepare(), { name: 'prepare' }).registerTo(root);
  new Flow(new Approve(), { name: 'approve' }).registerTo(root);
  new Flow(new Ship(), { name: 'ship' }).registerTo(root);
  return root;
}

/** `global.gc` when node runs with --expose-gc, else one made by turning the flag on now; `undefined` if neither works. */
function gcFunction(): (() => void) | undefined {
  const existing = (globalThis as { gc?: () => void }).gc;
  if (typeof existing === 'function') return existing;
  try {
    setFlagsFromString('--expose-gc');
    const made: unknown = runInNewContext('gc');
    return typeof made === 'function' ? (made as () => void) : undefined;
  } catch {
    return undefined;
  }
}

const gc = gcFunction();

/** Heap in use after letting pending work settle and collecting twice; `undefined` without a GC. */
async function settledHeap(): Promise<number | undefined> {
  if (gc === undefined) return undefined;
  for (let i = 0; i < 3; i++) await new Promise((resolve) => setTimeout(resolve, 30));
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

/** Counts one event type and resolves when `target` of them arrived. */
function counter(ctx: FlowContext, type: 'run_waiting' | 'run_complete', target: number): Promise<void> & { readonly count: () => number } {
  let count = 0;
  let resolve!: () => void;
  const reached = new Promise<void>((r) => (resolve = r));
  const listener = (): void => {
    if (++count === target) {
      ctx.off(type, listener);
      resolve();
    }
  };
  ctx.on(type, listener);
  return Object.assign(reached, { count: () => count });
}

/** Fails loudly unless every run completed with the answer taken and `approve` ran twice (or once in batch). */
function check(label: string, results: readonly FlowResult<Record<string, unknown>>[], approveAttempts: number, ok: boolean): void {
  const bad = results.filter((r) => {
    const ship = r.output?.ship as { shipped?: boolean } | undefined;
    return r.status !== 'completed' || r.steps.approve?.attempts.length !== approveAttempts || ship?.shipped !== ok;
  });
  if (results.length !== RUNS || bad.length > 0) {
    const first = bad[0];
    throw new Error(
      `${label}: ${results.length} results, ${bad.length} wrong; first: status ${first?.status}, approve attempts ${first?.steps.approve?.attempts.length}, output ${JSON.stringify(first?.output)}`,
    );
  }
}

interface Round {
  readonly parkMs: number;
  /** Heap held with the start handles kept, and with only the run ids kept; bytes. */
  readonly heapWithHandles: number | undefined;
  readonly heapIdsOnly: number | undefined;
  readonly activeRuns: number;
  readonly submittedMs: number;
  /** Until the 1000th `run_complete` event, and until every handle's `result()` settled. */
  readonly completedMs: number;
  readonly resultsMs: number;
}

/** Starts RUNS interactive runs, waits for all to park, then answers all (at once or one by one). */
async function waitAndAnswer(ctx: FlowContext, flow: Flow<Order, Record<string, unknown>>, answer: 'parallel' | 'sequential', runs = RUNS): Promise<Round> {
  const before = await settledHeap();
  const parked = counter(ctx, 'run_waiting', runs);
  const start = performance.now();
  let handles: RunHandle<Record<string, unknown>>[] | undefined = Array.from({ length: runs }, (_, i) => ctx.start(flow, { order: i }, { mode: 'interactive' }));
  await parked;
  const parkMs = performance.now() - start;
  const withHandles = await settledHeap();
  const activeRuns = ctx.activeRuns;
  const ids = handles.map((h) => h.runId);
  handles = undefined;
  const idsOnly = await settledHeap();
  // The stored-run handle is what a parked run's own handle follows too.
  const followed = await Promise.all(ids.map((id) => ctx.handle<Record<string, unknown>>(id)));

  const completed = counter(ctx, 'run_complete', runs);
  const answerStart = performance.now();
  const results = followed.map((h) => h.result());
  if (answer === 'parallel') await Promise.all(ids.map((id) => ctx.submitInput(id, 'approval', { ok: true })));
  else for (const id of ids) await ctx.submitInput(id, 'approval', { ok: true });
  const submittedMs = performance.now() - answerStart;
  await completed;
  const completedMs = performance.now() - answerStart;
  // A followed handle polls on an unref'd timer: without this the process may exit before the last result() settles.
  const keepAlive = setInterval(() => undefined, 1000);
  const all = await Promise.all(results).finally(() => clearInterval(keepAlive));
  const resultsMs = performance.now() - answerStart;
  if (runs === RUNS) check(`interactive, ${answer} answers`, all, 2, true);
  return {
    parkMs,
    heapWithHandles: before === undefined || withHandles === undefined ? undefined : withHandles - before,
    heapIdsOnly: before === undefined || idsOnly === undefined ? undefined : idsOnly - before,
    activeRuns,
    submittedMs,
    completedMs,
    resultsMs,
  };
}

const kb = (bytes: number | undefined, per = 1): string => (bytes === undefined ? 'no gc' : `${(bytes / 1024 / per).toFixed(per === 1 ? 0 : 2)} KB`);

export async function waitingBench(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'weir-waiting-bench-'));
  try {
    console.log(`\n## Waiting for input: ${RUNS} interactive runs of prepare -> approve (asks) -> ship, started at once\n`);
    if (gc === undefined) console.log('(no GC available: memory figures are not measured)\n');
    const flow = orderFlow();
    for (const kind of ['memory', 'sqlite'] as const) {
      const ctx = new FlowContext({ results: kind === 'memory' ? ResultsManager.memory() : ResultsManager.sqlite(join(dir, 'waiting.db')), concurrency: RUNS });
      const label = kind === 'memory' ? 'memory store' : 'SQLite NORMAL';
      const prune = (): Promise<number> => ctx.prune({ olderThan: new Date(Date.now() + 1) });
      try {
        ctx.register(flow);
        let batchResults: FlowResult<Record<string, unknown>>[] = [];
        const batch = await measure(
          `batch ${kind}`,
          async () => (batchResults = await Promise.all(Array.from({ length: RUNS }, (_, i) => ctx.start(flow, { order: i }).result()))),
          { warmup: 2, runs: 5, after: prune },
        );
        check('batch baseline', batchResults, 1, true);
        // Warm the wait and answer paths up before measuring them.
        await waitAndAnswer(ctx, flow, 'parallel', 200);
        await prune();
        const par = await waitAndAnswer(ctx, flow, 'parallel');
        await prune();
        const seq = await waitAndAnswer(ctx, flow, 'sequential');
        await prune();

        console.log(`### ${label}\n`);
        row('case', 'ms', 'runs/s', 'ms/run');
        row(`batch, ask takes its default (baseline)`, batch.ms.toFixed(1), ((RUNS / batch.ms) * 1000).toFixed(0), (batch.ms / RUNS).toFixed(3));
        for (const [name, r] of [['parallel', par], ['sequential', seq]] as const) {
          row(`interactive (${name} answers): start -> all parked`, r.parkMs.toFixed(1), ((RUNS / r.parkMs) * 1000).toFixed(0), (r.parkMs / RUNS).toFixed(3));
          row(`  answer -> all submitInput resolved`, r.submittedMs.toFixed(1), ((RUNS / r.submittedMs) * 1000).toFixed(0), (r.submittedMs / RUNS).toFixed(3));
          row(`  answer -> 1000th run_complete`, r.completedMs.toFixed(1), ((RUNS / r.completedMs) * 1000).toFixed(0), (r.completedMs / RUNS).toFixed(3));
          row(`  answer -> all result() settled`, r.resultsMs.toFixed(1), ((RUNS / r.resultsMs) * 1000).toFixed(0), (r.resultsMs / RUNS).toFixed(3));
          const total = r.parkMs + r.completedMs;
          row(`  park + answer to completion vs batch`, total.toFixed(1), '', `${(total / batch.ms).toFixed(1)}x`);
        }
        row('heap held by 1000 parked runs, handles kept', kb(par.heapWithHandles), '', kb(par.heapWithHandles, RUNS));
        row('heap held by 1000 parked runs, only ids kept', kb(par.heapIdsOnly), '', kb(par.heapIdsOnly, RUNS));
        row('ctx.activeRuns while all are parked', String(par.activeRuns), '', '');
        console.log('');
        if (par.activeRuns !== 0 || seq.activeRuns !== 0) throw new Error(`${label}: ${par.activeRuns} runs still active while all are parked (expected 0)`);
      } finally {
        await ctx.close();
      }
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  console.log(`weir waiting-for-input benchmark on Node ${process.version}`);
  await waitingBench();
}
