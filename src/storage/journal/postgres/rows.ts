/**
 * Records of the Postgres journal as rows and writes: a `runs` row to and from a `RunRecord`, and
 * creates and commits as the items of the write function, their values serialised before they
 * are queued, so nothing can fail to serialise on the server.
 * @internal
 */
import type { WeirEvent } from '../../../model/events.js';
import { encodeCompact } from '../../codec.js';
import type { CommitBatch, RunRecord } from '../run-store.js';
import { PATCH_COLUMNS, checkBatch, checkEvents, decodeStored, patchColumnValue, patchedKeys, runOfRow, type RecordKind, releases, type SqlRunRow } from '../store-support.js';
import type { WriteItem } from './write-queue.js';

const KIND = 'postgres';

/** The columns of a `runs` row that a `RunRecord` holds. */
export const RUN_COLUMNS =
  'run_id, flow, fingerprint, version, mode, human_in_loop, status, created_at, updated_at, ended_at, error, output, retry_of, retried_by, ran_by, owner, lease_token, lease_expires_at, recoveries, last_seq, input, priority, concurrency_key';

/** A `runs` row as read with `RUN_COLUMNS`. */
export interface RunRow extends SqlRunRow {
  /** `''` for none. */
  version: string;
  human_in_loop: boolean;
  last_seq: number;
}

/** Decodes a stored value. @throws `WEIR_CORRUPT_RECORD` naming the record when it cannot be read. */
export function decodeText(record: RecordKind, key: string, text: string): unknown {
  return decodeStored(KIND, record, key, text);
}

/** The record a run row holds. @throws `WEIR_CORRUPT_RECORD` when a column cannot be read. */
export function toRun(row: RunRow): RunRecord {
  return runOfRow(KIND, row, row.human_in_loop, row.last_seq);
}

/** Events as `[seq, data]` pairs. */
function encodeEvents(events: readonly WeirEvent[] | undefined): [number, string][] {
  if (events === undefined) return [];
  return events.map((e) => [e.seq, encodeCompact(e, `event ${e.seq}`)]);
}

/** The write that creates a run with its first events. @throws `WEIR_SERIALIZATION` for an input that cannot be stored. */
export function createItem(run: RunRecord, events: readonly WeirEvent[]): WriteItem {
  return {
    t: 'c',
    id: run.runId,
    run: {
      flow: run.flow,
      fingerprint: run.fingerprint,
      version: run.version ?? '',
      mode: run.mode,
      human_in_loop: run.humanInLoop,
      status: run.status,
      created_at: run.createdAt,
      updated_at: run.updatedAt,
      ended_at: run.endedAt ?? null,
      error: run.error === undefined ? null : JSON.stringify(run.error),
      output: 'output' in run ? encodeCompact(run.output, `output of run ${run.runId}`) : null,
      retry_of: run.retryOf ?? null,
      retried_by: run.retriedBy ?? null,
      ran_by: run.ranBy ?? null,
      owner_id: run.owner?.processId ?? null,
      owner: run.owner === undefined ? null : JSON.stringify(run.owner),
      lease_token: run.leaseToken,
      lease_expires_at: run.leaseExpiresAt,
      recoveries: run.recoveries,
      last_seq: run.lastSeq,
      input: encodeCompact(run.input, `input of run ${run.runId}`),
      priority: run.priority ?? 0,
      concurrency_key: run.concurrencyKey ?? null,
    },
    ev: encodeEvents(events),
  };
}

/**
 * The write a commit batch makes. Its events are checked to be dense here; the server checks the
 * first continues the run's last seq.
 * @throws what `checkBatch`, `checkEvents` and the codec throw.
 */
export function commitItem(batch: CommitBatch): WriteItem {
  checkBatch(KIND, batch);
  const events = batch.events ?? [];
  if (events.length > 0) checkEvents(KIND, batch.runId, events[0]!.seq - 1, events);
  const item: Record<string, unknown> = { t: 'm', id: batch.runId, tok: batch.leaseToken, ev: encodeEvents(events) };
  if (batch.run !== undefined) {
    const patch = batch.run;
    const columns: Record<string, unknown> = {};
    for (const key of patchedKeys(patch)) columns[PATCH_COLUMNS[key]] = patchColumnValue(key, patch[key], (on) => on);
    item.p = columns;
    // A run that waits, or ends, releases its lease in the same update.
    if (releases(patch.status)) item.rel = 1;
  }
  if (batch.steps !== undefined && batch.steps.length > 0) {
    item.st = batch.steps.map((s) => [s.step, encodeCompact(s, `step ${batch.runId}/${s.step}`)]);
    const drop = batch.steps.filter((s) => !s.hasOutput).map((s) => s.step);
    if (drop.length > 0) item.drop = drop;
  }
  if (batch.outputs !== undefined && batch.outputs.length > 0) {
    item.out = batch.outputs.map((o) => [o.step, encodeCompact(o.value, `output of ${batch.runId}/${o.step}`)]);
  }
  return item as unknown as WriteItem;
}
