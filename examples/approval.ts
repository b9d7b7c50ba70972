/**
 * A run that waits for a person, answered from another process: this program starts an order flow
 * (prepare -> approve -> ship) in `interactive` mode on SQLite, and `approve` asks for an approval.
 * The run parks as `waiting`. A child process of this same file opens the same SQLite file with its
 * own FlowContext, submits the approval and goes on with the run there; the parent follows the run
 * through its handle to the end.
 *
 *   npx tsx examples/approval.ts
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { Flow, FlowContext, Processor, ResultsManager, type Step } from 'weir';

const RUN_ID = 'order-7';
const Order = z.object({ order: z.string() });
const Prepared = z.object({ order: z.string(), items: z.number() });
const Approval = z.object({ approved: z.boolean(), by: z.string() });
const Approved = Prepared.extend(Approval.shape);
const Shipped = z.object({ line: z.string() });
type Prepared = z.infer<typeof Prepared>;
type Approved = z.infer<typeof Approved>;

class Prepare extends Processor<typeof Order, typeof Prepared> {
  readonly input = Order;
  readonly output = Prepared;
  async process(input: z.infer<typeof Order>): Promise<Prepared> {
    return { order: input.order, items: 3 };
  }
}

/** Asks a person. The step runs again from its start once answered, so nothing here has side effects before the ask. */
class Approve extends Processor<typeof Prepared, typeof Approved> {
  readonly input = Prepared;
  readonly output = Approved;
  async process(input: Prepared, step: Step): Promise<Approved> {
    const answer = await step.waitForInput('approval', Approval);
    return { ...input, ...answer };
  }
}

class Ship extends Processor<typeof Approved, typeof Shipped> {
  readonly input = Approved;
  readonly output = Shipped;
  async process(input: Approved): Promise<z.infer<typeof Shipped>> {
    return { line: input.approved ? `shipped by ${input.by}` : `held by ${input.by}` };
  }
}

/** The same flow in both processes: a context goes on with a run only if it knows its flow. */
function orderFlow(): Flow<z.infer<typeof Order>, { ship?: z.infer<typeof Shipped> }> {
  const flow = Flow.sequential<z.infer<typeof Order>, { ship?: z.infer<typeof Shipped> }>('order');
  new Flow(new Prepare(), { name: 'prepare' }).registerTo(flow);
  new Flow(new Approve(), { name: 'approve' }).registerTo(flow);
  new Flow(new Ship(), { name: 'ship' }).registerTo(flow);
  return flow;
}

if (process.argv[2] === 'child') {
  // The child: a person's answer, from another process on the same file.
  const ctx = new FlowContext({ results: ResultsManager.sqlite(process.argv[3]!) });
  ctx.register(orderFlow());
  await ctx.submitInput(RUN_ID, 'approval', { approved: true, by: 'ana' });
  console.log('child: answered approval');
  // The run went on here (its flow is registered here): follow it to its end.
  const result = await (await ctx.handle<{ ship?: z.infer<typeof Shipped> }>(RUN_ID)).result();
  console.log(`child: run ${RUN_ID} ${result.status}: ${result.output?.ship?.line}`);
  await ctx.close();
} else {
  const dir = mkdtempSync(join(tmpdir(), 'weir-approval-'));
  const file = join(dir, 'runs.db');
  const ctx = new FlowContext({ results: ResultsManager.sqlite(file) });
  const flow = orderFlow();
  ctx.register(flow);

  const waiting = new Promise<void>((resolve) => ctx.once('run_waiting', () => resolve()));
  const handle = ctx.start(flow, { order: 'A-7' }, { runId: RUN_ID, mode: 'interactive' });
  await waiting;
  const { runs } = await ctx.listRuns({ status: 'waiting' });
  for (const run of runs) {
    for (const wait of run.waitingFor ?? []) console.log(`parent: run ${run.runId} waits for ${wait.key} (${wait.step})`);
  }
  console.log(`parent: active runs in this context: ${ctx.activeRuns}`);

  const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), 'child', file], { stdio: ['ignore', 'inherit', 'inherit'] });
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
  console.log(`parent: child exited with code ${code}`);
  // The handle follows the run wherever it goes on (here, in the child), reading the store.
  const result = await handle.result();
  console.log(`parent: run ${RUN_ID} ${result.status}: ${result.output?.ship?.line}`);
  const info = await ctx.getRun(RUN_ID);
  const attempts = info.steps.approve?.attempts.map((a) => (a.waitedFor === undefined ? `${a.attempt} ran` : `${a.attempt} waited for ${a.waitedFor.join(', ')}`));
  console.log(`parent: approve attempts: ${attempts?.join('; ')}`);
  await ctx.close();
  rmSync(dir, { recursive: true, force: true });
}
