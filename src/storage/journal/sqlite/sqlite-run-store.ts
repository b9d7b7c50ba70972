/**
 * The run journal in one SQLite file through better-sqlite3: WAL mode, prepared statements, group
 * commit (`write-queue`), checkpoints on their own thread (`checkpointer`). The file's tables are in
 * `schema`, how records sit in rows in `rows`, how step records are read back in `fold`.
 * @internal
 */
import { mkdirSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import type BetterSqlite3 from 'better-sqlite3';
import type { WeirEvent } from '../../../model/events.js';
import { encodeCompact } from '../../codec.js';
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
  RunRecord,
  RunStore,
  StoredOutput,
} from '../run-store.js';
import {
  checkEvents,
  closedError,
  corruptError,
  FINISHED,
  INPUT_OUTCOMES,
  limitOf,
  pageOfRows,
  wrapError,
  newRunRecord,
} from '../store-support.js';
import { applyWork } from './apply.js';
import { Checkpointer } from './checkpointer.js';
import { fold, FoldCache, type FoldRows, readFoldRows } from './fold.js';
import { FileIdentity } from './file-identity.js';
import { decodeEventRow, decodeText, encodeCommit, encodeEvents, type EventRow, failureOf, writerOf, RELEASE_KEY, runRowParams, type EncodedCommit, type RunRow, toRun, type Work } from './rows.js';
import { migrate } from './schema.js';
import { listQuery, PRUNE_SLICE, Statements } from './statements.js';
import { WriteQueue } from './write-queue.js';

type Database = BetterSqlite3.Database;

/** Options of a SQLite run store. */
export interface SqliteRunStoreOptions {
  /** `NORMAL` survives a process crash; `FULL` a power loss too. @default 'NORMAL' */
  readonly synchronous?: 'NORMAL' | 'FULL';
  /** How long to wait for another connection's lock, in milliseconds. @default 5000 */
  readonly busyTimeout?: number;
}

/** Checkpoints every ~40 MB of WAL rather than every 4 MB, when the checkpointer thread does not run first. */
const WAL_AUTOCHECKPOINT_PAGES = 10_000;

/** A `RunStore` in one SQLite file, shared safely by several processes. @internal */
export class SqliteRunStore implements RunStore {
  readonly kind = 'sqlite';
  readonly durable = true;
  readonly file: string;
  readonly #synchronous: 'NORMAL' | 'FULL';
  readonly #busyTimeout: number;
  #db: Database | undefined;
  #opening: Promise<Database> | undefined;
  #statements: Statements | undefined;
  readonly #folds = new FoldCache();
  readonly #writes: WriteQueue<Work>;
  /**
   * Only with NORMAL, on a file: then only checkpoints wait for the disk; with FULL every commit
   * does, and a second thread's fsyncs only queue with them (measured slower).
   */
  readonly #checkpointer: Checkpointer | undefined;
  /** Whether the path still names the file opened (none for `:memory:`). */
  readonly #identity: FileIdentity | undefined;
  #closing: Promise<void> | undefined;

  /** Hears of each run a commit changed: its fold, if kept, is out of date. */
  readonly #committed = (runId: string): void => this.#folds.forget(runId);

