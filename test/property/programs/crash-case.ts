// Runs (or recovers) a generated flow on a SQLite file and SIGKILLs itself around its N-th store
// write, as a crash at a commit boundary would; prints the run's status when it gets to the end.
// argv: <role: run | recover> <case.json> <kill: N | 0 for none> <when: before | after>
import { readFileSync } from 'node:fs';
import { FlowContext, ResultsManager } from '../../../src/index.js';
import type { RunStore } from '../../../src/storage/journal/run-store.js';
import { buildFlow, nameTree } from '../plan.js';
import type { CrashCase } from '../crash-case.js';
import { TEST_HOOKS, WRITES } from './store-writes.js';

const [, , role, file, killAt, when] = process.argv as [string, string, 'run' | 'recover', string, string, 'before' | 'after'];
const c = JSON.parse(readFileSync(file, 'utf8')) as CrashCase;
let writes = 0;
const kill = Number(killAt);

/** Counts the store's writes and dies with the N-th: before it reaches the store, or once it is durable. */
function dyingAt(store: RunStore): RunStore {
  return new Proxy(store, {
    get(target, key) {
      const value: unknown = Reflect.get(target, key);
      if (typeof value !== 'function') return value;
      if (typeof key !== 'string' || !WRITES.has(key)) return (value as (...a: unknown[]) => unknown).bind(target);
      return async (...args: unknown[]) => {
        const n = ++writes;
        if (n === kill && when === 'before') process.kill(process.pid, 'SIGKILL');
        const result: unknown = await (value as (...a: unknown[]) => Promise<unknown>).apply(target, args);
        if (n === kill && when === 'after') process.kill(process.pid, 'SIGKILL');
        return result;
      };
    },
  });
}

const flow = buildFlow(nameTree(c.plan.root, c.prefix), c.effects);
const ctx = new FlowContext({
  results: ResultsManager.sqlite(c.db),
  [TEST_HOOKS]: { wrapStore: dyingAt },
} as ConstructorParameters<typeof FlowContext>[0]);
ctx.register(flow);
let status: string;
if (role === 'run') {
  status = (await ctx.run(flow, c.input, { runId: c.runId, mode: 'batch' })).status;
} else {
  const handles = await ctx.recover();
  const mine = handles.find((h) => h.runId === c.runId);
  if (mine === undefined) throw new Error(`recover() did not take run "${c.runId}" (took ${JSON.stringify(handles.map((h) => h.runId))})`);
  status = (await mine.result()).status;
}
await ctx.close();
process.stdout.write(JSON.stringify({ status, writes }));
