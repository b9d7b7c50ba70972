/** What every run store shares: its errors, the cursor, batch checks and the run-record patch. @internal */
import { ErrorCode, FlowError, RetryableError } from '../../errors/errors.js';
import type { WeirEvent } from '../../model/events.js';
import { FlowStatus } from '../../model/status.js';
import { messageOf } from '../../util/message-of.js';
import type { Mutable } from '../../util/types.js';
import { decodeCompact, encodeCompact } from '../codec.js';
import type { ErrorData } from '../../errors/error-data.js';
import type { AcquireOptions, CommitBatch, InputEntry, ListRunsQuery, NewRunRecord, RunOwner, RunPage, RunPatch, RunRecord, RunStoreKind } from './run-store.js';

/** Which kind of record an error is about. */
export type RecordKind = 'run' | 'step' | 'output' | 'event' | 'input';

/** The statuses a run can be pruned in. */
export const FINISHED: ReadonlySet<FlowStatus> = new Set<FlowStatus>(['completed', 'failed', 'cancelled']);

/** The outcomes an input entry may have. */
export const INPUT_OUTCOMES: ReadonlySet<unknown> = new Set<InputEntry['outcome']>(['answered', 'expired', 'refused']);

/** @default 100 */
export const DEFAULT_LIMIT = 100;


/** Whether a decoded value is an object to read record fields from. */
export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}

/** `WEIR_STORE_CLOSED`. */
export function closedError(kind: RunStoreKind, what: string): FlowError {
  return new FlowError(`run store (${kind}): cannot ${what}: the store is closed`, { code: ErrorCode.STORE_CLOSED });
}

/** A backend failure as a retryable `WEIR_STORE`; FlowErrors pass as they are. */
export function wrapError(kind: RunStoreKind, what: string, error: unknown): FlowError {
  if (error instanceof FlowError) return error;
  const code = (error as { code?: unknown } | null)?.code;
  const detail = typeof code === 'string' && !messageOf(error).includes(code) ? ` (${code})` : '';
  return new RetryableError(`run store (${kind}): ${what}: ${messageOf(error)}${detail}`, { code: ErrorCode.STORE, cause: error });
}

/** `WEIR_CORRUPT_RECORD` naming the kind of record and its key. */
export function corruptError(kind: RunStoreKind, record: RecordKind, key: string, cause?: unknown): FlowError {
  const why = cause === undefined ? 'it is not a valid record' : messageOf(cause);
  return new FlowError(`run store (${kind}): ${record} record ${JSON.stringify(key)} is corrupt and cannot be read: ${why}`, {
    code: ErrorCode.CORRUPT_RECORD,
    cause,
  });
}

/** `WEIR_RUN_CONFLICT`. */
export function conflictError(kind: RunStoreKind, runId: string): FlowError {
  return new FlowError(`run store (${kind}): run ${JSON.stringify(runId)} already exists`, { code: ErrorCode.RUN_CONFLICT });
}

/** `WEIR_RUN_NOT_FOUND`. */
export function notFoundError(kind: RunStoreKind, runId: string): FlowError {
  return new FlowError(`run store (${kind}): run ${JSON.stringify(runId)} does not exist`, { code: ErrorCode.RUN_NOT_FOUND });
}

/** `WEIR_LEASE_LOST`: the batch's token is not the stored one. */
export function leaseLostError(kind: RunStoreKind, runId: string, stored: number, given: number): FlowError {
  const why = stored > given ? 'another owner took the run over' : 'no lease with that token was ever given';
  return new FlowError(
    `run store (${kind}): commit to run ${JSON.stringify(runId)} refused: it carries lease token ${given}, the run's is ${stored} (${why})`,
    { code: ErrorCode.LEASE_LOST },
  );
}

/** Checks that events are the run's and continue `lastSeq` densely; returns the new `lastSeq`. */
export function checkEvents(kind: RunStoreKind, runId: string, lastSeq: number, events: readonly WeirEvent[] | undefined): number {
  if (events === undefined) return lastSeq;
  let expected = lastSeq + 1;
  for (const event of events) {
    if (event.seq !== expected || event.runId !== runId) {
      const what =
        event.runId !== runId
          ? `an event of run ${JSON.stringify(event.runId)}`
          : event.seq < expected
            ? `a duplicate seq ${event.seq}`
            : `a gap: seq ${event.seq} where ${expected} was expected`;
      throw new FlowError(`run store (${kind}): events of run ${JSON.stringify(runId)} refused: ${what} (the stored lastSeq is ${lastSeq})`, {
        code: ErrorCode.EVENT_SEQ,
      });
    }
    expected += 1;
  }
  return expected - 1;
}

