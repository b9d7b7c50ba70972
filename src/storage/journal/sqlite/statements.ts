/**
 * Every SQL statement the SQLite journal runs, prepared once per connection: the fixed ones, and
 * those whose shape varies (run patches, run listings), made on first use
 * and kept.
 * @internal
 */
import type BetterSqlite3 from 'better-sqlite3';
import type { ListRunsQuery, RunPatch } from '../run-store.js';
import { decodeCursor } from '../store-support.js';
import { PATCH_COLUMNS } from '../store-support.js';
import { RELEASE_KEY, type EncodedEvents } from './rows.js';

type Database = BetterSqlite3.Database;
type Statement = BetterSqlite3.Statement;

/** Runs deleted per transaction of a prune, so a big prune never holds the write lock for long. */
export const PRUNE_SLICE = 500;

/** Listing statements kept; a query shape beyond them is prepared on each call. */
const LISTS_KEPT = 64;

/** A run row's current last seq, as the `cur_seq` column of a `weir_runs` query. */
export const CURRENT_SEQ = 'coalesce((SELECT max(e.seq) FROM weir_events e WHERE e.run_id = weir_runs.run_id), 0) AS cur_seq';

/** The statements whose SQL never varies, by name. */
const FIXED = {
  insertRun: `INSERT INTO weir_runs (run_id, flow, fingerprint, mode, human_in_loop, status, created_at, updated_at, ended_at, error,
      output, retry_of, retried_by, ran_by, owner_id, owner, lease_token, lease_expires_at, recoveries, last_seq, input, version, priority, concurrency_key)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
     ON CONFLICT (run_id) DO NOTHING`,
  // The run's last seq is its last event's: one descent of the events' primary key.
  runHead: 'SELECT lease_token, coalesce((SELECT max(seq) FROM weir_events WHERE run_id = ?), 0) AS last_seq FROM weir_runs WHERE run_id = ?',
  runSeq: 'SELECT coalesce((SELECT max(seq) FROM weir_events WHERE run_id = ?), 0) FROM weir_runs WHERE run_id = ?',
  selectRun: `SELECT *, ${CURRENT_SEQ} FROM weir_runs WHERE run_id = ?`,
  selectRecords: 'SELECT seq, records FROM weir_events WHERE run_id = ? AND records IS NOT NULL ORDER BY seq',
  selectSteps: 'SELECT step, data, seq FROM weir_steps WHERE run_id = ?',
  selectOutputs: 'SELECT step, value, seq FROM weir_outputs WHERE run_id = ?',
  selectEvents: 'SELECT seq, first_seq, data FROM weir_events WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?',
  insertEvents: 'INSERT INTO weir_events (run_id, seq, first_seq, data, records) VALUES (?, ?, ?, ?, ?)',
  upsertStep: 'INSERT OR REPLACE INTO weir_steps (run_id, step, data, seq) VALUES (?, ?, ?, ?)',
  upsertOutput: 'INSERT OR REPLACE INTO weir_outputs (run_id, step, value, seq) VALUES (?, ?, ?, ?)',
  deleteOutput: 'DELETE FROM weir_outputs WHERE run_id = ? AND step = ?',
  runExists: 'SELECT 1 FROM weir_runs WHERE run_id = ?',
  // First come first served: a second entry for the key changes nothing.
  insertInput: 'INSERT INTO weir_inputs (run_id, key, outcome, value, at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (run_id, key) DO NOTHING',
  // Entries of a run are only ever deleted with it, so rowids keep their insertion order.
  deleteInput: 'DELETE FROM weir_inputs WHERE run_id = ? AND key = ?',
  selectInputs: 'SELECT key, outcome, value, at FROM weir_inputs WHERE run_id = ? ORDER BY rowid',
  acquire: `UPDATE weir_runs SET
       lease_token = lease_token + (CASE WHEN :takeover = 1 OR :ifToken IS NOT NULL OR owner_id IS NOT :ownerId THEN 1 ELSE 0 END),
       recoveries = recoveries + :takeover,
       owner_id = :ownerId, owner = :owner, lease_expires_at = :expires
     WHERE run_id = :runId AND CASE WHEN :ifToken IS NOT NULL
       THEN lease_token = :ifToken AND (owner_id IS NULL OR lease_expires_at < :now)
       ELSE (owner_id IS NULL OR lease_expires_at < :now OR owner_id = :ownerId OR lease_token = :fromToken) END
     RETURNING lease_token`,
  renew: 'UPDATE weir_runs SET lease_expires_at = ? WHERE run_id = ? AND lease_token = ? AND owner_id = ?',
  release: 'UPDATE weir_runs SET owner_id = NULL, owner = NULL, lease_expires_at = 0 WHERE run_id = ? AND lease_token = ? AND owner_id = ?',
  prunable: `SELECT run_id FROM weir_runs WHERE status IN (?, ?, ?) AND coalesce(ended_at, updated_at) < ? LIMIT ${PRUNE_SLICE}`,
  deleteEvents: 'DELETE FROM weir_events WHERE run_id = ?',
  deleteOutputs: 'DELETE FROM weir_outputs WHERE run_id = ?',
  deleteSteps: 'DELETE FROM weir_steps WHERE run_id = ?',
  deleteInputs: 'DELETE FROM weir_inputs WHERE run_id = ?',
  deleteRun: 'DELETE FROM weir_runs WHERE run_id = ? AND status IN (?, ?, ?)',
} as const;

