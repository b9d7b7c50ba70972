// Makes enough commits for the checkpointer thread to start, then closes the store or leaves it open, and ends its work.
import { SqliteRunStore } from '../../../src/storage/journal/sqlite/sqlite-run-store.js';

const [, , path, close] = process.argv;
const store = new SqliteRunStore(path!);
const owner = { processId: `writer:${process.pid}`, host: 'writer', pid: process.pid };
const now = Date.now();
const runId = 'chain';
await store.createRun(
  { runId, flow: 'chain', fingerprint: 'fp', input: null, mode: 'batch', humanInLoop: false, status: 'running', createdAt: now, updatedAt: now, owner, leaseExpiresAt: now + 60_000 },
  [{ type: 'run_start', runId, seq: 1, time: now, flow: 'chain', mode: 'batch' }],
);
for (let seq = 2; seq < 2500; seq++) {
  await store.commit({ runId, leaseToken: 1, run: { updatedAt: now }, events: [{ type: 'step_start', runId, seq, time: now, step: `s${seq}`, attempt: 1 }] });
}
if (close === 'close') await store.close();
process.send?.('done');
