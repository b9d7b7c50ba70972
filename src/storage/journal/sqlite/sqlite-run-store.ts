/**
 * The run journal in one SQLite file through better-sqlite3: WAL mode, prepared statements, and
 * group commit (the commits of one tick, or of the rest of a busy event-loop turn, in one transaction).
 * @internal
 */
import { once } from 'node:events';
import { mkdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
// Captured from the module, not the global, so fake timers in tests never hold back a commit.
import { setImmediate } from 'node:timers';
import { Worker } from 'node:worker_threads';
import type BetterSqlite3 from 'better-sqlite3';
import type { ErrorData } from '../../../errors/error-data.js';
import { FlowError } from '../../../errors/errors.js';
import type { WeirEvent } from '../../../model/events.js';
import { decodeCompact, encodeCompact } from '../../codec.js';
import type {
  AcquireOptions,
  CommitBatch,
  InputEntry,
  LeaseEntry,
  ListRunsQuery,
  LoadedRun,
  NewRunRecord,
  PruneOptions,
  RenewResult,
  RunOwner,
  RunPage,
  RunPatch,
  RunRecord,
  RunStore,
  StepRecord,
  StoredOutput,
} from '../run-store.js';
import {
  KEPT,
  checkBatch,
  checkEvents,
  closedError,
  conflictError,
  corruptError,
  decodeCursor,
  encodeCursor,
  FINISHED,
  leaseLostError,
  limitOf,
  notFoundError,
  type RecordKind,
  releases,
  wrapError,
  isObject,
} from '../store-support.js';

type Database = BetterSqlite3.Database;
type Statement = BetterSqlite3.Statement;

/** Options of a SQLite run store. */
export interface SqliteRunStoreOptions {
  /** `NORMAL` survives a process crash; `FULL` a power loss too. @default 'NORMAL' */
  readonly synchronous?: 'NORMAL' | 'FULL';
  /** How long to wait for another connection's lock, in milliseconds. @default 5000 */
  readonly busyTimeout?: number;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS weir_runs (
  run_id TEXT PRIMARY KEY NOT NULL,
  flow TEXT NOT NULL,
  fingerprint TEXT NOT NULL,
  mode TEXT NOT NULL,
  human_in_loop INTEGER NOT NULL,
  status TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  ended_at INTEGER,
  error TEXT,
  output TEXT,
  retry_of TEXT,
  retried_by TEXT,
  ran_by TEXT,
  owner_id TEXT,
  owner TEXT,
  lease_token INTEGER NOT NULL,
  lease_expires_at INTEGER NOT NULL,
  recoveries INTEGER NOT NULL,
  last_seq INTEGER NOT NULL,
  input TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS weir_runs_by_status ON weir_runs (status, created_at, run_id);
CREATE INDEX IF NOT EXISTS weir_runs_by_flow ON weir_runs (flow, created_at, run_id);
CREATE INDEX IF NOT EXISTS weir_runs_by_created ON weir_runs (created_at, run_id);
CREATE INDEX IF NOT EXISTS weir_runs_by_lease ON weir_runs (status, lease_expires_at);
CREATE TABLE IF NOT EXISTS weir_steps (
  run_id TEXT NOT NULL,
  step TEXT NOT NULL,
  data TEXT NOT NULL,
  seq INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (run_id, step)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS weir_outputs (
  run_id TEXT NOT NULL,
  step TEXT NOT NULL,
  value TEXT NOT NULL,
  seq INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (run_id, step)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS weir_events (
  run_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  data TEXT NOT NULL,
  records TEXT,
  PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS weir_inputs (
  run_id TEXT NOT NULL,
  key TEXT NOT NULL,
  outcome TEXT NOT NULL,
  value TEXT,
  at INTEGER NOT NULL,
  PRIMARY KEY (run_id, key)
);
`;

/** Columns added since the first schema: files made before them get them on open. */
const ADDED_COLUMNS: readonly (readonly [table: string, column: string, declaration: string])[] = [
  ['weir_events', 'records', 'records TEXT'],
  ['weir_steps', 'seq', 'seq INTEGER NOT NULL DEFAULT 0'],
  ['weir_outputs', 'seq', 'seq INTEGER NOT NULL DEFAULT 0'],
  ['weir_runs', 'ran_by', 'ran_by TEXT'],
];

function addMissingColumns(db: Database): void {
  const missing = () => ADDED_COLUMNS.filter(([table, column]) => !(db.pragma(`table_info(${table})`) as { name: string }[]).some((c) => c.name === column));
  if (missing().length === 0) return;
  // Checked again in a write transaction, so two processes opening an old file at once do not both add a column.
  db.transaction(() => {
    for (const [table, , declaration] of missing()) db.exec(`ALTER TABLE ${table} ADD COLUMN ${declaration}`);
  }).immediate();
}

interface RunRow {
  run_id: string;
  flow: string;
  fingerprint: string;
  mode: string;
  human_in_loop: number;
  status: string;
  created_at: number;
  updated_at: number;
  ended_at: number | null;
  error: string | null;
  output: string | null;
  retry_of: string | null;
  retried_by: string | null;
  ran_by: string | null;
  owner_id: string | null;
  owner: string | null;
  lease_token: number;
  lease_expires_at: number;
  recoveries: number;
  /** Written by `createRun` and never since: the run's last seq is its last event's, read as `cur_seq`. */
  last_seq: number;
  input: string;
  cur_seq: number;
}

/** Marks a patch key whose update also releases the lease (status `waiting`). */
const RELEASE_KEY = ';release';

/** The patchable run fields and their columns. */
const PATCH_COLUMNS: Readonly<Record<keyof RunPatch, string>> = {
  status: 'status',
  updatedAt: 'updated_at',
  humanInLoop: 'human_in_loop',
  endedAt: 'ended_at',
  error: 'error',
  output: 'output',
  retriedBy: 'retried_by',
  ranBy: 'ran_by',
};

/** A commit with its values already serialised, so nothing can fail to serialise inside the transaction. */
interface EncodedCommit {
  readonly type: 'commit';
  readonly batch: CommitBatch;
  readonly patchKey: string;
  readonly patchValues: unknown[];
  /** For a batch without events only: its step records and outputs go to their own tables. */
  readonly steps: [string, string, number][];
  readonly outputs: [string, string][];
  /** With the batch's step records and outputs on the last event's `records` column. */
  readonly events: EncodedEvents;
}

interface EncodedCreate {
  readonly type: 'create';
  readonly record: RunRecord;
  readonly row: unknown[];
  readonly events: EncodedEvents;
}

/** Events as the flat parameters of multi-row inserts: run id, seq, data, records for each. */
interface EncodedEvents {
  readonly count: number;
  readonly params: unknown[];
}

/** An input entry with its value already serialised; `value` is null when the entry has none. */
interface EncodedInput {
  readonly type: 'input';
  readonly runId: string;
  readonly key: string;
  readonly outcome: InputEntry['outcome'];
  readonly value: string | null;
  readonly at: number;
}

/** Input entries to delete. */
interface ClearInputs {
  readonly type: 'clear-inputs';
  readonly runId: string;
  readonly keys: readonly string[];
}

/** What the write queue holds. */
type Work = EncodedCommit | EncodedCreate | EncodedInput | ClearInputs;

/** What a refused write reports, for a failure of SQLite itself. */
function failureOf(work: Work): string {
  if (work.type === 'input') return `could not store input ${JSON.stringify(work.key)} of run ${JSON.stringify(work.runId)}`;
  return work.type === 'clear-inputs' ? `could not clear inputs of run ${JSON.stringify(work.runId)}` : 'commit failed';
}

/** The outcomes an input entry may have. */
const OUTCOMES: ReadonlySet<unknown> = new Set<InputEntry['outcome']>(['answered', 'expired', 'refused']);

interface Head {
  lease_token: number;
  last_seq: number;
}

/** What rides on a batch's last event: its step records, and its outputs still encoded (so `undefined` stays a value). */
interface CarriedRecords {
  readonly s: readonly StepRecord[];
  readonly o: readonly (readonly [step: string, value: string])[];
}

/** A run's step records folded in write order, and its outputs still encoded. */
interface Fold {
  readonly lastSeq: number;
  readonly steps: Map<string, StepRecord>;
  readonly outputs: Map<string, string>;
}

/** The rows a fold reads. */
interface FoldRows {
  readonly records: { seq: number; records: string }[];
  readonly steps: { step: string; data: string; seq: number }[];
  readonly outputs: { step: string; value: string; seq: number }[];
}

interface Pending {
  readonly work: Work;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: unknown) => void;
}

function patchValue(key: keyof RunPatch, value: unknown): unknown {
  if (value === undefined) return null;
  if (key === 'humanInLoop') return value === true ? 1 : 0;
  if (key === 'error') return JSON.stringify(value);
  if (key === 'output') return encodeCompact(value, 'run output');
  return value;
}

const RESOLVED = Promise.resolve();
const NO_EVENTS: EncodedEvents = { count: 0, params: [] };

/** `records`, when given, rides on the last event. */
function encodeEvents(runId: string, events: readonly WeirEvent[] | undefined, records: string | null): EncodedEvents {
  if (events === undefined || events.length === 0) return NO_EVENTS;
  const params: unknown[] = new Array(events.length * 4);
  for (let i = 0; i < events.length; i++) {
    const e = events[i]!;
    params[4 * i] = runId;
    params[4 * i + 1] = e.seq;
    params[4 * i + 2] = encodeCompact(e, `event ${e.seq}`);
    params[4 * i + 3] = null;
  }
  params[4 * events.length - 1] = records;
  return { count: events.length, params };
}

/** How many runs' folds a store keeps, for the `getOutput` calls that follow a `loadRun`. */
const FOLDS_KEPT = 16;

/** A `RunStore` in one SQLite file, shared safely by several processes. @internal */
export class SqliteRunStore implements RunStore {
  readonly kind = 'sqlite';
  readonly durable = true;
  readonly file: string;
  readonly #synchronous: 'NORMAL' | 'FULL';
  readonly #busyTimeout: number;
  #db: Database | undefined;
  #opening: Promise<Database> | undefined;
  #statements: ReturnType<typeof prepare> | undefined;
  #groupTx: BetterSqlite3.Transaction<(queue: readonly Pending[], outcomes: unknown[], failed: boolean[]) => void> | undefined;
  #singleTx: BetterSqlite3.Transaction<(work: Work) => unknown> | undefined;
  readonly #patchStatements = new Map<string, Statement>();
  readonly #eventStatements: Statement[] = [];
  readonly #listStatements = new Map<string, Statement>();
  /** Recent folds by run, most recently used last; each valid while its run's last seq is unchanged. */
  readonly #folds = new Map<string, Fold>();
  #queue: Pending[] = [];
  #scheduled = false;
  /** Whether a flush already ran on a microtask in this event-loop turn. */
  #turnFlushed = false;
  readonly #flushNow = (): void => void this.#startFlush();
  readonly #newTurn = (): void => {
    this.#turnFlushed = false;
  };
  #flushing: Promise<void> | undefined;
  #closing: Promise<void> | undefined;
  #checkpointer: Worker | undefined;
  /** A checkpoint was asked for and has not finished; none is asked for again meanwhile. */
  #checkpointing = false;
  #checkpointerFailed = false;
  #sinceCheckpoint = 0;
  /**
   * Whether checkpoints run on their own thread: with NORMAL, only they wait for the disk; with FULL
   * every commit does, and a second thread's fsyncs only queue with them (measured slower).
   */
  readonly #offThreadCheckpoints: boolean;

  constructor(file: string, options: SqliteRunStoreOptions = {}) {
    this.file = file;
    this.#synchronous = options.synchronous ?? 'NORMAL';
    this.#busyTimeout = options.busyTimeout ?? 5000;
    this.#offThreadCheckpoints = this.#synchronous === 'NORMAL' && file !== ':memory:' && file !== '';
  }

  /**
   * The open connection, for the results table that shares the file. Rejects with the driver's own
   * error when the file cannot be opened.
   * @internal
   */
  async database(): Promise<Database> {
    if (this.#closing !== undefined) throw closedError(this.kind, 'open the database');
    return this.#openOnce();
  }

  #openOnce(): Promise<Database> {
    if (this.#db !== undefined) return Promise.resolve(this.#db);
    this.#opening ??= this.#open().then(
      (db) => {
        this.#db = db;
        return db;
      },
      (error: unknown) => {
        this.#opening = undefined;
        throw error;
      },
    );
    return this.#opening;
  }

  async #connect(): Promise<Database> {
    try {
      return this.#db ?? (await this.#openOnce());
    } catch (error) {
      throw wrapError(this.kind, `could not open ${JSON.stringify(this.file)}`, error);
    }
  }

  async #open(): Promise<Database> {
    // Loaded on first use, so users of the other stores never load the native module.
    const { default: Sqlite } = await import('better-sqlite3');
    mkdirSync(dirname(this.file), { recursive: true });
    let db: Database;
    try {
      db = new Sqlite(this.file, { timeout: this.#busyTimeout });
    } catch (error) {
      if (error instanceof Error && statSync(this.file, { throwIfNoEntry: false })?.isDirectory() === true) {
        error.message += '; it is a directory: give the path of a database file (created when missing)';
      }
      throw error;
    }
    try {
      db.pragma('journal_mode = WAL');
      db.pragma(`synchronous = ${this.#synchronous}`);
      // Checkpoints (and, with NORMAL, their fsyncs) every ~40 MB of WAL rather than every 4 MB:
      // group commits of many runs dirty many pages, and frequent checkpoints cost more than the commits.
      db.pragma(`wal_autocheckpoint = ${WAL_AUTOCHECKPOINT_PAGES}`);
      db.exec(SCHEMA);
      addMissingColumns(db);
      this.#statements = prepare(db);
      this.#groupTx = db.transaction((queue: readonly Pending[], outcomes: unknown[], failed: boolean[]) => this.#applyGroup(queue, outcomes, failed));
      this.#singleTx = db.transaction((work: Work) => this.#apply(work));
    } catch (error) {
      db.close();
      throw error;
    }
    return db;
  }

  async open(): Promise<void> {
    await this.#ready('open');
  }

  async createRun(record: NewRunRecord, events: readonly WeirEvent[] = []): Promise<RunRecord> {
    this.#check(`create run ${JSON.stringify(record.runId)}`);
    const lastSeq = checkEvents(this.kind, record.runId, 0, events);
    const stored = { ...record, leaseToken: record.leaseToken ?? 1, recoveries: record.recoveries ?? 0, lastSeq } as RunRecord;
    const input = encodeCompact(record.input, `input of run ${record.runId}`);
    const output = 'output' in record ? encodeCompact(record.output, `output of run ${record.runId}`) : null;
    const row = [
      stored.runId,
      stored.flow,
      stored.fingerprint,
      stored.mode,
      stored.humanInLoop ? 1 : 0,
      stored.status,
      stored.createdAt,
      stored.updatedAt,
      stored.endedAt ?? null,
      stored.error === undefined ? null : JSON.stringify(stored.error),
      output,
      stored.retryOf ?? null,
      stored.retriedBy ?? null,
      stored.ranBy ?? null,
      stored.owner?.processId ?? null,
      stored.owner === undefined ? null : JSON.stringify(stored.owner),
      stored.leaseToken,
      stored.leaseExpiresAt,
      stored.recoveries,
      lastSeq,
      input,
    ];
    await this.#enqueue({ type: 'create', record: stored, row, events: encodeEvents(record.runId, events, null) });
    return stored;
  }

  commit(batch: CommitBatch): Promise<void> {
    if (this.#closing !== undefined) return Promise.reject(closedError(this.kind, `commit to run ${JSON.stringify(batch.runId)}`));
    let work: EncodedCommit;
    try {
      work = this.#encodeCommit(batch);
    } catch (error) {
      return Promise.reject(wrapError(this.kind, 'commit failed', error));
    }
    return this.#enqueue(work) as Promise<void>;
  }

  #encodeCommit(batch: CommitBatch): EncodedCommit {
    checkBatch(this.kind, batch);
    let patchKey = '';
    const patchValues: unknown[] = [];
    if (batch.run !== undefined) {
      const patch = batch.run;
      const keys = (Object.keys(patch) as (keyof RunPatch)[]).filter((k) => Object.hasOwn(PATCH_COLUMNS, k) && !(patch[k] === undefined && KEPT.has(k))).sort();
      patchKey = keys.join(',');
      for (const key of keys) patchValues.push(patchValue(key, batch.run[key]));
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
      return { type: 'commit', batch, patchKey, patchValues, steps: [], outputs: [], events: encodeEvents(batch.runId, batch.events, records) };
    }
    const steps: [string, string, number][] = [];
    if (batch.steps !== undefined) for (const step of batch.steps) steps.push([step.step, encodeCompact(step, `step ${batch.runId}/${step.step}`), step.hasOutput ? 1 : 0]);
    return { type: 'commit', batch, patchKey, patchValues, steps, outputs, events: NO_EVENTS };
  }

  #enqueue(work: Work): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.#queue.push({ work, resolve, reject });
      if (this.#scheduled) return;
      this.#scheduled = true;
      if (this.#turnFlushed) {
        // Commits keep coming in this turn (from other callbacks): gather them until its end.
        setImmediate(this.#flushNow);
      } else {
        // The first commit of the turn is written once the current tick's commits have joined it,
        // without waiting a loop turn; a promise job, because no fake timer can hold it back.
        this.#turnFlushed = true;
        setImmediate(this.#newTurn);
        void RESOLVED.then(this.#flushNow);
      }
    });
  }

  #startFlush(): Promise<void> {
    if (this.#db !== undefined) {
      // Open already: written at once, with no promise of its own to wait for.
      this.#scheduled = false;
      const queue = this.#queue;
      this.#queue = [];
      if (queue.length > 0) this.#write(queue);
      return RESOLVED;
    }
    this.#flushing = this.#flushOnOpen().finally(() => {
      this.#flushing = undefined;
    });
    return this.#flushing;
  }

  async #flushOnOpen(): Promise<void> {
    this.#scheduled = false;
    const queue = this.#queue;
    this.#queue = [];
    if (queue.length === 0) return;
    try {
      await this.#connect();
    } catch (error) {
      for (const p of queue) p.reject(error);
      return;
    }
    this.#write(queue);
  }

  /** Writes a group in one transaction; each promise settles with its own batch. */
  #write(queue: readonly Pending[]): void {
    const outcomes: unknown[] = new Array(queue.length);
    const failed: boolean[] = new Array(queue.length).fill(false);
    try {
      // The fast path: each batch is checked against its run's head before it writes, so one
      // transaction without savepoints holds them all.
      this.#groupTx!.immediate(queue, outcomes, failed);
    } catch {
      // SQLite failed a write: the group was rolled back, so each batch goes again on its own.
      for (let i = 0; i < queue.length; i++) {
        failed[i] = false;
        try {
          outcomes[i] = this.#singleTx!.immediate(queue[i]!.work);
        } catch (error) {
          failed[i] = true;
          outcomes[i] = wrapError(this.kind, failureOf(queue[i]!.work), error);
        }
      }
    }
    for (let i = 0; i < queue.length; i++) {
      if (failed[i]) queue[i]!.reject(outcomes[i]);
      else queue[i]!.resolve(outcomes[i]);
    }
    this.#sinceCheckpoint += queue.length;
    if (this.#sinceCheckpoint >= CHECKPOINT_EVERY && this.#offThreadCheckpoints) this.#requestCheckpoint();
  }

  /**
   * Asks the checkpointer thread for a passive checkpoint. The connection's own autocheckpoint stays
   * as the fallback: it finds little left to copy, and takes over if the thread cannot run.
   */
  #requestCheckpoint(): void {
    if (this.#checkpointing || this.#checkpointerFailed || this.#closing !== undefined) return;
    this.#sinceCheckpoint = 0;
    this.#checkpointing = true;
    try {
      this.#checkpointer ??= this.#startCheckpointer();
      this.#checkpointer.postMessage('checkpoint');
    } catch {
      this.#checkpointerFailed = true;
    }
  }

  #startCheckpointer(): Worker {
    const worker = new Worker(CHECKPOINTER, {
      eval: true,
      workerData: { driver: createRequire(import.meta.url).resolve('better-sqlite3'), file: this.file, synchronous: this.#synchronous, busyTimeout: this.#busyTimeout },
    });
    worker.on('message', () => {
      this.#checkpointing = false;
    });
    worker.on('error', () => {
      this.#checkpointerFailed = true;
    });
    worker.on('exit', () => {
      if (this.#checkpointer === worker) this.#checkpointer = undefined;
    });
    worker.unref(); // after the listeners: adding a 'message' listener refs the worker again
    return worker;
  }

  /** Checks and applies each batch in order; a refused one writes nothing and the others go on. */
  #applyGroup(queue: readonly Pending[], outcomes: unknown[], failed: boolean[]): void {
    for (let i = 0; i < queue.length; i++) {
      try {
        outcomes[i] = this.#apply(queue[i]!.work);
      } catch (error) {
        if (!(error instanceof FlowError)) throw error;
        failed[i] = true;
        outcomes[i] = error;
      }
    }
  }

  /** Checks one write against its run's head, then applies it; a refusal throws a FlowError before any write. */
  #apply(work: Work): unknown {
    const s = this.#statements!;
    if (work.type === 'input') {
      if (s.runExists.get(work.runId) === undefined) throw notFoundError(this.kind, work.runId);
      return s.insertInput.run(work.runId, work.key, work.outcome, work.value, work.at).changes === 1;
    }
    if (work.type === 'clear-inputs') {
      if (s.runExists.get(work.runId) === undefined) throw notFoundError(this.kind, work.runId);
      for (const key of work.keys) s.deleteInput.run(work.runId, key);
      return undefined;
    }
    if (work.type === 'create') {
      const runId = work.record.runId;
      if (s.insertRun.run(work.row).changes !== 1) throw conflictError(this.kind, runId);
      this.#insertEvents(work.events);
      return work.record;
    }
    const { batch } = work;
    const runId = batch.runId;
    // The fence is a read: inside this write transaction (BEGIN IMMEDIATE) no other connection writes.
    const lastSeq = this.#checkHead(batch);
    if (work.patchKey !== '') {
      const changes = this.#patchStatement(work.patchKey).run(...work.patchValues, runId, batch.leaseToken).changes;
      if (changes !== 1) throw new Error(`the fenced update of run ${JSON.stringify(runId)} changed ${changes} rows, yet its head accepts the batch`);
    }
    this.#folds.delete(runId);
    if (work.events.count > 0) {
      this.#insertEvents(work.events);
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
  #checkHead(batch: CommitBatch): number {
    const head = this.#statements!.runHead.get(batch.runId, batch.runId) as Head | undefined;
    if (head === undefined) throw notFoundError(this.kind, batch.runId);
    if (head.lease_token !== batch.leaseToken) throw leaseLostError(this.kind, batch.runId, head.lease_token, batch.leaseToken);
    checkEvents(this.kind, batch.runId, head.last_seq, batch.events);
    return head.last_seq;
  }

  #insertEvents(events: EncodedEvents): void {
    const { count, params } = events;
    if (count === 0) return;
    if (count <= EVENTS_PER_INSERT) {
      this.#eventStatement(count).run(params);
      return;
    }
    for (let from = 0; from < count; from += EVENTS_PER_INSERT) {
      const n = Math.min(EVENTS_PER_INSERT, count - from);
      this.#eventStatement(n).run(params.slice(4 * from, 4 * (from + n)));
    }
  }

  #eventStatement(rows: number): Statement {
    let statement = this.#eventStatements[rows];
    if (statement === undefined) {
      statement = this.#db!.prepare(`INSERT INTO weir_events (run_id, seq, data, records) VALUES ${Array.from({ length: rows }, () => '(?, ?, ?, ?)').join(', ')}`);
      this.#eventStatements[rows] = statement;
    }
    return statement;
  }

  /** `UPDATE` of the run row with a patch, fenced by its lease token. */
  #patchStatement(patchKey: string): Statement {
    let statement = this.#patchStatements.get(patchKey);
    if (statement === undefined) {
      const release = patchKey.endsWith(RELEASE_KEY);
      const keys = release ? patchKey.slice(0, -RELEASE_KEY.length) : patchKey;
      const columns = keys.split(',').map((k) => `${PATCH_COLUMNS[k as keyof RunPatch]} = ?`);
      if (release) columns.push('owner_id = NULL', 'owner = NULL', 'lease_expires_at = 0');
      statement = this.#db!.prepare(`UPDATE weir_runs SET ${columns.join(', ')} WHERE run_id = ? AND lease_token = ?`);
      this.#patchStatements.set(patchKey, statement);
    }
    return statement;
  }

  async loadRun(runId: string): Promise<LoadedRun | undefined> {
    const s = await this.#ready(`load run ${JSON.stringify(runId)}`);
    let row: RunRow | undefined;
    let rows: FoldRows | undefined;
    try {
      // One read transaction, so the run row and its records are of the same moment.
      this.#db!.transaction(() => {
        row = s.selectRun.get(runId) as RunRow | undefined;
        if (row !== undefined) rows = this.#foldRows(runId);
      })();
    } catch (error) {
      throw wrapError(this.kind, `could not load run ${JSON.stringify(runId)}`, error);
    }
    if (row === undefined || rows === undefined) {
      this.#folds.delete(runId);
      return undefined;
    }
    const run = this.#toRun(row);
    const fold = this.#fold(runId, row.cur_seq, rows);
    return { run, steps: [...fold.steps.values()] };
  }

  async getOutput(runId: string, step: string): Promise<StoredOutput | undefined> {
    const key = `${runId}/${step}`;
    const s = await this.#ready(`read the output of ${JSON.stringify(key)}`);
    let lastSeq: number | undefined;
    let fold = this.#folds.get(runId);
    let rows: FoldRows | undefined;
    try {
      this.#db!.transaction(() => {
        lastSeq = s.runSeq.get(runId, runId) as number | undefined;
        if (lastSeq !== undefined && fold?.lastSeq !== lastSeq) rows = this.#foldRows(runId);
      })();
    } catch (error) {
      throw wrapError(this.kind, `could not read the output of ${JSON.stringify(key)}`, error);
    }
    if (lastSeq === undefined) {
      this.#folds.delete(runId);
      return undefined;
    }
    if (rows !== undefined) fold = this.#fold(runId, lastSeq, rows);
    else if (fold !== undefined) {
      // Still valid: now the most recently used.
      this.#folds.delete(runId);
      this.#folds.set(runId, fold);
    }
    const text = fold?.outputs.get(step);
    if (text === undefined) return undefined;
    return { value: this.#decode('output', key, text) };
  }

  /** Reads the rows a fold of the run's step records needs; inside a read transaction. */
  #foldRows(runId: string): FoldRows {
    const s = this.#statements!;
    return {
      records: s.selectRecords.all(runId) as FoldRows['records'],
      steps: s.selectSteps.all(runId) as FoldRows['steps'],
      outputs: s.selectOutputs.all(runId) as FoldRows['outputs'],
    };
  }

  /**
   * Folds a run's step records and outputs in the order they were written, later wins: records
   * carried by the event at seq N, and table rows written when the run's last seq was M, come in
   * seq order; on a tie the table row goes last (it was written after event M). Remembers the fold.
   * @throws `WEIR_CORRUPT_RECORD` naming the step record (or the records of an event) that cannot be read.
   */
  #fold(runId: string, lastSeq: number, rows: FoldRows): Fold {
    const steps = new Map<string, StepRecord>();
    const outputs = new Map<string, string>();
    const setStep = (record: StepRecord): void => {
      steps.set(record.step, record);
      if (!record.hasOutput) outputs.delete(record.step);
    };
    // Table rows by seq, each step record before an output of the same seq (they were written so).
    const table: { seq: number; step?: StepRecord; output?: readonly [string, string] }[] = [];
    for (const r of rows.steps) {
      const key = `${runId}/${r.step}`;
      const record = this.#decode('step', key, r.data);
      if (!isObject(record) || record.step !== r.step) throw corruptError(this.kind, 'step', key);
      table.push({ seq: r.seq, step: record as unknown as StepRecord });
    }
    for (const r of rows.outputs) table.push({ seq: r.seq, output: [r.step, r.value] });
    table.sort((a, b) => a.seq - b.seq || (a.step === undefined ? 1 : 0) - (b.step === undefined ? 1 : 0));
    let next = 0;
    const applyTableBefore = (seq: number): void => {
      for (; next < table.length && table[next]!.seq < seq; next++) {
        const entry = table[next]!;
        if (entry.step !== undefined) setStep(entry.step);
        else if (entry.output !== undefined) outputs.set(entry.output[0], entry.output[1]);
      }
    };
    for (const r of rows.records) {
      applyTableBefore(r.seq);
      const carried = this.#carried(runId, r.seq, r.records);
      for (const record of carried.s) setStep(record);
      for (const [step, value] of carried.o) outputs.set(step, value);
    }
    applyTableBefore(Infinity);
    const fold: Fold = { lastSeq, steps, outputs };
    this.#folds.delete(runId);
    this.#folds.set(runId, fold);
    if (this.#folds.size > FOLDS_KEPT) this.#folds.delete(this.#folds.keys().next().value!);
    return fold;
  }

  /** Reads the records an event carries. */
  #carried(runId: string, seq: number, text: string): CarriedRecords {
    const key = `${runId}#${seq} records`;
    const value = this.#decode('step', key, text);
    const valid =
      isObject(value) &&
      Array.isArray(value.s) &&
      Array.isArray(value.o) &&
      value.s.every((r) => isObject(r) && typeof r.step === 'string') &&
      value.o.every((o) => Array.isArray(o) && o.length === 2 && typeof o[0] === 'string' && typeof o[1] === 'string');
    if (!valid) throw corruptError(this.kind, 'step', key);
    return value as unknown as CarriedRecords;
  }

  async readEvents(runId: string, after = 0, limit = Infinity): Promise<WeirEvent[]> {
    const s = await this.#ready(`read the events of run ${JSON.stringify(runId)}`);
    let rows: { seq: number; data: string }[];
    try {
      rows = s.selectEvents.all(runId, after, Number.isFinite(limit) ? Math.max(0, limit) : -1) as { seq: number; data: string }[];
    } catch (error) {
      throw wrapError(this.kind, `could not read the events of run ${JSON.stringify(runId)}`, error);
    }
    return rows.map((r) => {
      const event = this.#decode('event', `${runId}#${r.seq}`, r.data);
      if (!isObject(event) || event.seq !== r.seq) throw corruptError(this.kind, 'event', `${runId}#${r.seq}`);
      return event as unknown as WeirEvent;
    });
  }

  async listRuns(query: ListRunsQuery): Promise<RunPage> {
    await this.#ready('list runs');
    const where: string[] = [];
    const params: unknown[] = [];
    const statuses = query.status === undefined ? [] : typeof query.status === 'string' ? [query.status] : [...query.status];
    if (query.status !== undefined) {
      where.push(`status IN (${statuses.map(() => '?').join(', ') || 'NULL'})`);
      params.push(...statuses);
    }
    if (query.flow !== undefined) {
      where.push('flow = ?');
      params.push(query.flow);
    }
    if (query.stale === true) {
      where.push("status = 'running' AND lease_expires_at < ?");
      params.push(query.now);
    }
    if (query.before !== undefined) {
      const cursor = decodeCursor(this.kind, query.before);
      where.push('(created_at < ? OR (created_at = ? AND run_id < ?))');
      params.push(cursor.createdAt, cursor.createdAt, cursor.runId);
    }
    const limit = limitOf(query);
    const sql = `SELECT *, ${CURRENT_SEQ} FROM weir_runs${where.length > 0 ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY created_at DESC, run_id DESC LIMIT ?`;
    let statement = this.#listStatements.get(sql);
    let rows: RunRow[];
    try {
      if (statement === undefined) {
        statement = this.#db!.prepare(sql);
        if (this.#listStatements.size < 64) this.#listStatements.set(sql, statement);
      }
      rows = statement.all(...params, limit + 1) as RunRow[];
    } catch (error) {
      throw wrapError(this.kind, 'could not list runs', error);
    }
    const runs: RunRecord[] = [];
    const corrupt: string[] = [];
    for (const row of rows.slice(0, limit)) {
      try {
        runs.push(this.#toRun(row));
      } catch {
        corrupt.push(row.run_id); // loadRun reports it; the other runs stay listable
      }
    }
    const last = rows[Math.min(limit, rows.length) - 1];
    const page: { runs: RunRecord[]; next?: string; corrupt?: string[] } = { runs };
    if (rows.length > limit && last !== undefined) page.next = encodeCursor({ createdAt: last.created_at, runId: last.run_id });
    if (corrupt.length > 0) page.corrupt = corrupt;
    return page;
  }

  async acquireLease(runId: string, owner: RunOwner, leaseMs: number, now: number, options?: AcquireOptions): Promise<number | undefined> {
    const s = await this.#ready(`acquire the lease of run ${JSON.stringify(runId)}`);
    const takeover = options?.takeover === true ? 1 : 0;
    try {
      const row = s.acquire.get({
        runId,
        ownerId: owner.processId,
        owner: JSON.stringify(owner),
        expires: now + leaseMs,
        now,
        takeover,
        fromToken: options?.fromToken ?? null,
      }) as { lease_token: number } | undefined;
      return row?.lease_token;
    } catch (error) {
      throw wrapError(this.kind, `could not acquire the lease of run ${JSON.stringify(runId)}`, error);
    }
  }

  async renewLeases(owner: RunOwner, entries: readonly LeaseEntry[], expiresAt: number): Promise<RenewResult> {
    const s = await this.#ready('renew leases');
    const renewed: string[] = [];
    const lost: string[] = [];
    try {
      this.#db!.transaction(() => {
        for (const { runId, leaseToken } of entries) {
          if (s.renew.run(expiresAt, runId, leaseToken, owner.processId).changes === 1) renewed.push(runId);
          else lost.push(runId);
        }
      }).immediate();
    } catch (error) {
      throw wrapError(this.kind, 'could not renew leases', error);
    }
    return { renewed, lost };
  }

  async releaseLease(runId: string, owner: RunOwner, leaseToken: number): Promise<boolean> {
    const s = await this.#ready(`release the lease of run ${JSON.stringify(runId)}`);
    try {
      return s.release.run(runId, leaseToken, owner.processId).changes === 1;
    } catch (error) {
      throw wrapError(this.kind, `could not release the lease of run ${JSON.stringify(runId)}`, error);
    }
  }

  async putInput(runId: string, entry: InputEntry): Promise<boolean> {
    this.#check(`store input ${JSON.stringify(entry.key)} of run ${JSON.stringify(runId)}`);
    const value = 'value' in entry ? encodeCompact(entry.value, `input ${runId}/${entry.key}`) : null;
    // Queued with the commits, so it sees every commit (and createRun) made before it.
    const stored = await this.#enqueue({ type: 'input', runId, key: entry.key, outcome: entry.outcome, value, at: entry.at });
    return stored === true;
  }

  async clearInputs(runId: string, keys: readonly string[]): Promise<void> {
    this.#check(`clear inputs of run ${JSON.stringify(runId)}`);
    // Queued with the commits and answers, in order.
    await this.#enqueue({ type: 'clear-inputs', runId, keys: [...keys] });
  }

  async readInputs(runId: string): Promise<InputEntry[]> {
    const s = await this.#ready(`read the inputs of run ${JSON.stringify(runId)}`);
    let rows: { key: string; outcome: string; value: string | null; at: number }[];
    try {
      rows = s.selectInputs.all(runId) as typeof rows;
    } catch (error) {
      throw wrapError(this.kind, `could not read the inputs of run ${JSON.stringify(runId)}`, error);
    }
    return rows.map((r) => {
      const key = `${runId}/${r.key}`;
      if (!OUTCOMES.has(r.outcome) || typeof r.at !== 'number') throw corruptError(this.kind, 'input', key);
      const outcome = r.outcome as InputEntry['outcome'];
      return r.value === null ? { key: r.key, outcome, at: r.at } : { key: r.key, outcome, value: this.#decode('input', key, r.value), at: r.at };
    });
  }

  async prune(options: PruneOptions): Promise<number> {
    const s = await this.#ready('prune');
    try {
      let deleted = 0;
      // In slices, so a big prune never holds the write lock for long.
      for (;;) {
        const ids = s.prunable.all(...FINISHED, options.olderThan) as { run_id: string }[];
        if (ids.length === 0) return deleted;
        this.#db!.transaction(() => {
          for (const { run_id: runId } of ids) {
            s.deleteEvents.run(runId);
            s.deleteOutputs.run(runId);
            s.deleteSteps.run(runId);
            s.deleteInputs.run(runId);
            deleted += s.deleteRun.run(runId, ...FINISHED).changes;
          }
        }).immediate();
        this.#folds.clear();
        if (ids.length < PRUNE_SLICE) return deleted;
      }
    } catch (error) {
      throw wrapError(this.kind, 'prune failed', error);
    }
  }

  checkStorable(value: unknown, what: string): void {
    encodeCompact(value, what);
  }

  async close(): Promise<void> {
    this.#closing ??= (async () => {
      // Pending commits are written before the connection closes.
      while (this.#flushing !== undefined || this.#queue.length > 0) {
        await (this.#flushing ?? this.#startFlush());
      }
      const opening = this.#opening;
      if (opening !== undefined) await opening.catch(() => undefined);
      const checkpointer = this.#checkpointer;
      if (checkpointer !== undefined) {
        // Closed first, so the main connection is the last one and clears the WAL away as before.
        const exited = once(checkpointer, 'exit').catch(() => undefined);
        checkpointer.ref(); // so the wait for it keeps the process alive
        checkpointer.postMessage('close');
        await exited;
      }
      this.#db?.close();
      this.#db = undefined;
    })();
    return this.#closing;
  }

  #check(what: string): void {
    if (this.#closing !== undefined) throw closedError(this.kind, what);
  }

  async #ready(what: string): Promise<ReturnType<typeof prepare>> {
    this.#check(what);
    await this.#connect();
    return this.#statements!;
  }

  #decode(record: RecordKind, key: string, text: string): unknown {
    try {
      return decodeCompact(text, key);
    } catch (error) {
      throw corruptError(this.kind, record, key, error instanceof FlowError && error.cause !== undefined ? error.cause : error);
    }
  }

  #parse<T>(record: RecordKind, key: string, text: string | null, valid: (value: Record<string, unknown>) => boolean): T {
    let value: unknown;
    try {
      value = JSON.parse(text ?? 'null');
    } catch (error) {
      throw corruptError(this.kind, record, key, error);
    }
    if (!isObject(value) || !valid(value)) throw corruptError(this.kind, record, key);
    return value as T;
  }

  #toRun(row: RunRow): RunRecord {
    const key = row.run_id;
    const run: Record<string, unknown> = {
      runId: row.run_id,
      flow: row.flow,
      fingerprint: row.fingerprint,
      input: this.#decode('run', key, row.input),
      mode: row.mode,
      humanInLoop: row.human_in_loop === 1,
      status: row.status,
      createdAt: row.created_at,
      updatedAt: row.updated_at,
      leaseToken: row.lease_token,
      leaseExpiresAt: row.lease_expires_at,
      recoveries: row.recoveries,
      lastSeq: row.cur_seq,
    };
    if (row.ended_at !== null) run.endedAt = row.ended_at;
    if (row.error !== null) run.error = this.#parse<ErrorData>('run', key, row.error, (v) => typeof v.message === 'string');
    if (row.output !== null) run.output = this.#decode('run', key, row.output);
    if (row.retry_of !== null) run.retryOf = row.retry_of;
    if (row.retried_by !== null) run.retriedBy = row.retried_by;
    if (row.ran_by !== null && row.ran_by !== undefined) run.ranBy = row.ran_by;
    if (row.owner !== null) run.owner = this.#parse<RunOwner>('run', key, row.owner, (v) => typeof v.processId === 'string');
    return run as unknown as RunRecord;
  }
}

