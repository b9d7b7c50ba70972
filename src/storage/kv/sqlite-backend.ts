/**
 * The embedded durable default: a `key, value` table in the SQLite file of the run journal, on the
 * journal's own better-sqlite3 connection (WAL mode), opened on first use.
 */
import type BetterSqlite3 from 'better-sqlite3';
import type { SqliteRunStore } from '../journal/sqlite/sqlite-run-store.js';
import type { ResultsBackend, StoredEntry } from './backend.js';
import { decodeRecord, encodeRecord } from '../codec.js';

/** Options of a SQLite results store, validated and with defaults filled in. */
export interface SqliteOptions {
  readonly table: string;
  readonly synchronous: 'NORMAL' | 'FULL';
  readonly busyTimeout: number;
}

// The same shape as the table @keyv/sqlite makes, so a file written by earlier versions still opens.
const schema = (table: string): string => `CREATE TABLE IF NOT EXISTS ${table} (key VARCHAR(255) PRIMARY KEY, value TEXT)`;

function prepare(db: BetterSqlite3.Database, table: string) {
  db.exec(schema(table));
  return {
    get: db.prepare(`SELECT value FROM ${table} WHERE key = ?`).pluck(),
    set: db.prepare(`INSERT OR REPLACE INTO ${table} (key, value) VALUES (?, ?)`),
    delete: db.prepare(`DELETE FROM ${table} WHERE key = ?`),
    has: db.prepare(`SELECT 1 FROM ${table} WHERE key = ?`).pluck(),
    all: db.prepare(`SELECT key, value FROM ${table}`),
    range: db.prepare(`SELECT key, value FROM ${table} WHERE key >= ? AND key < ?`),
  };
}

/** Puts the SQLite error code in the message, as the sqlite3 driver did, so it shows in the manager's error. */
function withCode(error: unknown): unknown {
  const code = (error as { code?: unknown } | null)?.code;
  if (error instanceof Error && typeof code === 'string' && !error.message.includes(code)) error.message = `${code}: ${error.message}`;
  return error;
}

/** A backend storing entries in a table of the journal's SQLite file; nothing is opened until the first call. */
export class SqliteBackend implements ResultsBackend {
  readonly kind = 'sqlite';
  get scope(): unknown {
    return this;
  }
  readonly #journal: SqliteRunStore;
  readonly #table: string;
  #statements: ReturnType<typeof prepare> | undefined;

  constructor(journal: SqliteRunStore, table: string) {
    this.#journal = journal;
    this.#table = table;
  }

  async #ready(): Promise<ReturnType<typeof prepare>> {
    if (this.#statements !== undefined) return this.#statements;
    try {
      const db = await this.#journal.database();
      this.#statements ??= prepare(db, this.#table);
      return this.#statements;
    } catch (error) {
      throw withCode(error);
    }
  }

  async open(): Promise<void> {
    await this.#ready();
  }

  async get(key: string): Promise<StoredEntry | undefined> {
    const text = (await this.#ready()).get.get(key) as string | undefined;
    return text === undefined ? undefined : decodeRecord(text, key).entry;
  }

  async set(key: string, entry: StoredEntry): Promise<void> {
    const text = encodeRecord(key, entry);
    const statements = await this.#ready();
    this.#journal.checkFile();
    statements.set.run(key, text);
  }

  async delete(key: string): Promise<boolean> {
    const statements = await this.#ready();
    this.#journal.checkFile();
    return statements.delete.run(key).changes > 0;
  }

  async has(key: string): Promise<boolean> {
    return (await this.#ready()).has.get(key) !== undefined;
  }

  async *entries(prefix: string): AsyncGenerator<[string, StoredEntry]> {
    const rows = (await this.#ready()).range.all(prefix, `${prefix}\uffff`) as { key: string; value: unknown }[];
    for (const row of rows) {
      try {
        yield [row.key, decodeRecord(row.value, row.key).entry];
      } catch {
        // a corrupt record: get() reports it
      }
    }
  }

  async deleteOlderThan(cutoff: number): Promise<number> {
    const statements = await this.#ready();
    this.#journal.checkFile();
    const old: string[] = [];
    for (const row of statements.all.iterate() as Iterable<{ key: string; value: unknown }>) {
      let writtenAt: number;
      try {
        writtenAt = decodeRecord(row.value, row.key).entry.writtenAt;
      } catch {
        continue; // a corrupt record has no age; get() reports it
      }
      if (writtenAt < cutoff) old.push(row.key);
    }
    let deleted = 0;
    for (const key of old) deleted += statements.delete.run(key).changes;
    return deleted;
  }

  // The connection is the journal's: it closes it.
  async close(): Promise<void> {}
}