/** The fixed statements that return their first column's value rather than a row. */
const PLUCKED: ReadonlySet<keyof typeof FIXED> = new Set(['runSeq', 'runExists']);

/** The fixed statements of one connection, by name. */
export type FixedStatements = Readonly<Record<keyof typeof FIXED, Statement>>;

function prepareFixed(db: Database): FixedStatements {
  // Built in one go, so the object keeps fast properties for the lookups of every commit.
  const entries = (Object.entries(FIXED) as [keyof typeof FIXED, string][]).map(([name, sql]) => {
    const statement = db.prepare(sql);
    return [name, PLUCKED.has(name) ? statement.pluck() : statement] as const;
  });
  return Object.fromEntries(entries) as FixedStatements;
}

/** The statements of one connection. */
export class Statements {
  readonly fixed: FixedStatements;
  readonly #db: Database;
  readonly #patches = new Map<string, Statement>();
  readonly #lists = new Map<string, Statement>();

  constructor(db: Database) {
    this.#db = db;
    this.fixed = prepareFixed(db);
  }

  /** Inserts a write's events: one row, if it has any (see `EncodedEvents`). */
  insertEvents(events: EncodedEvents): void {
    if (events !== undefined) this.fixed.insertEvents.run(events);
  }

  /** `UPDATE` of the run row with a patch (see `EncodedCommit.patchKey`), fenced by its lease token. */
  patch(patchKey: string): Statement {
    let statement = this.#patches.get(patchKey);
    if (statement === undefined) {
      const release = patchKey.endsWith(RELEASE_KEY);
      const keys = release ? patchKey.slice(0, -RELEASE_KEY.length) : patchKey;
      const columns = keys.split(',').map((k) => `${PATCH_COLUMNS[k as keyof RunPatch]} = ?`);
      if (release) columns.push('owner_id = NULL', 'owner = NULL', 'lease_expires_at = 0');
      statement = this.#db.prepare(`UPDATE weir_runs SET ${columns.join(', ')} WHERE run_id = ? AND lease_token = ?`);
      this.#patches.set(patchKey, statement);
    }
    return statement;
  }

  /** A listing query, by its SQL. */
  list(sql: string): Statement {
    let statement = this.#lists.get(sql);
    if (statement === undefined) {
      statement = this.#db.prepare(sql);
      if (this.#lists.size < LISTS_KEPT) this.#lists.set(sql, statement);
    }
    return statement;
  }
}

/** The SQL and parameters of a `listRuns` page: one row more than the limit, so the page knows it has a next. */
export function listQuery(query: ListRunsQuery): { sql: string; params: unknown[] } {
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
    const cursor = decodeCursor('sqlite', query.before);
    where.push('(created_at < ? OR (created_at = ? AND run_id < ?))');
    params.push(cursor.createdAt, cursor.createdAt, cursor.runId);
  }
  const sql = `SELECT *, ${CURRENT_SEQ} FROM weir_runs${where.length > 0 ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY created_at DESC, run_id DESC LIMIT ?`;
  return { sql, params };
}
