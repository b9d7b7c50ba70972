/**
 * A storage: the key-value backend of a store and the run journal that goes with it, made as a
 * pair so they share what they should (the SQLite file and its connection, the directory, the Keyv)
 * and close in the right order. Options arrive already validated: the results layer checks them.
 * @internal
 */
import { join } from 'node:path';
import type { Keyv } from 'keyv';
import { KvRunStore } from './journal/kv-run-store.js';
import { MemoryRunStore } from './journal/memory-run-store.js';
import type { PostgresTarget } from './journal/postgres/connection.js';
import { PostgresRunStore, type PostgresStoreOptions } from './journal/postgres/postgres-run-store.js';
import type { RunStore } from './journal/run-store.js';
import { SqliteRunStore } from './journal/sqlite/sqlite-run-store.js';
import type { ResultsBackend, ResultsKind } from './kv/backend.js';
import { DiskBackend } from './kv/disk-backend.js';
import { KeyvBackend } from './kv/keyv-backend.js';
import { MemoryBackend } from './kv/memory-backend.js';
import { PostgresBackend } from './kv/postgres-backend.js';
import { SqliteBackend, type SqliteOptions } from './kv/sqlite-backend.js';

/** A key-value backend and its run journal. */
export interface Storage {
  /** Which backend stores the values. */
  readonly kind: ResultsKind;
  /** Whether values and runs survive the process: false for memory only. */
  readonly durable: boolean;
  readonly backend: ResultsBackend;
  readonly journal: RunStore;
  /** Closes the journal, which finishes its pending commits (they may need the backend), then the backend. */
  close(): Promise<void>;
}

/** Options of `memoryStorage`, with defaults filled in. */
export interface MemoryStorageOptions {
  /** How many finished runs the journal keeps; the oldest are forgotten. */
  readonly keepFinishedRuns: number;
  /** Refuse the values a durable store could not serialise. */
  readonly checkSerializable: boolean;
}

function storage(backend: ResultsBackend, journal: RunStore): Storage {
  return Object.freeze({
    kind: backend.kind,
    durable: backend.kind !== 'memory',
    backend,
    journal,
    close: () => journal.close().finally(() => backend.close()),
  });
}

/** Values in a Map, runs in a `MemoryRunStore`: nothing survives the process. */
export function memoryStorage(options: MemoryStorageOptions): Storage {
  const check = options.checkSerializable;
  return storage(new MemoryBackend(check), new MemoryRunStore({ keepFinished: options.keepFinishedRuns, checkSerializable: check }));
}

/** Values in one file per key under `dir`; runs in `dir/journal`, their records apart, so listing runs reads only them. */
export function diskStorage(dir: string): Storage {
  const journal = new KvRunStore({
    runs: new DiskBackend(join(dir, 'journal', 'runs')),
    data: new DiskBackend(join(dir, 'journal', 'data')),
  });
  return storage(new DiskBackend(dir), journal);
}

/** Values in a table of the SQLite file `file`, runs in its journal tables: one file, one connection. */
export function sqliteStorage(file: string, options: SqliteOptions): Storage {
  const journal = new SqliteRunStore(file, { synchronous: options.synchronous, busyTimeout: options.busyTimeout });
  return storage(new SqliteBackend(journal, options.table), journal);
}

/** Values and runs in one Keyv store, which the storage takes over: closing it disconnects the Keyv. */
export function keyvStorage(keyv: Keyv): Storage {
  const backend = new KeyvBackend('keyv', keyv);
  return storage(backend, new KvRunStore({ runs: backend }));
}

/** Values and runs in a schema of a Postgres database: one pool, shared by the journal and the values. */
export function postgresStorage(target: PostgresTarget, options: PostgresStoreOptions): Storage {
  const journal = new PostgresRunStore(target, options);
  return storage(new PostgresBackend(journal), journal);
}
