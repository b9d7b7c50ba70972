/**
 * A run that survives `kill -9`: this program starts itself as a child process that runs a
 * six-step pipeline on SQLite, kills the child with SIGKILL half-way, then recovers the run here.
 * The completed steps are kept; the rest run, and the output is the same as an uninterrupted run's.
 *
 *   npx tsx examples/crash-and-recover.ts
 */
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { Flow, FlowContext, Processor, ResultsManager, type Step } from 'weir';

const FILE = '.weir/crash-and-recover.db';
const Total = z.object({ total: z.number(), trail: z.array(z.string()) });
type Total = z.infer<typeof Total>;

/** Adds its step's number to the total, slowly, like a step that calls a remote service. */
class AddStep extends Processor<typeof Total, typeof Total> {
  readonly input = Total;
  readonly output = Total;
  async process(input: Total, step: Step): Promise<Total> {
    await new Promise((resolve) => setTimeout(resolve, 150));
    console.log(`  ${process.argv[2] === 'child' ? 'child ' : 'parent'} ran ${step.name}`);
    return { total: input.total + Number(step.name.slice(4)), trail: [...input.trail, step.name] };
  }
}

/** Six steps, each getting the previous one's total: its input is a Total, its output each step's Total by name. */
function pipeline(): Flow<Total, Record<string, Total>> {
  const flow = Flow.sequential<Total, Record<string, Total>>('pipeline');
  for (let i = 1; i <= 6; i++) new Flow(new AddStep(), { name: `step${i}` }).registerTo(flow);
  return flow;
}

if (process.argv[2] === 'child') {
  // The child: start the run and work until it is killed.
  const ctx = new FlowContext({ results: ResultsManager.sqlite(FILE) });
  const flow = pipeline();
  ctx.register(flow);
  await ctx.run(flow, { total: 0, trail: [] }, { runId: 'order-42' });
} else {
  rmSync(FILE, { force: true });
  rmSync(`${FILE}-wal`, { force: true });
  rmSync(`${FILE}-shm`, { force: true });
  console.log('child: starting run order-42');
  const child = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), 'child'], { stdio: ['ignore', 'pipe', 'inherit'] });
  let done = 0;
  child.stdout.on('data', (chunk: Buffer) => {
    process.stdout.write(chunk);
    done += chunk.toString().split('ran ').length - 1;
    if (done >= 3) child.kill('SIGKILL');
  });
  await new Promise((resolve) => child.on('exit', resolve));
  console.log('child: killed with SIGKILL');

  const ctx = new FlowContext({ results: ResultsManager.sqlite(FILE) });
  const flow = pipeline();
  ctx.register(flow);
  const before = await ctx.getRun('order-42');
  console.log(`parent: run order-42 is ${before.status}, ${before.progress.done} of ${before.progress.total} steps done, stale: ${before.stale}`);
  await ctx.recover();
  // Given the flow, the handle is typed: result.output is Record<string, Total> | undefined.
  const result = await (await ctx.handle('order-42', flow)).result();
  const last = result.output?.step6;
  console.log(`parent: run ${result.runId} ${result.status}, total ${last?.total}, trail ${last?.trail.join(' ')}`);
  await ctx.close();
}
