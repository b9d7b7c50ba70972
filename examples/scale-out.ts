/**
 * Two worker processes share the runs queued in one Postgres database; one is killed with SIGKILL
 * half-way, and the other takes over its runs once their leases run out.
 *
 *   DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres npx tsx examples/scale-out.ts
 *
 * It works in a schema of its own (dropped at the end) and needs `npm install pg`.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { z } from 'zod';
import { Flow, FlowContext, Processor, ResultsManager, type Step } from 'weir';

const url = process.env.DATABASE_URL;
if (url === undefined) {
  console.error('Set DATABASE_URL to a Postgres database, e.g. postgres://postgres@127.0.0.1:5432/postgres');
  process.exit(1);
}

const Invoice = z.object({ customer: z.string(), total: z.number() });
type Invoice = z.infer<typeof Invoice>;

/** One step of the invoice: takes a little while, as real work does. */
class Stage extends Processor<typeof Invoice, typeof Invoice> {
  readonly input = Invoice;
  readonly output = Invoice;
  readonly #add: number;
  constructor(add: number) {
    super();
    this.#add = add;
  }
  async process(input: Invoice, step: Step): Promise<Invoice> {
    await new Promise((resolve) => setTimeout(resolve, 150));
    if (process.argv[2] === 'worker') console.log(`  worker ${process.pid}: ${step.runId} ${step.name}`);
    return { ...input, total: input.total + this.#add };
  }
}

// One customer's invoices at a time, at most four invoices at once across every worker.
const invoice = Flow.sequential<Invoice>('invoice', { concurrency: 4, keyConcurrency: 1 });
new Flow(new Stage(100), { name: 'fetch' }).registerTo(invoice);
new Flow(new Stage(20), { name: 'tax' }).registerTo(invoice);
new Flow(new Stage(0), { name: 'send' }).registerTo(invoice);

const schema = process.argv[3] ?? `weir_example_${process.pid}`;
const results = ResultsManager.postgres(url, { schema });

if (process.argv[2] === 'worker') {
  // A worker: takes queued runs, and the runs of workers that died, until told to stop.
  const worker = new FlowContext({ results, recover: true, leaseTimeout: 2000 });
  worker.register(invoice);
  worker.on('run_resumed', (e) => console.log(`  worker ${process.pid}: took over ${e.runId} (${e.reason})`));
  worker.on('step_start', () => process.send!('working'));
  await worker.ready();
  process.send!('ready');
  process.once('message', () => void worker.close().then(() => process.disconnect()));
} else {
  const client = new FlowContext({ results });
  client.register(invoice);
  await client.ready();

  const start = (): ChildProcess => fork(import.meta.filename, ['worker', schema], { execArgv: ['--import', 'tsx'] });
  const workers = [start(), start()];
  await Promise.all(workers.map((w) => once(w, 'message')));
  console.log(`two workers ready: ${workers.map((w) => w.pid).join(', ')}`);

  const customers = ['ada', 'grace', 'alan', 'edsger'];
  const handles = [];
  for (let i = 0; i < 8; i++) {
    const customer = customers[i % customers.length]!;
    handles.push(await client.enqueue(invoice, { customer, total: 0 }, { runId: `invoice-${i + 1}`, concurrencyKey: customer, priority: i === 7 ? 10 : 0 }));
  }
  console.log('queued 8 invoices (invoice-8 first: priority 10)');

  // As soon as the first worker is at work on a run, it dies.
  await new Promise((resolve) => workers[0]!.on('message', (m) => m === 'working' && resolve(m)));
  workers[0]!.kill('SIGKILL');
  console.log(`killed worker ${workers[0]!.pid} with SIGKILL`);

  for (const handle of handles) {
    const result = await handle.result();
    console.log(`${handle.runId}: ${result.status}, total ${(result.output as Record<string, Invoice>).send?.total}`);
  }
  const { runs } = await client.listRuns({ flow: 'invoice' });
  console.log(`${runs.filter((r) => r.status === 'completed').length} of 8 completed; ${runs.filter((r) => r.recoveries > 0).length} taken over after the kill`);

  workers[1]!.send('stop');
  await once(workers[1]!, 'exit');
  await client.close();
  // Leave the database as it was.
  const { default: pg } = await import('pg');
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  await admin.query(`DROP SCHEMA "${schema}" CASCADE`);
  await admin.end();
}