/** Checks the shape of a batch that needs no stored state: each output has its step record, steps are the run's. */
export function checkBatch(kind: RunStoreKind, batch: CommitBatch): void {
  const { steps, outputs, runId } = batch;
  if (steps !== undefined) {
    for (const step of steps) {
      if (step.runId !== runId) {
        throw new FlowError(`run store (${kind}): commit to run ${JSON.stringify(runId)} holds a step record of run ${JSON.stringify(step.runId)}`, {
          code: ErrorCode.INVALID_OPTIONS,
        });
      }
    }
  }
  if (outputs === undefined || outputs.length === 0) return;
  // Plain loops for the usual small batch (this runs on every commit with an output); a set for a large one.
  const withOutput = steps !== undefined && steps.length > 8 ? new Set(steps.filter((s) => s.hasOutput).map((s) => s.step)) : undefined;
  for (const output of outputs) {
    let found = withOutput?.has(output.step) ?? false;
    for (let i = 0; withOutput === undefined && steps !== undefined && i < steps.length && !found; i++) found = steps[i]!.step === output.step && steps[i]!.hasOutput;
    if (!found) {
      throw new FlowError(
        `run store (${kind}): commit to run ${JSON.stringify(runId)}: the output of step ${JSON.stringify(output.step)} needs its step record, with hasOutput: true, in the same batch`,
        { code: ErrorCode.INVALID_OPTIONS },
      );
    }
  }
}

/**
 * The record a store keeps for a new run: `record` with its counters filled in (token 1 and no
 * recoveries unless given, `lastSeq` of its first events). Built by assigning onto a literal: on
 * Node 20 a spread that adds new keys (`{ ...record, lastSeq }`) takes V8's slow path, several
 * microseconds and most of a kilobyte a run.
 */
export function newRunRecord(record: NewRunRecord, lastSeq: number): RunRecord {
  const stored: Mutable<RunRecord> = Object.assign({ leaseToken: 1, recoveries: 0, lastSeq: 0 }, record);
  stored.leaseToken ??= 1;
  stored.recoveries ??= 0;
  stored.lastSeq = lastSeq;
  return stored;
}

/** Run fields every record has: a patch giving them as `undefined` keeps them. */
const KEPT: ReadonlySet<string> = new Set(['status', 'updatedAt', 'humanInLoop']);

/** Whether a commit to `status` releases the run's lease: a run that waits, or has ended, is held by nobody. */
export function releases(status: FlowStatus | undefined): boolean {
  return status === FlowStatus.WAITING || (status !== undefined && FINISHED.has(status));
}

/** Clears a run's lease (owner and expiry), keeping its token: what a commit to status `waiting` or an end does. */
export function releaseIn(run: Record<string, unknown>): void {
  delete run.owner;
  run.leaseExpiresAt = 0;
}

/**
 * Writes a run patch into a record in place (see `RunPatch` for what `undefined` means). A named
 * store per field, not a store by a computed key: every record then goes through the same shapes,
 * and a commit that ends a run costs a few plain property writes. A field added to `RunPatch` must
 * be added here too (as to `PATCH_COLUMNS`, whose type does require it).
 */
export function assignPatch(run: Mutable<RunRecord>, patch: RunPatch): void {
  if (patch.status !== undefined) run.status = patch.status;
  if (patch.updatedAt !== undefined) run.updatedAt = patch.updatedAt;
  if (patch.humanInLoop !== undefined) run.humanInLoop = patch.humanInLoop;
  if (patch.endedAt !== undefined) run.endedAt = patch.endedAt;
  else if ('endedAt' in patch) delete run.endedAt;
  if (patch.error !== undefined) run.error = patch.error;
  else if ('error' in patch) delete run.error;
  if (patch.output !== undefined) run.output = patch.output;
  else if ('output' in patch) delete run.output;
  if (patch.retriedBy !== undefined) run.retriedBy = patch.retriedBy;
  else if ('retriedBy' in patch) delete run.retriedBy;
  if (patch.ranBy !== undefined) run.ranBy = patch.ranBy;
  else if ('ranBy' in patch) delete run.ranBy;
}

/** Applies a run patch and a new `lastSeq` to a record; status `waiting` releases the lease. */
export function patchRun(run: RunRecord, patch: RunPatch | undefined, lastSeq: number): RunRecord {
  const next: Mutable<RunRecord> = { ...run, lastSeq };
  if (patch !== undefined) {
    assignPatch(next, patch);
    if (releases(patch.status)) releaseIn(next);
  }
  return next;
}

/** A `listRuns` cursor: the last run's `createdAt` and `runId`. */
export function encodeCursor(run: Pick<RunRecord, 'createdAt' | 'runId'>): string {
  return `${run.createdAt}:${run.runId}`;
}

