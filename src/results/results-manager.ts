/**
 * ResultsManager: the user's key-value store, over a memory, disk, SQLite or Keyv storage. The run
 * journal of that storage is the context's, reached through `runStoreOf`.
 */
import type { Keyv } from 'keyv';
import { z } from 'zod';
import { ErrorCode, FlowError, RetryableError } from '../errors/errors.js';
import { now } from '../util/clock.js';
import type { ResultsKind } from '../storage/kv/backend.js';
import type { RunStore } from '../storage/journal/run-store.js';
import type { Pool } from 'pg';
import { diskStorage, keyvStorage, memoryStorage, postgresStorage, sqliteStorage, type Storage } from '../storage/storage.js';
import { messageOf } from '../util/message-of.js';
import { describeValue, expecting, invalidOptions, parseOptions } from '../util/parse.js';
import {
  cleanupSchema as CleanupSchema,
  memoryResultsSchema as MemoryOptions,
  postgresResultsSchema as PostgresOptions,
  sqliteResultsSchema as SqliteOptions,
  type CleanupOptions,
  type MemoryResultsOptions,
  type PostgresResultsOptions,
  type SqliteResultsOptions,
} from './options.js';

export type { ResultsKind } from '../storage/kv/backend.js';
export type { CleanupOptions, MemoryResultsOptions, PostgresResultsOptions, SqliteResultsOptions } from './options.js';

const path = expecting(z.string().min(1), 'a non-empty path');

const DiskArgs = z.strictObject({ dir: path });
const SqliteArgs = z.strictObject({ file: path, options: SqliteOptions.prefault({}) });
/** A node-postgres `Pool`, recognised by its shape so a second copy of `pg` is accepted too. */
function isPool(value: unknown): value is Pool {
  const v = value as { query?: unknown; connect?: unknown; end?: unknown } | null;
  return typeof v === 'object' && v !== null && typeof v.query === 'function' && typeof v.connect === 'function' && typeof v.end === 'function';
}

