/** The options of `ResultsManager.memory`, `ResultsManager.sqlite` and `results.cleanup`. */
import { z } from 'zod';
import { ageOrDate, expecting, type OptionsOf } from '../util/parse.js';

// Each shape is a const of its own so its TSDoc reaches the published types.
const memoryResultsShape = {
  /** How many finished runs (completed, failed, cancelled) the run journal keeps; the oldest are forgotten. @default 10000 */
  keepFinishedRuns: expecting(
    z.number().refine((n) => n === Infinity || (Number.isInteger(n) && n >= 0)),
    'a whole number >= 0 or Infinity',
  ).default(10_000),
  /**
   * Refuse, with `WEIR_SERIALIZATION`, the values a durable store could not serialise (a function,
   * a symbol, a `WeakMap`, a `WeakSet`, a `WeakRef` or a `Promise`, anywhere inside), where a
   * durable store would: a step output (the step fails), a run's input (the run fails), heartbeat
   * details, an answer to `submitInput`, `set`. So tests on memory fail where SQLite would. Only
   * walks the value; it is still kept by reference, not copied. Turn it off to keep any value.
   * @default true
   */
  checkSerializable: z.boolean().default(true),
};

/** Options of `ResultsManager.memory`. */
export type MemoryResultsOptions = OptionsOf<typeof memoryResultsShape>;

/** The schema of `ResultsManager.memory`'s options; parsing fills in the defaults. */
export const memoryResultsSchema = z.strictObject(memoryResultsShape);

const sqliteResultsShape = {
  /** The table to keep results in: letters, digits and `_`, not starting with a digit. @default 'weir_results' */
  table: expecting(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/), 'a SQL identifier (letters, digits and _, not starting with a digit)').default('weir_results'),
  /**
   * SQLite's `synchronous` setting. `NORMAL` (with WAL) survives a process crash but may lose the
   * last writes on power loss; `FULL` also survives power loss, at the cost of an fsync per write.
   * @default 'NORMAL'
   */
  synchronous: z.enum(['NORMAL', 'FULL']).default('NORMAL'),
  /** How long to wait for another connection's lock before failing, in milliseconds. @default 5000 */
  busyTimeout: expecting(z.number().int().min(0), 'a whole number of milliseconds >= 0').default(5000),
};

/** Options of `ResultsManager.sqlite`. */
export type SqliteResultsOptions = OptionsOf<typeof sqliteResultsShape>;

/** The schema of `ResultsManager.sqlite`'s options; parsing fills in the defaults. */
export const sqliteResultsSchema = z.strictObject(sqliteResultsShape);

const postgresResultsShape = {
  /** The Postgres schema for weir's tables (runs, steps, outputs, events, inputs, results), created when missing. @default 'weir' */
  schema: expecting(z.string().regex(/^[a-z_][a-z0-9_]{0,62}$/), 'a lower-case SQL identifier (letters, digits and _, not starting with a digit, at most 63)').default('weir'),
  /**
   * The most connections of the pool made from a connection string; a pool you pass keeps its own
   * size, and needs three free. One connection writes, one listens for notices, the others read. @default 10
   */
  poolSize: expecting(z.number().int().min(3), 'a whole number >= 3 (one connection writes, one listens, the others read)').default(10),
  /**
   * How long a write keeps trying while the server is unreachable (a restart, a failover), in
   * milliseconds, before it fails with `WEIR_STORE`; runs pause meanwhile. @default 30000
   */
  reconnectFor: expecting(z.number().int().min(0), 'a whole number of milliseconds >= 0').default(30_000),
};

/** Options of `ResultsManager.postgres`. */
export type PostgresResultsOptions = OptionsOf<typeof postgresResultsShape>;

/** The schema of `ResultsManager.postgres`'s options; parsing fills in the defaults. */
export const postgresResultsSchema = z.strictObject(postgresResultsShape);

const cleanupShape = {
  /** Delete entries older than this: an age in milliseconds, or a Date written before which entries go. */
  olderThan: ageOrDate(),
};

/** Options of `ResultsManager.cleanup`. */
export type CleanupOptions = OptionsOf<typeof cleanupShape>;

/** The schema of `results.cleanup`'s options. */
export const cleanupSchema = z.strictObject(cleanupShape);
