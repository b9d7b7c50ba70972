/**
 * Values in the `results` table of the Postgres journal's schema, on the journal's pool; the
 * table is made by the journal's migrations, on first use.
 */
import type { PostgresRunStore } from '../journal/postgres/postgres-run-store.js';
import type { ResultsBackend, StoredEntry } from './backend.js';
import { decodeRecord, encodeRecord } from '../codec.js';

/** Rows read per page when listing or cleaning up, so a big table never sits in memory at once. */
const PAGE = 1000;

/** A backend storing entries in a table of the journal's Postgres schema. */
export class PostgresBackend implements ResultsBackend {
  readonly kind = 'postgres';
  readonly #journal: PostgresRunStore;

  constructor(journal: PostgresRunStore) {
    this.#journal = journal;
  }

  get scope(): unknown {
    return this;
  }

  async #table(): Promise<string> {
    await this.#journal.open();
    return `${this.#journal.sql}.results`;
  }

  async open(): Promise<void> {
    await this.#table();
  }

  async get(key: string): Promise<StoredEntry | undefined> {
    const rows = await this.#journal.connection.read<{ value: string }>(`SELECT value FROM ${await this.#table()} WHERE key = $1`, [key]);
    return rows[0] === undefined ? undefined : decodeRecord(rows[0].value, key).entry;
  }

  async set(key: string, entry: StoredEntry): Promise<void> {
    const text = encodeRecord(key, entry);
    await this.#journal.connection.query(
      `INSERT INTO ${await this.#table()} (key, value, written_at) VALUES ($1, $2, $3) ON CONFLICT (key) DO UPDATE SET value = excluded.value, written_at = excluded.written_at`,
      [key, text, entry.writtenAt],
    );
  }

  async delete(key: string): Promise<boolean> {
    return (await this.#journal.connection.query(`DELETE FROM ${await this.#table()} WHERE key = $1 RETURNING 1`, [key])).length > 0;
  }

  async has(key: string): Promise<boolean> {
    return (await this.#journal.connection.read(`SELECT 1 FROM ${await this.#table()} WHERE key = $1`, [key])).length > 0;
  }

  async *entries(prefix: string): AsyncGenerator<[string, StoredEntry]> {
    const table = await this.#table();
    let after = prefix;
    let first = true;
    for (;;) {
      const rows = await this.#journal.connection.read<{ key: string; value: string }>(
        `SELECT key, value FROM ${table} WHERE key ${first ? '>=' : '>'} $1 AND key < $2 ORDER BY key LIMIT ${PAGE}`,
        [after, `${prefix}\uffff`],
      );
      first = false;
      for (const row of rows) {
        try {
          yield [row.key, decodeRecord(row.value, row.key).entry];
        } catch {
          // a corrupt record: get() reports it
        }
      }
      if (rows.length < PAGE) return;
      after = rows[rows.length - 1]!.key;
    }
  }

  async deleteOlderThan(cutoff: number): Promise<number> {
    const rows = await this.#journal.connection.query<{ n: number }>(
      `WITH gone AS (DELETE FROM ${await this.#table()} WHERE written_at < $1 RETURNING 1) SELECT count(*)::integer AS n FROM gone`,
      [cutoff],
    );
    return rows[0]?.n ?? 0;
  }

  // The pool is the journal's: it closes it.
  async close(): Promise<void> {}
}