const PostgresArgs = z.strictObject({
  target: z.union([expecting(z.string().regex(/^postgres(ql)?:\/\//), 'a postgres:// connection string or a pg Pool'), z.custom<Pool>(isPool, 'a postgres:// connection string or a pg Pool')]),
  options: PostgresOptions.prefault({}),
});
/**
 * A Keyv instance, recognised by its shape: keyv is then loaded only by whoever builds one (and a
 * second copy of keyv is accepted too). A Map has most of these methods, but not `disconnect`.
 */
function isKeyv(value: unknown): value is Keyv {
  const v = value as Partial<Record<'get' | 'set' | 'delete' | 'has' | 'clear' | 'disconnect', unknown>> | null;
  return (
    typeof v === 'object' &&
    v !== null &&
    typeof v.get === 'function' &&
    typeof v.set === 'function' &&
    typeof v.delete === 'function' &&
    typeof v.has === 'function' &&
    typeof v.clear === 'function' &&
    typeof v.disconnect === 'function'
  );
}

const KeyvArgs = z.strictObject({ keyv: z.custom<Keyv>(isKeyv, 'a Keyv instance') });

/** Reads a manager's storage; set by the class's static block, the one place that can read its private field. */
let storageOf: (results: ResultsManager) => Storage;

/**
 * The run journal that goes with a results manager: a `MemoryRunStore` for memory, a
 * `SqliteRunStore` on the same file for SQLite, a `KvRunStore` over the same directory or Keyv for
 * disk and Keyv. Closed with the manager.
 * @internal
 */
export function runStoreOf(results: ResultsManager): RunStore {
  return storageOf(results).journal;
}

/**
 * Stores step outputs and run records by key through a pluggable backend, serialising values so
 * Dates, Maps, Sets, BigInts and Buffers survive, and deletes them by age.
 */
export class ResultsManager {
  /** Which backend this manager stores values in. */
  readonly kind: ResultsKind;
  /** Whether values survive the process: false for memory, true for the others. */
  readonly durable: boolean;
  readonly #storage: Storage;
  #closing: Promise<void> | undefined;

  static {
    storageOf = (results) => results.#storage;
  }

  private constructor(storage: Storage) {
    this.#storage = storage;
    this.kind = storage.kind;
    this.durable = storage.durable;
  }

  /**
   * A store in a Map in this process: fastest, values kept by reference (not copied), lost on exit.
   * Its run journal keeps the `keepFinishedRuns` most recent finished runs and forgets older ones,
   * so a long-lived process does not grow without end. Values a durable store could not serialise
   * are refused as it would refuse them, unless `checkSerializable` is `false`.
   * @throws ValidationError `WEIR_INVALID_OPTIONS` for a bad option.
   * @example
   * const results = ResultsManager.memory({ keepFinishedRuns: 100 });
   */
  static memory(options: MemoryResultsOptions = {}): ResultsManager {
    return new ResultsManager(memoryStorage(parseOptions(MemoryOptions, options, 'ResultsManager.memory()')));
  }

  /**
   * A store of one file per key under `dir`, created on first write; each write is atomic.
   * @throws ValidationError `WEIR_INVALID_OPTIONS` when `dir` is not a non-empty string.
   * @example
   * const results = ResultsManager.disk('.weir/results');
   */
  static disk(dir: string): ResultsManager {
    return new ResultsManager(diskStorage(parseOptions(DiskArgs, { dir }, 'ResultsManager.disk()').dir));
  }

  /**
   * A store in the SQLite file `file` (better-sqlite3, WAL mode), opened on first use; its
   * directory is created when missing. Values and the run journal share the file and one connection.
   * @throws ValidationError `WEIR_INVALID_OPTIONS` when `file` is empty or an option is invalid or unknown.
   * @example
   * const results = ResultsManager.sqlite('.weir/runs.db', { synchronous: 'FULL' });
   */
  static sqlite(file: string, options?: SqliteResultsOptions): ResultsManager {
    const args = parseOptions(SqliteArgs, { file, options }, 'ResultsManager.sqlite()');
    return new ResultsManager(sqliteStorage(args.file, Object.freeze(args.options)));
  }

  /**
   * A store in a Postgres database through node-postgres (`npm install pg`), shared by any number
   * of processes on any hosts: runs, steps, events, answers and values in tables of the schema
   * `options.schema`, created and migrated on first use. Pass a connection string (the store makes
   * its own pool of `poolSize` connections and ends it on `close()`) or a `pg.Pool` you own (left
   * open on `close()`; it needs three free connections: one writes, one listens, one reads). See `docs/scale-out.md`.
   * @throws ValidationError `WEIR_INVALID_OPTIONS` for something that is neither a postgres:// URL nor a Pool, or a bad option.
   * @example
   * const results = ResultsManager.postgres('postgres://weir@db.internal/app', { schema: 'weir', poolSize: 20 });
   */
  static postgres(urlOrPool: string | Pool, options?: PostgresResultsOptions): ResultsManager {
    const args = parseOptions(PostgresArgs, { target: urlOrPool, options }, 'ResultsManager.postgres()');
    return new ResultsManager(postgresStorage(args.target, Object.freeze(args.options)));
  }

  /**
   * A store in any Keyv instance (Redis, Postgres, ...). The manager takes it over: `close()`
   * disconnects it. Create it with `throwOnErrors: true` so read errors are not reported as misses.
   * @throws ValidationError `WEIR_INVALID_OPTIONS` when `keyv` is not a Keyv instance.
   * @example
   * const results = ResultsManager.keyv(new Keyv(new KeyvRedis('redis://localhost'), { throwOnErrors: true }));
   */
  static keyv(keyv: Keyv): ResultsManager {
    return new ResultsManager(keyvStorage(parseOptions(KeyvArgs, { keyv }, 'ResultsManager.keyv()').keyv));
  }

  /**
   * Opens the store now rather than on first use (a SQLite file, a directory, a Keyv connection),
   * so a bad path, a file that is not a database or a directory that cannot be written fails here,
   * with the reason. Safe to call more than once; a failed open is tried again by the next call.
   * @throws FlowError `WEIR_STORE` with the backend's reason; `WEIR_STORE_CLOSED` after `close()`.
   * @example
   * const results = ResultsManager.sqlite('.weir/runs.db');
   * await results.ready(); // fails here if the file cannot be used
   */
  async ready(): Promise<void> {
    if (this.#closing !== undefined) throw this.#closed('open');
    await this.#storage.journal.open();
    try {
      await this.#storage.backend.open();
    } catch (error) {
      throw this.#wrap('could not open the store', error);
    }
  }

  /**
   * Reads the value stored under `key`, or `undefined` when there is none.
   * @throws ValidationError `WEIR_INVALID_OPTIONS` for an empty key; FlowError `WEIR_CORRUPT_RECORD`
   * when the stored record cannot be read, `WEIR_STORE` when the backend fails, `WEIR_STORE_CLOSED` after `close()`.
   */
  async get<T = unknown>(key: string): Promise<T | undefined> {
    this.#check('get', key);
    try {
      return (await this.#storage.backend.get(key))?.value as T | undefined;
    } catch (error) {
      throw this.#wrap(`could not read ${JSON.stringify(key)}`, error);
    }
  }

  /**
   * Stores `value` under `key`, replacing any value there.
   * @throws ValidationError `WEIR_INVALID_OPTIONS` for an empty key; FlowError `WEIR_SERIALIZATION`
   * when the value cannot be serialised, `WEIR_STORE` when the backend fails, `WEIR_STORE_CLOSED` after `close()`.
   */
  async set(key: string, value: unknown): Promise<void> {
    this.#check('set', key);
    try {
      await this.#storage.backend.set(key, { value, writtenAt: now() });
    } catch (error) {
      throw this.#wrap(`could not write ${JSON.stringify(key)}`, error);
    }
  }

  /**
   * Deletes the value under `key`; resolves to whether there was one.
   * @throws ValidationError `WEIR_INVALID_OPTIONS` for an empty key; FlowError `WEIR_STORE` when the
   * backend fails, `WEIR_STORE_CLOSED` after `close()`.
   */
  async delete(key: string): Promise<boolean> {
    this.#check('delete', key);
    try {
      return await this.#storage.backend.delete(key);
    } catch (error) {
      throw this.#wrap(`could not delete ${JSON.stringify(key)}`, error);
    }
  }

  /**
   * Whether a value is stored under `key`.
   * @throws ValidationError `WEIR_INVALID_OPTIONS` for an empty key; FlowError `WEIR_STORE` when the
   * backend fails, `WEIR_STORE_CLOSED` after `close()`.
   */
  async has(key: string): Promise<boolean> {
    this.#check('has', key);
    try {
      return await this.#storage.backend.has(key);
    } catch (error) {
      throw this.#wrap(`could not read ${JSON.stringify(key)}`, error);
    }
  }

  /**
   * Deletes every entry written before the cutoff; resolves to how many were deleted. Records that
   * cannot be read are left alone (`get` reports them).
   * @throws ValidationError `WEIR_INVALID_OPTIONS` for a negative age or an invalid Date; FlowError
   * `WEIR_UNSUPPORTED` for a Keyv store that cannot be iterated, `WEIR_STORE` when the backend
   * fails, `WEIR_STORE_CLOSED` after `close()`.
   */
  async cleanup(options: CleanupOptions): Promise<number> {
    if (this.#closing !== undefined) throw this.#closed('clean up');
    const { olderThan } = parseOptions(CleanupSchema, options, `results (${this.kind}): cleanup`);
    const cutoff = olderThan instanceof Date ? olderThan.getTime() : now() - olderThan;
    try {
      return await this.#storage.backend.deleteOlderThan(cutoff);
    } catch (error) {
      throw this.#wrap('cleanup failed', error);
    }
  }

  /** Releases the backend's handles (files, database connections). Idempotent: later calls resolve at once. */
  close(): Promise<void> {
    this.#closing ??= this.#storage.close();
    return this.#closing;
  }

  #check(operation: string, key: unknown): void {
    if (this.#closing !== undefined) throw this.#closed(`${operation} ${describeValue(key)}`);
    if (typeof key === 'string' && key.length > 0) return;
    throw invalidOptions(`results (${this.kind}): ${operation}`, [
      { code: typeof key === 'string' ? 'too_small' : 'invalid_type', path: ['key'], expected: 'a non-empty string', got: describeValue(key) },
    ]);
  }

  #closed(what: string): FlowError {
    return new FlowError(`results (${this.kind}): cannot ${what}: the store is closed`, { code: ErrorCode.STORE_CLOSED });
  }

  #wrap(what: string, error: unknown): FlowError {
    if (error instanceof FlowError) return error;
    // A backend failure is usually transient (a busy file, a lost connection): the retry policy decides.
    return new RetryableError(`results (${this.kind}): ${what}: ${messageOf(error)}`, { code: ErrorCode.STORE, cause: error });
  }
}
