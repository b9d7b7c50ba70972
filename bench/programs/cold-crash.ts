// Starts RUNS chains on a SQLite file with the built weir and prints "ready" once every run has
// started and `after` steps completed; the cold-start benchmark then SIGKILLs it.
// argv: <weir's index.js> <db> <after>
import { coldChain, RUNS } from './cold-flow.js';

type Weir = typeof import('../../src/index.js');

const [, , entry, db, after] = process.argv as [string, string, string, string, string];
const weir = (await import(entry)) as Weir;
const ctx = new weir.FlowContext({ results: weir.ResultsManager.sqlite(db) });
const chain = coldChain(weir);
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
ctx.on('run_start', (event) => {
  started.add(event.runId);
  check();
});
ctx.on('step_complete', () => {
  completed++;
  check();
});
for (let r = 0; r < RUNS; r++) ctx.start(chain, { n: 0 }, { runId: `run-${r}` });
