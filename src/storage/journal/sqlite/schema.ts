/**
 * The SQLite journal's tables, and the migrations that bring a file made by an earlier version up
 * to them. The file format is the contract: a column is only ever added, never renamed or dropped.
 * @internal
 */
import type BetterSqlite3 from 'better-sqlite3';

type Database = BetterSqlite3.Database;

/** The tables as this version makes them in a new file. */
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
  input TEXT NOT NULL,
  version TEXT,
  priority INTEGER NOT NULL DEFAULT 0,
  concurrency_key TEXT
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
  first_seq INTEGER,
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

/** One change to a file made by an earlier version: idempotent, since `applied` is asked first. */
interface Migration {
  applied(db: Database): boolean;
  apply(db: Database): void;
}

function addColumn(table: string, column: string, declaration: string): Migration {
  return {
    applied: (db) => (db.pragma(`table_info(${table})`) as { name: string }[]).some((c) => c.name === column),
    apply: (db) => db.exec(`ALTER TABLE ${table} ADD COLUMN ${declaration}`),
  };
}

/** In the order they were made; a new one goes at the end. `SCHEMA` already has what they add. */
const MIGRATIONS: readonly Migration[] = [
  // Step records and outputs ride on a batch's last event.
  addColumn('weir_events', 'records', 'records TEXT'),
  // Table rows say when they were written, so they fold in order with the records on events.
  addColumn('weir_steps', 'seq', 'seq INTEGER NOT NULL DEFAULT 0'),
  addColumn('weir_outputs', 'seq', 'seq INTEGER NOT NULL DEFAULT 0'),
  // Who ran the run, kept once it ends.
  addColumn('weir_runs', 'ran_by', 'ran_by TEXT'),
  // Queued runs (ctx.enqueue) and flow versions.
  addColumn('weir_runs', 'version', 'version TEXT'),
  addColumn('weir_runs', 'priority', 'priority INTEGER NOT NULL DEFAULT 0'),
  addColumn('weir_runs', 'concurrency_key', 'concurrency_key TEXT'),
  // A commit's events in one row: the first's seq (the row's seq is the last's).
  addColumn('weir_events', 'first_seq', 'first_seq INTEGER'),
];

/**
 * Makes the tables a new file needs and brings an older file up to date. A file already current
 * takes no write lock; otherwise the migrations run, each checked again, in one write transaction,
 * so two processes opening an old file at once do not both apply one.
 */
export function migrate(db: Database): void {
  db.exec(SCHEMA);
  if (MIGRATIONS.every((m) => m.applied(db))) return;
  db.transaction(() => {
    for (const migration of MIGRATIONS) if (!migration.applied(db)) migration.apply(db);
  }).immediate();
}
