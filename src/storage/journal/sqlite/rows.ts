/**
 * Rows of the SQLite journal and the records they hold: a `weir_runs` row to and from a
 * `RunRecord`, a run patch as columns and values, events as insert parameters with the step records
 * that ride on the last one, and a commit batch encoded before its transaction.
 * @internal
 */
import type { WeirEvent } from '../../../model/events.js';
import { encodeCompact, plainJsonText } from '../../codec.js';
import type { CommitBatch, InputEntry, RunRecord, StepRecord } from '../run-store.js';
import { checkBatch, corruptError, decodeStored, isObject, patchColumnValue, patchedKeys, runOfRow, type RecordKind, releases, type SqlRunRow } from '../store-support.js';

const KIND = 'sqlite';

/** A `weir_runs` row as read, with `cur_seq` (see `CURRENT_SEQ`). */
export interface RunRow extends SqlRunRow {
  human_in_loop: number;
  owner_id: string | null;
  /** Written by `createRun` and never since: the run's last seq is its last event's, read as `cur_seq`. */
  last_seq: number;
  cur_seq: number;
}

/** Decodes a stored value. @throws `WEIR_CORRUPT_RECORD` naming the record when it cannot be read. */
export function decodeText(record: RecordKind, key: string, text: string): unknown {
  return decodeStored(KIND, record, key, text);
}

/** The record a run row holds. @throws `WEIR_CORRUPT_RECORD` when a column cannot be read. */
export function toRun(row: RunRow): RunRecord {
  return runOfRow(KIND, row, row.human_in_loop === 1, row.cur_seq);
}

/** The parameters of `insertRun`, in its column order. */
export function runRowParams(run: RunRecord): unknown[] {
  const input = encodeCompact(run.input, `input of run ${run.runId}`);
  const output = 'output' in run ? encodeCompact(run.output, `output of run ${run.runId}`) : null;
  return [
    run.runId,
    run.flow,
    run.fingerprint,
    run.mode,
    run.humanInLoop ? 1 : 0,
    run.status,
    run.createdAt,
    run.updatedAt,
    run.endedAt ?? null,
    run.error === undefined ? null : JSON.stringify(run.error),
    output,
    run.retryOf ?? null,
    run.retriedBy ?? null,
    run.ranBy ?? null,
    run.owner?.processId ?? null,
    run.owner === undefined ? null : JSON.stringify(run.owner),
    run.leaseToken,
    run.leaseExpiresAt,
    run.recoveries,
    run.lastSeq,
    input,
    run.version ?? null,
    run.priority ?? 0,
    run.concurrencyKey ?? null,
  ];
}

/** Marks a patch key whose update also releases the lease (status `waiting`, or an end). */
export const RELEASE_KEY = ';release';

/** Booleans as SQLite keeps them. */
const inLoop = (on: boolean): number => (on ? 1 : 0);

/**
 * The events of one write as the parameters of one `weir_events` row (run id, seq, first seq, data,
 * records), or `undefined` for a write without events. The row's `seq` is the last event's,
 * `first_seq` the first's when it holds more than one (then `data` is their array, else null), and
 * `records` rides on it. One row per commit: fewer cells and pages per commit than a row per event.
 */
export type EncodedEvents = unknown[] | undefined;

/** `records`, when given, rides on the row. */
export function encodeEvents(runId: string, events: readonly WeirEvent[] | undefined, records: string | null): EncodedEvents {
  if (events === undefined || events.length === 0) return undefined;
  const last = events[events.length - 1]!;
  if (events.length === 1) return [runId, last.seq, null, plainJsonText(last) ?? encodeCompact(last, `event ${last.seq}`), records];
  return [runId, last.seq, events[0]!.seq, plainJsonText(events) ?? encodeEach(events), records];
}

/** Events that are not all plain JSON: each encoded, so an error names the event. */
function encodeEach(events: readonly WeirEvent[]): string {
  const last = events[events.length - 1]!;
  const texts: string[] = new Array(events.length);
  let plain = true;
  for (let i = 0; i < events.length; i++) {
    const e = events[i]!;
    texts[i] = encodeCompact(e, `event ${e.seq}`);
    if (texts[i]!.startsWith('~')) plain = false;
  }
  // Plain JSON texts make a JSON array as they are; an event that needs superjson takes the whole array with it.
  return plain ? `[${texts.join(',')}]` : encodeCompact(events, `events ${events[0]!.seq} to ${last.seq}`);
}

/** A `weir_events` row as `readEvents` selects it. */
export interface EventRow {
  readonly seq: number;
  readonly first_seq: number | null;
  readonly data: string;
}

/**
 * The events of a row, in order: one, or `first_seq` to `seq`.
 * @throws `WEIR_CORRUPT_RECORD` when its data cannot be read or does not hold exactly those events.
 */
export function decodeEventRow(runId: string, row: EventRow): WeirEvent[] {
  const first = row.first_seq ?? row.seq;
  const key = first === row.seq ? `${runId}#${row.seq}` : `${runId}#${first}-${row.seq}`;
  const value = decodeText('event', key, row.data);
  const events = row.first_seq === null ? [value] : value;
  const valid = Array.isArray(events) && events.length === row.seq - first + 1 && events.every((e, i) => isObject(e) && e.seq === first + i);
  if (!valid) throw corruptError(KIND, 'event', key);
  return events as WeirEvent[];
}

