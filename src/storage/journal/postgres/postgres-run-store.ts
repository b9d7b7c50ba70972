/**
 * The run journal on Postgres through node-postgres: tables in a schema of their own, made and
 * migrated by `schema`; writes grouped into one call of a server-side function per round trip
 * (`write-queue`), lease renewals with them; reads, claims and the other lease statements on a pool.
 * @internal
 */
import type { QueryResultRow } from 'pg';
import { ErrorCode, FlowError } from '../../../errors/errors.js';
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
  StepRecord,
  StoredOutput,
} from '../run-store.js';
import {
  checkEvents,
  closedError,
  conflictError,
  corruptError,
  decodeCursor,
  FINISHED,
  INPUT_OUTCOMES,
  isObject,
  leaseLostError,
  limitOf,
  pageOfRows,
  notFoundError,
  wrapError,
  newRunRecord,
} from '../store-support.js';
import { PgClaims } from './claims.js';
import { PgConnection, type PostgresTarget } from './connection.js';
import { PgNotices } from './notices.js';
import { commitItem, createItem, decodeText, RUN_COLUMNS, toRun, type RunRow } from './rows.js';
import { migrate, quoteIdent } from './schema.js';
import { PgWriteQueue, type Outcome } from './write-queue.js';

const KIND = 'postgres';

/** Runs deleted per statement of a prune, so a big prune never holds many row locks for long. */
const PRUNE_SLICE = 500;

/** Options of a Postgres run store, validated and with defaults filled in. */
export interface PostgresStoreOptions {
  /** The Postgres schema that holds weir's tables, created when missing. */
  readonly schema: string;
  /** The most connections of a pool the store makes from a URL. */
  readonly poolSize: number;
  /**
   * How long a write or read keeps trying while the server is unreachable, in milliseconds, before
   * it fails with `WEIR_STORE` (a commit, whose outcome is then unknown, with `WEIR_LEASE_LOST`).
   */
  readonly reconnectFor: number;
}

/** A `RunStore` in a Postgres database, shared by any number of processes on any hosts. @internal */
export class PostgresRunStore implements RunStore {
  readonly kind = 'postgres';
  readonly durable = true;
  readonly schema: string;
  /** The schema as a quoted identifier, to put before table names. */
  readonly sql: string;
  readonly connection: PgConnection;
  readonly claims: PgClaims;
  readonly #notices: PgNotices;
  readonly #writes: PgWriteQueue;
  #opening: Promise<void> | undefined;
  #closing: Promise<void> | undefined;

  constructor(target: PostgresTarget, options: PostgresStoreOptions) {
    this.schema = options.schema;
    this.sql = quoteIdent(options.schema);
    this.connection = new PgConnection(target, options.poolSize, options.reconnectFor);
    this.#writes = new PgWriteQueue(this.connection, options.schema, this.sql);
    const ready = (): Promise<void> => this.#ready('claim runs').then(() => undefined);
    this.#notices = new PgNotices(this.connection, options.schema, ready);
    this.claims = new PgClaims(this.connection, options.schema, this.sql, this.#notices, ready);
  }

  /** How many write groups and writes went to the server. */
  get writeStats(): { readonly groups: number; readonly writes: number } {
    return this.#writes.stats;
  }

  open(): Promise<void> {
    if (this.#closing !== undefined) return Promise.reject(closedError(KIND, 'open the database'));
    this.#opening ??= this.#migrate().catch((error: unknown) => {
      this.#opening = undefined;
      throw wrapError(KIND, 'could not open the database', error);
    });
    return this.#opening;
  }

