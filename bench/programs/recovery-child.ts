// Starts RUNS chains on a SQLite file and prints "ready" once every run has started and `after` steps completed; the bench then SIGKILLs it.
// argv: <db> <after>
import { FlowContext, ResultsManager } from '../../src/index.js';
import { recoveryChain, RUNS } from '../recovery-flow.js';

const [, , db, after] = process.argv as [string, string, string, string];
const ctx = new FlowContext({ results: ResultsManager.sqlite(db) });
const chain = recoveryChain();
ctx.register(chain);
const started = new Set<string>();
let completed = 0;
let told = false;
const check = (): void => {
  if (!told && started.size === RUNS && completed >= Number(after)) {
    told = true;
    process.stdout.write('ready\n');
  }
};
// run_start is delivered once the run's record is durable, step_complete once its output is.
ctx.on('run_start', (event) => {
  started.add(event.runId);
  check();
});
ctx.on('step_complete', () => {
  completed++;
  check();
});
for (let r = 0; r < RUNS; r++) ctx.start(chain, { n: 0 }, { runId: `run-${r}` });
