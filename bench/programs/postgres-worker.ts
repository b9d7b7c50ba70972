// A worker process of the Postgres benchmark: takes queued runs of one flow (and runs of lost workers)
// from the store. Prints `ready` once its context is ready; `recovered <runId> <Date.now()>` for each run
// it takes over from a lost worker; on `stop` (any line but `go`) on stdin it closes its context, prints
// `closed <runs it completed>` and exits. With `hold`, the flow is registered, and so runs are taken,
// only when `go` comes on stdin (its connections opened before, so the start is not timed).
// argv: <postgres url> <schema> <flow: one | chain:<steps>:<ms>> <lease timeout ms> <queue concurrency> <poll interval ms> <now | hold>
import { createInterface } from 'node:readline';
import { FlowContext, ResultsManager } from '../../src/index.js';
import { benchFlow } from '../postgres.bench.js';

const [, , url, schema, spec, lease, concurrency, poll, start] = process.argv as [string, string, string, string, string, string, string, string, string];
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
process.stdout.write('ready\n');

const lines = createInterface({ input: process.stdin });
lines.on('line', (line) => {
  if (line === 'go') {
    ctx.register(flow);
    return;
  }
  lines.close();
  process.stdin.destroy();
  void ctx.close().then(() => process.stdout.write(`closed ${completed}\n`));
});
