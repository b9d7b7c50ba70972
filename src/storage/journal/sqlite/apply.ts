/**
 * One queued write applied inside the write transaction: checked against its run's head first, so
 * a refused write throws a `FlowError` before it changes anything and the others of its group go on.
 * @internal
 */
import type { CommitBatch } from '../run-store.js';
import { checkEvents, conflictError, leaseLostError, notFoundError } from '../store-support.js';
import type { Work } from './rows.js';
import type { Statements } from './statements.js';

const KIND = 'sqlite';

interface Head {
  lease_token: number;
  last_seq: number;
}

/**
 * Applies one write; returns what its caller is told (the run record of a create, whether an
 * input entry was stored). `committed` hears of each run a commit changed.
 * @throws FlowError refusing the write (unknown run, existing run, stale token, a seq gap or duplicate).
 */
export function applyWork(statements: Statements, work: Work, committed: (runId: string) => void): unknown {
  const s = statements.fixed;
  if (work.type === 'input') {
    if (s.runExists.get(work.runId) === undefined) throw notFoundError(KIND, work.runId);
    return s.insertInput.run(work.runId, work.key, work.outcome, work.value, work.at).changes === 1;
  }
  if (work.type === 'clear-inputs') {
    if (s.runExists.get(work.runId) === undefined) throw notFoundError(KIND, work.runId);
    for (const key of work.keys) s.deleteInput.run(work.runId, key);
    return undefined;
  }
  if (work.type === 'create') {
    const runId = work.record.runId;
    if (s.insertRun.run(work.row).changes !== 1) throw conflictError(KIND, runId);
    statements.insertEvents(work.events);
    return work.record;
  }
  const { batch } = work;
  const runId = batch.runId;
  // The fence is a read: inside this write transaction (BEGIN IMMEDIATE) no other connection writes.
  const lastSeq = checkHead(statements, batch);
  if (work.patchKey !== '') {
    const changes = statements.patch(work.patchKey).run(work.patchParams).changes;
    if (changes !== 1) throw new Error(`the fenced update of run ${JSON.stringify(runId)} changed ${changes} rows, yet its head accepts the batch`);
  }
  committed(runId);
  if (work.events !== undefined) {
    statements.insertEvents(work.events);
    return undefined;
  }
  // No event to carry them: the records go to their own tables, ordered by the run's last seq.
  for (const [step, data, hasOutput] of work.steps) {
    s.upsertStep.run(runId, step, data, lastSeq);
    if (hasOutput === 0) s.deleteOutput.run(runId, step);
  }
  for (const [step, value] of work.outputs) s.upsertOutput.run(runId, step, value, lastSeq);
  return undefined;
}

/** Refuses a batch as its run's head shows it (unknown run, stale token, a seq gap or duplicate); returns the run's last seq. */
function checkHead(statements: Statements, batch: CommitBatch): number {
  const head = statements.fixed.runHead.get(batch.runId, batch.runId) as Head | undefined;
  if (head === undefined) throw notFoundError(KIND, batch.runId);
  if (head.lease_token !== batch.leaseToken) throw leaseLostError(KIND, batch.runId, head.lease_token, batch.leaseToken);
  checkEvents(KIND, batch.runId, head.last_seq, batch.events);
  return head.last_seq;
}
