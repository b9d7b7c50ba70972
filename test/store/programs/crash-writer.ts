// Commits step completions to four runs in a loop, forever, reporting each one; the test kills it with SIGKILL.
import { ResultsManager, runStoreOf } from '../../../src/results/results-manager.js';
import type { RunStore } from '../../../src/storage/journal/run-store.js';
import { SqliteRunStore } from '../../../src/storage/journal/sqlite/sqlite-run-store.js';

const [, , kind, path] = process.argv;
const store: RunStore = kind === 'sqlite' ? new SqliteRunStore(path!) : runStoreOf(ResultsManager.disk(path!));
const owner = { processId: `writer:${process.pid}`, host: 'writer', pid: process.pid };
const now = Date.now();

async function writeRun(runId: string): Promise<void> {
  const run = await store.createRun(
    { runId, flow: 'chain', fingerprint: 'fp', input: { n: 0 }, mode: 'batch', humanInLoop: false, status: 'running', createdAt: now, updatedAt: now, owner, leaseExpiresAt: now + 60_000 },
    [{ type: 'run_start', runId, seq: 1, time: now, flow: 'chain', mode: 'batch' }],
  );
  let seq = 1;
  for (let i = 0; ; i++) {
    const step = `s${i}`;
    const t = Date.now();
    // Not awaited one by one: the start and the completion of a step go into the same group commit.
    const start = store.commit({
      runId,
      leaseToken: run.leaseToken,
      steps: [{ runId, step, status: 'running', attempts: [], startTime: t, hasOutput: false, updatedAt: t }],
      events: [{ type: 'step_start', runId, seq: ++seq, time: t, step, attempt: 1 }],
    });
    const done = store.commit({
      runId,
      leaseToken: run.leaseToken,
      run: { updatedAt: t },
      steps: [{ runId, step, status: 'completed', attempts: [{ attempt: 1, startTime: t, endTime: t, duration: 0 }], startTime: t, endTime: t, hasOutput: true, updatedAt: t }],
      outputs: [{ step, value: { i, at: new Date(t), pad: 'x'.repeat(100) } }],
      events: [{ type: 'step_complete', runId, seq: ++seq, time: t, step, attempt: 1, duration: 0 }],
    });
    await Promise.all([start, done]);
    process.send!(1);
  }
}

await Promise.all(['a', 'b', 'c', 'd'].map((id) => writeRun(id)));