/** Reads a cursor from `encodeCursor`. @throws `WEIR_INVALID_OPTIONS` for anything else. */
export function decodeCursor(kind: RunStoreKind, cursor: string): { createdAt: number; runId: string } {
  const colon = cursor.indexOf(':');
  const createdAt = Number(cursor.slice(0, colon));
  if (colon <= 0 || !Number.isFinite(createdAt)) {
    throw new FlowError(`run store (${kind}): listRuns: before must be a cursor from a previous page, got ${JSON.stringify(cursor)}`, {
      code: ErrorCode.INVALID_OPTIONS,
    });
  }
  return { createdAt, runId: cursor.slice(colon + 1) };
}

/** Normalises a query's limit. */
export function limitOf(query: ListRunsQuery): number {
  const limit = query.limit ?? DEFAULT_LIMIT;
  return Number.isFinite(limit) && limit > 0 ? Math.floor(limit) : DEFAULT_LIMIT;
}

/** Newest first by `createdAt`, then `runId`. */
export function compareRuns(a: Pick<RunRecord, 'createdAt' | 'runId'>, b: Pick<RunRecord, 'createdAt' | 'runId'>): number {
  if (a.createdAt !== b.createdAt) return b.createdAt - a.createdAt;
  return a.runId < b.runId ? 1 : a.runId > b.runId ? -1 : 0;
}

/** Filters, sorts and pages runs in memory: for stores without queries. */
export function pageRuns<R extends Omit<RunRecord, 'input'>>(kind: RunStoreKind, all: Iterable<R>, query: ListRunsQuery): { runs: R[]; next?: string } {
  const statuses = query.status === undefined ? undefined : new Set<string>(typeof query.status === 'string' ? [query.status] : query.status);
  const cursor = query.before === undefined ? undefined : decodeCursor(kind, query.before);
  const limit = limitOf(query);
  const selected: R[] = [];
  for (const run of all) {
    if (statuses !== undefined && !statuses.has(run.status)) continue;
    if (query.flow !== undefined && run.flow !== query.flow) continue;
    if (query.stale === true && !(run.status === 'running' && run.leaseExpiresAt < query.now)) continue;
    if (cursor !== undefined && !(run.createdAt < cursor.createdAt || (run.createdAt === cursor.createdAt && run.runId < cursor.runId))) continue;
    selected.push(run);
  }
  selected.sort(compareRuns);
  const runs = selected.slice(0, limit);
  const last = runs[runs.length - 1];
  return selected.length > limit && last !== undefined ? { runs, next: encodeCursor(last) } : { runs };
}

/** Whether `owner` may take a lease held as stored. */
export function mayAcquire(run: Pick<RunRecord, 'owner' | 'leaseExpiresAt' | 'leaseToken'>, processId: string, now: number, options?: AcquireOptions): boolean {
  const free = run.owner === undefined || run.leaseExpiresAt < now;
  if (options?.ifToken !== undefined) return free && run.leaseToken === options.ifToken;
  return free || run.owner.processId === processId || run.leaseToken === options?.fromToken;
}

/** Whether taking the lease raises its token: a takeover, a compare-and-set take, or a new owner. */
export function raisesToken(run: Pick<RunRecord, 'owner'>, processId: string, options?: AcquireOptions): boolean {
  return options?.takeover === true || options?.ifToken !== undefined || run.owner?.processId !== processId;
}

/** Decodes a value a SQL store keeps as text. @throws `WEIR_CORRUPT_RECORD` naming the record when it cannot be read. */
export function decodeStored(kind: RunStoreKind, record: RecordKind, key: string, text: string): unknown {
  try {
    return decodeCompact(text, key);
  } catch (error) {
    throw corruptError(kind, record, key, error instanceof FlowError && error.cause !== undefined ? error.cause : error);
  }
}

/** Parses a JSON column of a record. @throws `WEIR_CORRUPT_RECORD` when it is not JSON or `valid` refuses it. */
export function parseStoredJson<T>(kind: RunStoreKind, record: RecordKind, key: string, text: string | null, valid: (value: Record<string, unknown>) => boolean): T {
  let value: unknown;
  try {
    value = JSON.parse(text ?? 'null');
  } catch (error) {
    throw corruptError(kind, record, key, error);
  }
  if (!isObject(value) || !valid(value)) throw corruptError(kind, record, key);
  return value as T;
}

/**
 * A page of runs from rows read one more than `limit` (so the page knows it has a next): runs whose
 * row cannot be read are left out and named in `corrupt` (loadRun says why); the others stay listable.
 */