const PRUNE_SLICE = 500;
const WAL_AUTOCHECKPOINT_PAGES = 10_000;
/** Commits between two checkpoints on the checkpointer thread (a step commit writes ~3 pages). */
const CHECKPOINT_EVERY = 256;

/**
 * The checkpointer thread: its own connection, passive checkpoints on request, so the fsyncs of a
 * checkpoint never stall the event loop or a commit. CommonJS, evaluated; the driver path comes from here.
 */
const CHECKPOINTER = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
const db = new Database(workerData.file, { fileMustExist: true, timeout: workerData.busyTimeout });
db.pragma('synchronous = ' + workerData.synchronous);
db.pragma('wal_autocheckpoint = 0');
parentPort.on('message', (message) => {
  if (message === 'close') {
    db.close();
    parentPort.close();
    return;
  }
  try {
    db.pragma('wal_checkpoint(PASSIVE)');
  } catch {
    // Busy or failing: the writer's own autocheckpoint still runs.
  }
  parentPort.postMessage('done');
});
`;
/** Rows per multi-row event insert (4 parameters each, well under SQLite's limit). */
const EVENTS_PER_INSERT = 16;

/** A run row's current last seq, as the `cur_seq` column of a `weir_runs` query. */
const CURRENT_SEQ = 'coalesce((SELECT max(e.seq) FROM weir_events e WHERE e.run_id = weir_runs.run_id), 0) AS cur_seq';

function prepare(db: Database) {
  return {
    insertRun: db.prepare(
      `INSERT INTO weir_runs (run_id, flow, fingerprint, mode, human_in_loop, status, created_at, updated_at, ended_at, error,
        output, retry_of, retried_by, ran_by, owner_id, owner, lease_token, lease_expires_at, recoveries, last_seq, input)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (run_id) DO NOTHING`,
    ),
    // The run's last seq is its last event's: one descent of the events' primary key.
    runHead: db.prepare('SELECT lease_token, coalesce((SELECT max(seq) FROM weir_events WHERE run_id = ?), 0) AS last_seq FROM weir_runs WHERE run_id = ?'),
    runSeq: db.prepare('SELECT coalesce((SELECT max(seq) FROM weir_events WHERE run_id = ?), 0) FROM weir_runs WHERE run_id = ?').pluck(),
    selectRun: db.prepare(`SELECT *, ${CURRENT_SEQ} FROM weir_runs WHERE run_id = ?`),
    selectRecords: db.prepare('SELECT seq, records FROM weir_events WHERE run_id = ? AND records IS NOT NULL ORDER BY seq'),
    selectSteps: db.prepare('SELECT step, data, seq FROM weir_steps WHERE run_id = ?'),
    selectOutputs: db.prepare('SELECT step, value, seq FROM weir_outputs WHERE run_id = ?'),
    selectEvents: db.prepare('SELECT seq, data FROM weir_events WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?'),
    upsertStep: db.prepare('INSERT OR REPLACE INTO weir_steps (run_id, step, data, seq) VALUES (?, ?, ?, ?)'),
    upsertOutput: db.prepare('INSERT OR REPLACE INTO weir_outputs (run_id, step, value, seq) VALUES (?, ?, ?, ?)'),
    deleteOutput: db.prepare('DELETE FROM weir_outputs WHERE run_id = ? AND step = ?'),
    runExists: db.prepare('SELECT 1 FROM weir_runs WHERE run_id = ?').pluck(),
    // First come first served: a second entry for the key changes nothing.
    insertInput: db.prepare('INSERT INTO weir_inputs (run_id, key, outcome, value, at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (run_id, key) DO NOTHING'),
    // Entries of a run are only ever deleted with it, so rowids keep their insertion order.
    deleteInput: db.prepare('DELETE FROM weir_inputs WHERE run_id = ? AND key = ?'),
    selectInputs: db.prepare('SELECT key, outcome, value, at FROM weir_inputs WHERE run_id = ? ORDER BY rowid'),
    acquire: db.prepare(
      `UPDATE weir_runs SET
         lease_token = lease_token + (CASE WHEN :takeover = 1 OR owner_id IS NOT :ownerId THEN 1 ELSE 0 END),
         recoveries = recoveries + :takeover,
         owner_id = :ownerId, owner = :owner, lease_expires_at = :expires
       WHERE run_id = :runId AND (owner_id IS NULL OR lease_expires_at < :now OR owner_id = :ownerId OR lease_token = :fromToken)
       RETURNING lease_token`,
    ),
    renew: db.prepare('UPDATE weir_runs SET lease_expires_at = ? WHERE run_id = ? AND lease_token = ? AND owner_id = ?'),
    release: db.prepare('UPDATE weir_runs SET owner_id = NULL, owner = NULL, lease_expires_at = 0 WHERE run_id = ? AND lease_token = ? AND owner_id = ?'),
    prunable: db.prepare(
      `SELECT run_id FROM weir_runs WHERE status IN (?, ?, ?) AND coalesce(ended_at, updated_at) < ? LIMIT ${PRUNE_SLICE}`,
    ),
    deleteEvents: db.prepare('DELETE FROM weir_events WHERE run_id = ?'),
    deleteOutputs: db.prepare('DELETE FROM weir_outputs WHERE run_id = ?'),
    deleteSteps: db.prepare('DELETE FROM weir_steps WHERE run_id = ?'),
    deleteInputs: db.prepare('DELETE FROM weir_inputs WHERE run_id = ?'),
    deleteRun: db.prepare('DELETE FROM weir_runs WHERE run_id = ? AND status IN (?, ?, ?)'),
  };
}