  constructor(file: string, options: SqliteRunStoreOptions = {}) {
    this.file = file;
    this.#synchronous = options.synchronous ?? 'NORMAL';
    this.#busyTimeout = options.busyTimeout ?? 5000;
    const onDisk = file !== ':memory:' && file !== '';
    this.#identity = onDisk ? new FileIdentity(file, () => this.#replaced()) : undefined;
    const offThread = this.#synchronous === 'NORMAL' && onDisk;
    this.#checkpointer = offThread ? new Checkpointer({ file, synchronous: this.#synchronous, busyTimeout: this.#busyTimeout }, () => this.#identity?.identity) : undefined;
    this.#writes = new WriteQueue<Work>({
      connect: () => this.#connect(),
      apply: (work) => applyWork(this.#statements!, work, this.#committed),
      failureOf,
      writerOf,
      // A run created or ended, or an input, is checked always; other commits at most every few ms.
      check: (queue) => this.#identity?.check(queue.some(({ work }) => work.type !== 'commit' || work.patchKey.endsWith(RELEASE_KEY))),
      written: (count) => {
        if (this.#closing === undefined) this.#checkpointer?.committed(count);
      },
    });
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
        this.#writes.attach(db);
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
      this.#identity?.opened();
      db.pragma('journal_mode = WAL');
      db.pragma(`synchronous = ${this.#synchronous}`);
      // Group commits of many runs dirty many pages, and frequent checkpoints cost more than the commits.
      db.pragma(`wal_autocheckpoint = ${WAL_AUTOCHECKPOINT_PAGES}`);
      migrate(db);
      this.#statements = new Statements(db);
    } catch (error) {
      db.close();
      throw error;
    }
    return db;
  }

  async open(): Promise<void> {
    await this.#ready('open');
  }

  /**
   * Throws when the path no longer names the file the connection opened, for the results table's
   * writes, which share the connection. @throws FlowError `WEIR_STORE_REPLACED`. @internal
   */
  checkFile(): void {
    this.#identity?.check(true);
  }

  createRun(record: NewRunRecord, events: readonly WeirEvent[] = []): Promise<RunRecord> {
    try {
      if (this.#closing !== undefined) throw closedError(this.kind, `create run ${JSON.stringify(record.runId)}`);
      const lastSeq = checkEvents(this.kind, record.runId, 0, events);
      const stored = newRunRecord(record, lastSeq);
      // Settles with `stored` (what `applyWork` gives for a create).
      return this.#writes.enqueue({ type: 'create', record: stored, row: runRowParams(stored), events: encodeEvents(record.runId, events, null) }) as Promise<RunRecord>;
    } catch (thrown) {
      // A `FlowError`: closed, a seq gap, or a value that cannot be stored.
      const error = thrown as Error;
      return Promise.reject(error);
    }
  }

  commit(batch: CommitBatch): Promise<void> {
    if (this.#closing !== undefined) return Promise.reject(closedError(this.kind, `commit to run ${JSON.stringify(batch.runId)}`));
    let work: EncodedCommit;
    try {
      work = encodeCommit(batch);
    } catch (error) {
      return Promise.reject(wrapError(this.kind, 'commit failed', error));
    }
    return this.#writes.enqueue(work) as Promise<void>;
  }

  async loadRun(runId: string): Promise<LoadedRun | undefined> {
    const s = await this.#ready(`load run ${JSON.stringify(runId)}`);
    let row: RunRow | undefined;
    let rows: FoldRows | undefined;
    try {
      // One read transaction, so the run row and its records are of the same moment.
      this.#db!.transaction(() => {
        row = s.fixed.selectRun.get(runId) as RunRow | undefined;
        if (row !== undefined) rows = readFoldRows(s, runId);
      })();
    } catch (error) {
      throw wrapError(this.kind, `could not load run ${JSON.stringify(runId)}`, error);
    }
    if (row === undefined || rows === undefined) {
      this.#folds.forget(runId);
      return undefined;
    }
    const run = toRun(row);
    const folded = fold(runId, row.cur_seq, rows);
    this.#folds.remember(runId, folded);
    return { run, steps: [...folded.steps.values()] };
  }

  async getOutput(runId: string, step: string): Promise<StoredOutput | undefined> {
    const key = `${runId}/${step}`;
    const s = await this.#ready(`read the output of ${JSON.stringify(key)}`);
    let lastSeq: number | undefined;
    let folded = this.#folds.peek(runId);
    let rows: FoldRows | undefined;
    try {
      this.#db!.transaction(() => {
        lastSeq = s.fixed.runSeq.get(runId, runId) as number | undefined;
        if (lastSeq !== undefined && folded?.lastSeq !== lastSeq) rows = readFoldRows(s, runId);
      })();
    } catch (error) {
      throw wrapError(this.kind, `could not read the output of ${JSON.stringify(key)}`, error);
    }
    if (lastSeq === undefined) {
      this.#folds.forget(runId);
      return undefined;
    }
    // Folded afresh, or still valid: either way now the most recently used.
    if (rows !== undefined) folded = fold(runId, lastSeq, rows);
    if (folded !== undefined) this.#folds.remember(runId, folded);
    const text = folded?.outputs.get(step);
    if (text === undefined) return undefined;
    return { value: decodeText('output', key, text) };
  }

  async readEvents(runId: string, after = 0, limit = Infinity): Promise<WeirEvent[]> {
    const s = await this.#ready(`read the events of run ${JSON.stringify(runId)}`);
    const max = Number.isFinite(limit) ? Math.max(0, limit) : -1;
    let rows: EventRow[];
    try {
      // A row holds one event or more, so `max` rows hold at least `max` events.
      rows = s.fixed.selectEvents.all(runId, after, max) as EventRow[];
    } catch (error) {
      throw wrapError(this.kind, `could not read the events of run ${JSON.stringify(runId)}`, error);
    }
    const events: WeirEvent[] = [];
    for (const row of rows) {
      // The first row may begin at or before `after`.
      for (const event of decodeEventRow(runId, row)) if (event.seq > after && (max < 0 || events.length < max)) events.push(event);
    }
    return events;
  }

  async listRuns(query: ListRunsQuery): Promise<RunPage> {
    const s = await this.#ready('list runs');
    const limit = limitOf(query);
    const { sql, params } = listQuery(query);
    let rows: RunRow[];
    try {
      rows = s.list(sql).all(...params, limit + 1) as RunRow[];
    } catch (error) {
      throw wrapError(this.kind, 'could not list runs', error);
    }
    return pageOfRows(rows, limit, toRun);
  }

  async acquireLease(runId: string, owner: RunOwner, leaseMs: number, now: number, options?: AcquireOptions): Promise<number | undefined> {
    const s = await this.#ready(`acquire the lease of run ${JSON.stringify(runId)}`);
    this.#identity?.check(true);
    const takeover = options?.takeover === true ? 1 : 0;
    try {
      const row = s.fixed.acquire.get({
        runId,
        ownerId: owner.processId,
        owner: JSON.stringify(owner),
        expires: now + leaseMs,
        now,
        takeover,
        fromToken: options?.fromToken ?? null,
        ifToken: options?.ifToken ?? null,
      }) as { lease_token: number } | undefined;
      return row?.lease_token;
    } catch (error) {
      throw wrapError(this.kind, `could not acquire the lease of run ${JSON.stringify(runId)}`, error);
    }
  }

  async renewLeases(owner: RunOwner, entries: readonly LeaseEntry[], expiresAt: number): Promise<RenewResult> {
    const s = await this.#ready('renew leases');
    this.#identity?.check(true);
    const renewed: string[] = [];
    const lost: string[] = [];
    try {
      this.#db!.transaction(() => {
        for (const { runId, leaseToken } of entries) {
          if (s.fixed.renew.run(expiresAt, runId, leaseToken, owner.processId).changes === 1) renewed.push(runId);
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
    this.#identity?.check(true);
    try {
      return s.fixed.release.run(runId, leaseToken, owner.processId).changes === 1;
    } catch (error) {
      throw wrapError(this.kind, `could not release the lease of run ${JSON.stringify(runId)}`, error);
    }
  }

  async putInput(runId: string, entry: InputEntry): Promise<boolean> {
    this.#check(`store input ${JSON.stringify(entry.key)} of run ${JSON.stringify(runId)}`);
    const value = 'value' in entry ? encodeCompact(entry.value, `input ${runId}/${entry.key}`) : null;
    // Queued with the commits, so it sees every commit (and createRun) made before it.
    const stored = await this.#writes.enqueue({ type: 'input', runId, key: entry.key, outcome: entry.outcome, value, at: entry.at });
    return stored === true;
  }

  async clearInputs(runId: string, keys: readonly string[]): Promise<void> {
    this.#check(`clear inputs of run ${JSON.stringify(runId)}`);
    // Queued with the commits and answers, in order.
    await this.#writes.enqueue({ type: 'clear-inputs', runId, keys: [...keys] });
  }

  async readInputs(runId: string): Promise<InputEntry[]> {
    const s = await this.#ready(`read the inputs of run ${JSON.stringify(runId)}`);
    let rows: { key: string; outcome: string; value: string | null; at: number }[];
    try {
      rows = s.fixed.selectInputs.all(runId) as typeof rows;
    } catch (error) {
      throw wrapError(this.kind, `could not read the inputs of run ${JSON.stringify(runId)}`, error);
    }
    return rows.map((r) => {
      const key = `${runId}/${r.key}`;
      if (!INPUT_OUTCOMES.has(r.outcome) || typeof r.at !== 'number') throw corruptError(this.kind, 'input', key);
      const outcome = r.outcome as InputEntry['outcome'];
      return r.value === null ? { key: r.key, outcome, at: r.at } : { key: r.key, outcome, value: decodeText('input', key, r.value), at: r.at };
    });
  }

  async prune(options: PruneOptions): Promise<number> {
    const s = (await this.#ready('prune')).fixed;
    this.#identity?.check(true);
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
      await this.#writes.drain();
      const opening = this.#opening;
      if (opening !== undefined) await opening.catch(() => undefined);
      // Closed first, so the main connection is the last one and clears the WAL away as before.
      await this.#checkpointer?.close();
      // A file put at the path since the last write was not seen by any check: SQLite would leave what
      // this connection committed in the WAL at the path, beside that other file. Copied home first.
      try {
        if (this.#db !== undefined) this.#identity?.check(true);
      } catch {
        // Replaced: `#replaced` copied the WAL into the file opened.
      }
      this.#db?.close();
      this.#db = undefined;
    })();
    return this.#closing;
  }

  /**
   * The path names another file now, or none: what this connection committed is copied from the WAL
   * into the file it opened, and the WAL (which a file now at the path would read as its own) emptied;
   * the checkpointer thread, whose connection may be to the new file, is stopped.
   */
  #replaced(): void {
    void this.#checkpointer?.close();
    try {
      this.#db?.pragma('wal_checkpoint(TRUNCATE)');
    } catch {
      // Busy: those pages stay in the WAL, where whoever opens the path next reads them.
    }
  }

  #check(what: string): void {
    if (this.#closing !== undefined) throw closedError(this.kind, what);
  }

  async #ready(what: string): Promise<Statements> {
    this.#check(what);
    await this.#connect();
    return this.#statements!;
  }
}
