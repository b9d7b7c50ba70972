// Runs one store-fault case in a child process (started by store-faults.test.ts, under a small file
// size limit): the generated flow of the plan on argv, on a SQLite file, in batch mode. Prints one
// line of JSON: the run's result, the completions and end a listener heard, the codes of the
// warnings weir emitted and whether close() settled. With no plan (`warm`), it only loads its code.
// Run with `node --import tsx`. argv: <sqlite file> <dir> <prefix> <plan as JSON> | warm
import { FlowContext, ResultsManager, type FlowResult } from '../../../src/index.js';
import type { CasePlan } from '../../property/plan.js';
import { heldEvents, prepare } from '../fault-plans.js';

const [, , file, dir, prefix, planJson] = process.argv as [string, string, string, string, string, string | undefined];
if (file === 'warm') process.exit(0);

const warnings: string[] = [];
process.on('warning', (w) => warnings.push(String((w as { code?: unknown }).code)));

const prepared = prepare(JSON.parse(planJson!) as CasePlan, dir, prefix);
const ctx = new FlowContext({ results: ResultsManager.sqlite(file) });
const held = heldEvents(ctx, prepared);
let result: FlowResult;
try {
  result = await ctx.start(prepared.flow, prepared.input, { runId: prepared.runId, mode: 'batch' }).result();
} finally {
  await ctx.close();
}
process.stdout.write(`${JSON.stringify({ result, held, warnings })}\n`);
