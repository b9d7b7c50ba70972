// A worker process of the Postgres benchmark: takes queued runs of one flow (and runs of lost workers)
// from the store. Prints `ready` once its context is ready; `recovered <runId> <Date.now()>` for each run
// it takes over from a lost worker; on `stop` (any line but `go`) on stdin it closes its context, prints
// `closed <runs it completed> <CPU ms it used since ready, or since go>` and exits. With `hold`, the
// flow is registered, and so runs are taken, only when `go` comes on stdin (its connections opened
// before, so the start is not timed).
// With a host name other than `-`, the worker says it runs on that host (os.hostname), so the others
// cannot see that its process died and wait for its leases to run out, as they would on another machine.
// argv: <postgres url> <schema> <flow: one | chain:<steps>:<ms>> <lease timeout ms> <queue concurrency> <poll interval ms> <now | hold> <host | ->
import { syncBuiltinESMExports } from 'node:module';
import os from 'node:os';
import { createInterface } from 'node:readline';

const [, , url, schema, spec, lease, concurrency, poll, start, host] = process.argv as [string, string, string, string, string, string, string, string, string, string];
if (host !== '-') {
  os.hostname = () => host;
  syncBuiltinESMExports();
}
// Imported after the host name is set: weir reads it when it loads.
const { FlowContext, ResultsManager } = await import('../../src/index.js');
const { benchFlow } = await import('../postgres.bench.js');
const ctx = new FlowContext({
  results: ResultsManager.postgres(url, { schema }),
  recover: true,
  leaseTimeout: Number(lease),
  // Steps at once as well as runs held at once, so neither limit hides the other.
  concurrency: Number(concurrency),
  queue: { concurrency: Number(concurrency), pollInterval: Number(poll) },
});
const flow = benchFlow(spec);
let completed = 0;
ctx.on('run_complete', () => void completed++);
ctx.on('run_resumed', (e) => {
  if (e.reason === 'recovered') process.stdout.write(`recovered ${e.runId} ${Date.now()}\n`);
});
if (start === 'now') ctx.register(flow);
await ctx.ready();
// Opens the pool's connections now (reads that find nothing), so the timed part does not.
await Promise.all(Array.from({ length: 8 }, () => ctx.listRuns({ limit: 1 })));
let cpu = process.cpuUsage();
process.stdout.write('ready\n');

const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  if (line === 'go') {
    cpu = process.cpuUsage();
    ctx.register(flow);
    return;
  }
  lines.close();
  process.stdin.destroy();
  const used = process.cpuUsage(cpu);
  void ctx.close().then(() => process.stdout.write(`closed ${completed} ${((used.user + used.system) / 1000).toFixed(0)}\n`));
});