export function pageOfRows<R extends { run_id: string; created_at: number }>(rows: readonly R[], limit: number, toRun: (row: R) => RunRecord): RunPage {
  const runs: RunRecord[] = [];
  const corrupt: string[] = [];
  for (const row of rows.slice(0, limit)) {
    try {
      runs.push(toRun(row));
    } catch {
      corrupt.push(row.run_id);
    }
  }
  const last = rows[Math.min(limit, rows.length) - 1];
  const page: { runs: RunRecord[]; next?: string; corrupt?: string[] } = { runs };
  if (rows.length > limit && last !== undefined) page.next = encodeCursor({ createdAt: last.created_at, runId: last.run_id });
  if (corrupt.length > 0) page.corrupt = corrupt;
  return page;
}

/** The patchable run fields and their columns in the SQL stores. */
export const PATCH_COLUMNS: Readonly<Record<keyof RunPatch, string>> = {
  status: 'status',
  updatedAt: 'updated_at',
  humanInLoop: 'human_in_loop',
  endedAt: 'ended_at',
  error: 'error',
  output: 'output',
  retriedBy: 'retried_by',
  ranBy: 'ran_by',
};

const PATCH_KEYS = Object.keys(PATCH_COLUMNS) as (keyof RunPatch)[];

/**
 * The fields a patch writes to its columns: those a SQL store keeps, but a required field given as
 * `undefined` (which keeps it). Always in `PATCH_COLUMNS` order, so the same fields give the same list.
 */
export function patchedKeys(patch: RunPatch): (keyof RunPatch)[] {
  const keys: (keyof RunPatch)[] = [];
  for (const key of PATCH_KEYS) if (Object.hasOwn(patch, key) && !(patch[key] === undefined && KEPT.has(key))) keys.push(key);
  return keys;
}

/**
 * A run patch's value as a SQL store's column holds it: `null` to clear, the error as JSON, the
 * output encoded; `humanInLoop` as the store's `inLoop` gives it.
 * @throws `WEIR_SERIALIZATION` for an output that cannot be stored.
 */
export function patchColumnValue(key: keyof RunPatch, value: unknown, inLoop: (on: boolean) => unknown): unknown {
  if (value === undefined) return null;
  if (key === 'humanInLoop') return inLoop(value === true);
  if (key === 'error') return JSON.stringify(value);
  if (key === 'output') return encodeCompact(value, 'run output');
  return value;
}

/**
 * The columns of a run row that the SQL stores (SQLite, Postgres) keep alike. How a row says a
 * person is in the loop, and where its last seq comes from, differ: the caller reads those.
 */
export interface SqlRunRow {
  run_id: string;
  flow: string;
  fingerprint: string;
  /** `null` (SQLite) or `''` (Postgres) for none. */
  version: string | null;
  mode: string;
  status: string;
  created_at: number;
  updated_at: number;
  ended_at: number | null;
  error: string | null;
  output: string | null;
  retry_of: string | null;
  retried_by: string | null;
  ran_by: string | null;
  owner: string | null;
  lease_token: number;
  lease_expires_at: number;
  recoveries: number;
  input: string;
  priority: number;
  concurrency_key: string | null;
}

/** The record a SQL store's run row holds. @throws `WEIR_CORRUPT_RECORD` when a column cannot be read. */
export function runOfRow(kind: RunStoreKind, row: SqlRunRow, humanInLoop: boolean, lastSeq: number): RunRecord {
  const key = row.run_id;
  const run: Record<string, unknown> = {
    runId: row.run_id,
    flow: row.flow,
    fingerprint: row.fingerprint,
    input: decodeStored(kind, 'run', key, row.input),
    mode: row.mode,
    humanInLoop,
    status: row.status,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    leaseToken: row.lease_token,
    leaseExpiresAt: row.lease_expires_at,
    recoveries: row.recoveries,
    lastSeq,
  };
  if (row.version !== null && row.version !== '') run.version = row.version;
  if (row.ended_at !== null) run.endedAt = row.ended_at;
  if (row.error !== null) run.error = parseStoredJson<ErrorData>(kind, 'run', key, row.error, (v) => typeof v.message === 'string');
  if (row.output !== null) run.output = decodeStored(kind, 'run', key, row.output);
  if (row.retry_of !== null) run.retryOf = row.retry_of;
  if (row.retried_by !== null) run.retriedBy = row.retried_by;
  if (row.ran_by !== null) run.ranBy = row.ran_by;
  if (row.owner !== null) run.owner = parseStoredJson<RunOwner>(kind, 'run', key, row.owner, (v) => typeof v.processId === 'string');
  if (row.priority !== 0) run.priority = row.priority;
  if (row.concurrency_key !== null) run.concurrencyKey = row.concurrency_key;
  return run as unknown as RunRecord;
}
