// A worker process of the failover tests: takes runs of the failover chain from the queue and from
// lost workers until it is killed, or until it reads a line on stdin (then it closes and exits).
// argv: <postgres url> <schema> <lease timeout ms> <steps> <step sleep ms> <queue concurrency>
import pg from 'pg';
import { FlowContext, ResultsManager } from '../../../src/index.js';
import { failoverChain } from '../failover-flow.js';

const [, , url, schema, lease, steps, sleep, concurrency] = process.argv as [string, string, string, string, string, string, string, string];
const effects = new pg.Pool({ connectionString: url, max: 4 });
effects.on('error', () => undefined);
const ctx = new FlowContext({
  results: ResultsManager.postgres(url, { schema, reconnectFor: 60_000 }),
  recover: true,
  leaseTimeout: Number(lease),
  queue: { concurrency: Number(concurrency), pollInterval: 200 },
  // A step's own query fails while the server restarts: it tries again.
  retry: { maxAttempts: 30, initialInterval: 100, maxInterval: 1000 },
});
ctx.register(failoverChain(effects, Number(steps), Number(sleep)));
let started = 0;
ctx.on('run_start', () => void started++);
ctx.on('run_resumed', (e) => process.stdout.write(`resumed ${e.runId} ${Date.now()}\n`));
await ctx.ready();
process.stdout.write('ready\n');
process.stdin.once('data', () => {
  void ctx.close().then(async () => {
    await effects.end();
    process.stdout.write(`closed ${started}\n`);
  });
});
