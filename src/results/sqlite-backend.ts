/** The embedded durable default: Keyv over @keyv/sqlite in WAL mode, opened on first use. */
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { Keyv, type DeserializedData } from 'keyv';
import { KeyvBackend } from './keyv-backend.js';

/** Options of a SQLite results store, validated and with defaults filled in. */
export interface SqliteOptions {
  readonly table: string;
  readonly synchronous: 'NORMAL' | 'FULL';
  readonly busyTimeout: number;
}

// Our values are already codec strings: store them as they are, without Keyv's JSON envelope.
const serialize = <Value>(data: DeserializedData<Value>): string => data.value as unknown as string;
const deserialize = <Value>(text: string): DeserializedData<Value> => ({ value: text as unknown as Value });

async function openSqlite(file: string, options: SqliteOptions): Promise<Keyv> {
  await mkdir(dirname(file), { recursive: true });
  // Loaded here so that users of the other backends never load the native sqlite3 module.
  const { KeyvSqlite } = await import('@keyv/sqlite');
  const store = new KeyvSqlite({ uri: `sqlite://${file}`, table: options.table, busyTimeout: options.busyTimeout });
  const keyv = new Keyv({ store, serialize, deserialize, throwOnErrors: true });
  try {
    await store.query('PRAGMA journal_mode=WAL');
    await store.query(`PRAGMA synchronous=${options.synchronous}`);
  } catch (error) {
    await store.close().catch(() => undefined);
    throw error;
  }
  return keyv;
}

/** A backend storing entries in the SQLite file `file`; nothing is opened until the first call. */
export function createSqliteBackend(file: string, options: SqliteOptions): KeyvBackend {
  return new KeyvBackend('sqlite', () => openSqlite(file, options));
}