/** What rides on a batch's last event: its step records, and its outputs still encoded (so `undefined` stays a value). */
export interface CarriedRecords {
  readonly s: readonly StepRecord[];
  readonly o: readonly (readonly [step: string, value: string])[];
}

/** Reads the records the event at `seq` carries. @throws `WEIR_CORRUPT_RECORD` when they cannot be read. */
export function decodeCarried(runId: string, seq: number, text: string): CarriedRecords {
  const key = `${runId}#${seq} records`;
  const value = decodeText('step', key, text);
  const valid =
    isObject(value) &&
    Array.isArray(value.s) &&
    Array.isArray(value.o) &&
    value.s.every((r) => isObject(r) && typeof r.step === 'string') &&
    value.o.every((o) => Array.isArray(o) && o.length === 2 && typeof o[0] === 'string' && typeof o[1] === 'string');
  if (!valid) throw corruptError(KIND, 'step', key);
  return value as unknown as CarriedRecords;
}

/** A commit with its values already serialised, so nothing can fail to serialise inside the transaction. */
export interface EncodedCommit {
  readonly type: 'commit';
  readonly batch: CommitBatch;
  /** The patched columns' keys, in `patchedKeys` order, with `RELEASE_KEY` when the update releases the lease; empty for no patch. */
  readonly patchKey: string;
  /** The patch statement's parameters: the columns' values, then the run id and lease token of its `WHERE`. */
  readonly patchParams: unknown[];
  /** For a batch without events only: its step records (with whether each has an output) and outputs go to their own tables. */
  readonly steps: [step: string, data: string, hasOutput: number][];
  readonly outputs: [step: string, value: string][];
  /** With the batch's step records and outputs on the last event's `records` column. */
  readonly events: EncodedEvents;
}

export interface EncodedCreate {
  readonly type: 'create';
  readonly record: RunRecord;
  readonly row: unknown[];
  readonly events: EncodedEvents;
}

/** An input entry with its value already serialised; `value` is null when the entry has none. */
export interface EncodedInput {
  readonly type: 'input';
  readonly runId: string;
  readonly key: string;
  readonly outcome: InputEntry['outcome'];
  readonly value: string | null;
  readonly at: number;
}

/** Input entries to delete. */
export interface ClearInputs {
  readonly type: 'clear-inputs';
  readonly runId: string;
  readonly keys: readonly string[];
}

/** A write the queue holds. */
export type Work = EncodedCommit | EncodedCreate | EncodedInput | ClearInputs;

/** What a refused write reports, for a failure of SQLite itself. */
export function failureOf(work: Work): string {
  if (work.type === 'input') return `could not store input ${JSON.stringify(work.key)} of run ${JSON.stringify(work.runId)}`;
  return work.type === 'clear-inputs' ? `could not clear inputs of run ${JSON.stringify(work.runId)}` : 'commit failed';
}

/** The run a write is for: the writer the write queue gathers by. */
export function writerOf(work: Work): string {
  return work.type === 'commit' ? work.batch.runId : work.type === 'create' ? work.record.runId : work.runId;
}

/** Checks a batch's shape and serialises everything it writes. @throws what `checkBatch` and the codec throw. */
export function encodeCommit(batch: CommitBatch): EncodedCommit {
  checkBatch(KIND, batch);
  let patchKey = '';
  const patchParams: unknown[] = [];
  if (batch.run !== undefined) {
    const patch = batch.run;
    const keys = patchedKeys(patch);
    patchKey = keys.join(',');
    for (const key of keys) patchParams.push(patchColumnValue(key, batch.run[key], inLoop));
    patchParams.push(batch.runId, batch.leaseToken);
    // A run that waits, or ends, releases its lease in the same update.
    if (releases(patch.status)) patchKey += RELEASE_KEY;
  }
  const outputs: [string, string][] = [];
  if (batch.outputs !== undefined) {
    for (const output of batch.outputs) outputs.push([output.step, encodeCompact(output.value, `output of ${batch.runId}/${output.step}`)]);
  }
  const hasRecords = (batch.steps !== undefined && batch.steps.length > 0) || outputs.length > 0;
  if (batch.events !== undefined && batch.events.length > 0) {
    // The usual batch: its records ride on its last event, so the commit writes one table.
    const carried: CarriedRecords = { s: batch.steps ?? [], o: outputs };
    const records = hasRecords ? encodeCompact(carried, `step records of ${batch.runId}`) : null;
    return { type: 'commit', batch, patchKey, patchParams, steps: [], outputs: [], events: encodeEvents(batch.runId, batch.events, records) };
  }
  const steps: [string, string, number][] = [];
  if (batch.steps !== undefined) for (const step of batch.steps) steps.push([step.step, encodeCompact(step, `step ${batch.runId}/${step.step}`), step.hasOutput ? 1 : 0]);
  return { type: 'commit', batch, patchKey, patchParams, steps, outputs, events: undefined };
}