  async #migrate(): Promise<void> {
    const client = await this.connection.client();
    try {
      await migrate(client, this.schema);
    } finally {
      client.release();
    }
  }

  async createRun(record: NewRunRecord, events: readonly WeirEvent[] = []): Promise<RunRecord> {
    await this.#ready(`create run ${JSON.stringify(record.runId)}`);
    const lastSeq = checkEvents(KIND, record.runId, 0, events);
    const stored = newRunRecord(record, lastSeq);
    const item = createItem(stored, events);
    await this.#writes.enqueue(
      item,
      (outcome) => {
        if (outcome[0] === 'conflict') throw conflictError(KIND, record.runId);
        return stored;
      },
      'commit failed',
    );
    return stored;
  }

  async commit(batch: CommitBatch): Promise<void> {
    if (this.#closing !== undefined) throw closedError(KIND, `commit to run ${JSON.stringify(batch.runId)}`);
    let item;
    try {
      item = commitItem(batch);
    } catch (error) {
      throw wrapError(KIND, 'commit failed', error);
    }
    await this.#ready(`commit to run ${JSON.stringify(batch.runId)}`);
    await this.#writes.enqueue(item, (outcome) => this.#settleCommit(batch, outcome), 'commit failed');
  }

  #settleCommit(batch: CommitBatch, outcome: Outcome): void {
    switch (outcome[0]) {
      case 'ok':
        return;
      case 'nf':
        throw notFoundError(KIND, batch.runId);
      case 'lease':
        throw leaseLostError(KIND, batch.runId, outcome[1] as number, batch.leaseToken);
      case 'seq':
        checkEvents(KIND, batch.runId, outcome[1] as number, batch.events);
        throw new FlowError(`run store (postgres): run ${JSON.stringify(batch.runId)}: the server refused the events' seq, yet they continue its last seq ${String(outcome[1])}`, {
          code: ErrorCode.EVENT_SEQ,
        });
      default:
        throw new FlowError(`run store (postgres): run ${JSON.stringify(batch.runId)}: the server answered ${JSON.stringify(outcome)}`, { code: ErrorCode.STORE });
    }
  }

  async loadRun(runId: string): Promise<LoadedRun | undefined> {
    const what = `load run ${JSON.stringify(runId)}`;
    const s = await this.#ready(what);
    // One statement, so the run and its steps are of the same moment.
    const rows = await this.#read<RunRow & { steps: [string, string][] }>(
      what,
      `SELECT ${RUN_COLUMNS}, (SELECT coalesce(json_agg(json_build_array(step, data)), '[]'::json) FROM ${s}.steps t WHERE t.run_id = r.run_id) AS steps
       FROM ${s}.runs r WHERE run_id = $1`,
      [runId],
    );
    const row = rows[0];
    if (row === undefined) return undefined;
    const steps = row.steps.map(([step, data]): StepRecord => {
      const key = `${runId}/${step}`;
      const record = decodeText('step', key, data);
      if (!isObject(record) || record.step !== step) throw corruptError(KIND, 'step', key);
      return record as unknown as StepRecord;
    });
    return { run: toRun(row), steps };
  }

  async getOutput(runId: string, step: string): Promise<StoredOutput | undefined> {
    const key = `${runId}/${step}`;
    const s = await this.#ready(`read the output of ${JSON.stringify(key)}`);
    const rows = await this.#read<{ value: string }>(`read the output of ${JSON.stringify(key)}`, `SELECT value FROM ${s}.outputs WHERE run_id = $1 AND step = $2`, [runId, step]);
    const text = rows[0]?.value;
    return text === undefined ? undefined : { value: decodeText('output', key, text) };
  }

  async readEvents(runId: string, after = 0, limit = Infinity): Promise<WeirEvent[]> {
    const what = `read the events of run ${JSON.stringify(runId)}`;
    const s = await this.#ready(what);
    const rows = await this.#read<{ seq: number; data: string }>(
      what,
      `SELECT seq, data FROM ${s}.events WHERE run_id = $1 AND seq > $2 ORDER BY seq LIMIT $3`,
      [runId, after, Number.isFinite(limit) ? Math.max(0, Math.floor(limit)) : null],
    );
    return rows.map((r) => {
      const event = decodeText('event', `${runId}#${r.seq}`, r.data);
      if (!isObject(event) || event.seq !== r.seq) throw corruptError(KIND, 'event', `${runId}#${r.seq}`);
      return event as unknown as WeirEvent;
    });
  }

  async listRuns(query: ListRunsQuery): Promise<RunPage> {
    const s = await this.#ready('list runs');
    const limit = limitOf(query);
    const where: string[] = [];
    const params: unknown[] = [];
    const param = (value: unknown): string => `$${params.push(value)}`;
    if (query.status !== undefined) where.push(`status = ANY(${param(typeof query.status === 'string' ? [query.status] : [...query.status])}::text[])`);
    if (query.flow !== undefined) where.push(`flow = ${param(query.flow)}`);
    if (query.stale === true) where.push(`status = 'running' AND lease_expires_at < ${param(query.now)}`);
    if (query.stranded === true) {
      where.push(
        `status IN ('pending', 'running', 'waiting') AND NOT EXISTS (SELECT 1 FROM ${s}.workers w WHERE w.expires_at > ${param(query.now)} AND w.flows ? (flow || chr(31) || version))`,
      );
    }
    if (query.before !== undefined) {
      const cursor = decodeCursor(KIND, query.before);
      where.push(`(created_at, run_id) < (${param(cursor.createdAt)}, ${param(cursor.runId)})`);
    }
    const rows = await this.#read<RunRow>(
      'list runs',
      `SELECT ${RUN_COLUMNS} FROM ${s}.runs${where.length > 0 ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY created_at DESC, run_id DESC LIMIT ${param(limit + 1)}`,
      params,
    );
    return pageOfRows(rows, limit, toRun);
  }

  async acquireLease(runId: string, owner: RunOwner, leaseMs: number, now: number, options?: AcquireOptions): Promise<number | undefined> {
    const what = `acquire the lease of run ${JSON.stringify(runId)}`;
    const s = await this.#ready(what);
    const rows = await this.#query<{ lease_token: number }>(
      what,
      `UPDATE ${s}.runs SET
         lease_token = lease_token + (CASE WHEN $6 OR $8::bigint IS NOT NULL OR owner_id IS DISTINCT FROM $2 THEN 1 ELSE 0 END),
         recoveries = recoveries + (CASE WHEN $6 THEN 1 ELSE 0 END),
         owner_id = $2, owner = $3, lease_expires_at = $4
       WHERE run_id = $1 AND CASE WHEN $8::bigint IS NOT NULL
         THEN lease_token = $8 AND (owner_id IS NULL OR lease_expires_at < $5)
         ELSE (owner_id IS NULL OR lease_expires_at < $5 OR owner_id = $2 OR lease_token = $7) END
       RETURNING lease_token`,
      [runId, owner.processId, JSON.stringify(owner), now + leaseMs, now, options?.takeover === true, options?.fromToken ?? null, options?.ifToken ?? null],
    );
    return rows[0]?.lease_token;
  }

  async renewLeases(owner: RunOwner, entries: readonly LeaseEntry[], expiresAt: number): Promise<RenewResult> {
    await this.#ready('renew leases');
    // With the commits, on the writer's connection: its groups lock rows in one order, so a
    // renewal never deadlocks with them; one round trip renews them all.
    const kept = await Promise.all(
      entries.map((e) =>
        this.#writes.enqueue({ t: 'r', id: e.runId, tok: e.leaseToken, own: owner.processId, exp: expiresAt }, (outcome) => outcome[1] === true, 'could not renew leases'),
      ),
    );
    const renewed: string[] = [];
    const lost: string[] = [];
    entries.forEach(({ runId }, i) => (kept[i] === true ? renewed : lost).push(runId));
    return { renewed, lost };
  }

  async releaseLease(runId: string, owner: RunOwner, leaseToken: number): Promise<boolean> {
    const what = `release the lease of run ${JSON.stringify(runId)}`;
    const s = await this.#ready(what);
    const rows = await this.#query(
      what,
      `UPDATE ${s}.runs SET owner_id = NULL, owner = NULL, lease_expires_at = 0 WHERE run_id = $1 AND lease_token = $2 AND owner_id = $3 RETURNING 1`,
      [runId, leaseToken, owner.processId],
    );
    return rows.length === 1;
  }

  async putInput(runId: string, entry: InputEntry): Promise<boolean> {
    const what = `store input ${JSON.stringify(entry.key)} of run ${JSON.stringify(runId)}`;
    await this.#ready(what);
    const value = 'value' in entry ? encodeCompact(entry.value, `input ${runId}/${entry.key}`) : null;
    const stored = await this.#writes.enqueue(
      { t: 'i', id: runId, key: entry.key, outcome: entry.outcome, value, at: entry.at },
      (outcome) => {
        if (outcome[0] === 'nf') throw notFoundError(KIND, runId);
        return outcome[1] === true;
      },
      `could not ${what}`,
    );
    return stored === true;
  }

  async clearInputs(runId: string, keys: readonly string[]): Promise<void> {
    const what = `clear inputs of run ${JSON.stringify(runId)}`;
    await this.#ready(what);
    await this.#writes.enqueue(
      { t: 'x', id: runId, keys: [...keys] },
      (outcome) => {
        if (outcome[0] === 'nf') throw notFoundError(KIND, runId);
      },
      `could not ${what}`,
    );
  }

  async readInputs(runId: string): Promise<InputEntry[]> {
    const what = `read the inputs of run ${JSON.stringify(runId)}`;
    const s = await this.#ready(what);
    const rows = await this.#read<{ key: string; outcome: string; value: string | null; at: number }>(
      what,
      `SELECT key, outcome, value, at FROM ${s}.inputs WHERE run_id = $1 ORDER BY n`,
      [runId],
    );
    return rows.map((r) => {
      const key = `${runId}/${r.key}`;
      if (!INPUT_OUTCOMES.has(r.outcome) || typeof r.at !== 'number') throw corruptError(KIND, 'input', key);
      const outcome = r.outcome as InputEntry['outcome'];
      return r.value === null ? { key: r.key, outcome, at: r.at } : { key: r.key, outcome, value: decodeText('input', key, r.value), at: r.at };
    });
  }

  async prune(options: PruneOptions): Promise<number> {
    const s = await this.#ready('prune');
    let deleted = 0;
    for (;;) {
      // Rows another process is deleting are skipped, not waited for.
      const rows = await this.#query<{ n: number }>(
        'prune',
        `WITH doomed AS (
           SELECT run_id FROM ${s}.runs WHERE status = ANY($1::text[]) AND coalesce(ended_at, updated_at) < $2
           LIMIT ${PRUNE_SLICE} FOR UPDATE SKIP LOCKED
         ),
         events AS (DELETE FROM ${s}.events WHERE run_id IN (SELECT run_id FROM doomed)),
         outputs AS (DELETE FROM ${s}.outputs WHERE run_id IN (SELECT run_id FROM doomed)),
         steps AS (DELETE FROM ${s}.steps WHERE run_id IN (SELECT run_id FROM doomed)),
         inputs AS (DELETE FROM ${s}.inputs WHERE run_id IN (SELECT run_id FROM doomed)),
         runs AS (DELETE FROM ${s}.runs WHERE run_id IN (SELECT run_id FROM doomed) RETURNING 1)
         SELECT count(*)::integer AS n FROM runs`,
        [[...FINISHED], options.olderThan],
      );
      const n = rows[0]?.n ?? 0;
      deleted += n;
      if (n < PRUNE_SLICE) return deleted;
    }
  }

  checkStorable(value: unknown, what: string): void {
    encodeCompact(value, what);
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      // Pending writes go to the server before the connections close.
      await this.#opening?.catch(() => undefined);
      await this.#notices.close();
      await this.#writes.close();
      await this.connection.close();
    })();
    return this.#closing;
  }

  /** Opens (and migrates) on first use; returns the schema's quoted name for the statement. */
  async #ready(what: string): Promise<string> {
    if (this.#closing !== undefined) throw closedError(KIND, what);
    await this.open();
    return this.sql;
  }

  /** A statement that writes: sent once (whether a lost one was applied is unknown, so it is not sent again). */
  async #query<R extends object>(what: string, text: string, values: readonly unknown[]): Promise<R[]> {
    try {
      return await this.connection.query<R & QueryResultRow>(text, values);
    } catch (error) {
      throw wrapError(KIND, `could not ${what}`, error);
    }
  }

  /** A read: sent again while the server is away, until `reconnectFor` runs out. */
  async #read<R extends object>(what: string, text: string, values: readonly unknown[]): Promise<R[]> {
    try {
      return await this.connection.read<R & QueryResultRow>(text, values);
    } catch (error) {
      throw wrapError(KIND, `could not ${what}`, error);
    }
  }
}
