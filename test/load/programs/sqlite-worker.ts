// A worker process of the SQLite load test: takes runs queued on the shared file, and the runs of a
// worker that died, until it is killed or its stdin ends (then it closes its context and must exit
// by itself). Started as a standby, it loads its code, prints `standby <pid>` and opens its context
// only on `start`. It prints `ready <usage>` once its store is open, `taken <runId> <reason>` for
// every run it takes over (a `run_resumed` here), `snapshot <usage>` (heap after a forced GC, open
// file descriptors) at once when it reads `snapshot` on stdin, and `usage <usage>` when it reads
// `report`, once it runs nothing.
// Run with `node --expose-gc --import tsx`. argv: <sqlite file> <effects dir> <lease timeout ms> <poll interval ms> <queue concurrency> [standby]
import { readdirSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setImmediate as turn } from 'node:timers/promises';
import { FlowContext, ResultsManager } from '../../../src/index.js';
import { FileEffectLog, loadFlows } from '../load-flows.js';

const [, , file, dir, lease, poll, concurrency, standby] = process.argv as [string, string, string, string, string, string, string, string | undefined];
const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error('run the worker with node --expose-gc');

/** What this process holds: the heap after a full GC, and its open file descriptors by kind. */
function usage(): { heapUsed: number; fds: number; kinds: Record<string, number> } {
  gc!();
  gc!();
  const kinds: Record<string, number> = {};
  const fds = readdirSync('/proc/self/fd');
  for (const fd of fds) {
    let target: string;
    try {
      target = readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      target = 'closed'; // the descriptor readdir itself used
    }
    const kind = target.startsWith('/') ? (target.startsWith(file) ? `db${target.slice(file.length)}` : target) : target.replace(/\[\d+\]$/, '');
    kinds[kind] = (kinds[kind] ?? 0) + 1;
  }
  return { heapUsed: process.memoryUsage().heapUsed, fds: fds.length, kinds };
}

const print = (line: string): void => void process.stdout.write(`${line}\n`);
let started = 0;
let completed = 0;

/** Opens the context on the file: from here on it takes runs. */
async function begin(): Promise<FlowContext> {
  const ctx = new FlowContext({
    results: ResultsManager.sqlite(file),
    recover: true,
    leaseTimeout: Number(lease),
    // Five kills can take a run over five times; the test is about kills, not poison runs.
    maxRecoveries: 1000,
    queue: { concurrency: Number(concurrency), pollInterval: Number(poll) },
  });
  for (const flow of loadFlows(new FileEffectLog(dir))) ctx.register(flow);
  ctx.on('run_start', () => void started++);
  ctx.on('run_complete', () => void completed++);
  ctx.on('run_resumed', (e) => print(`taken ${e.runId} ${e.reason}`));
  await ctx.ready();
  print(`ready ${JSON.stringify(usage())}`);
  return ctx;
}

// A standby has loaded its code (a store opened and closed on a scratch file loads weir's lazy
// parts) and waits for `start`, so a restart after a kill takes milliseconds.
let opening = standby === 'standby' ? undefined : begin();
if (opening === undefined) {
  await (await new FlowContext({ results: ResultsManager.sqlite(join(dir, `warm-${process.pid}.db`)) }).ready()).close();
  print(`standby ${process.pid}`);
}
const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  if (line === 'start') opening ??= begin();
  if (line === 'snapshot') print(`snapshot ${JSON.stringify(usage())}`);
  if (line !== 'report' || opening === undefined) return;
  void (async () => {
    const ctx = await opening;
    // Idle: no run of its own left, and the turns after their last commits have passed.
    while ((await ctx.health()).runs.active > 0) await turn();
    for (let i = 0; i < 10; i++) await turn();
    const health = await ctx.health();
    print(`usage ${JSON.stringify({ ...usage(), leasesOnTime: health.leases.onTime })}`);
  })();
});
lines.on('close', () => {
  void opening?.then((ctx) => ctx.close()).then(() => print(`closed ${JSON.stringify({ started, completed })}`));
});
