/**
 * The Postgres store's connections: a pool for reads and lease statements (its own, made from a
 * URL, or the user's), one client held for the write queue, one for LISTEN; `pg` loaded on first
 * use, so users of the other stores never load it; and which errors mean the server went away.
 * @internal
 */
import type { ClientBase, Pool, PoolClient, QueryResultRow } from 'pg';
import { ErrorCode, FlowError } from '../../../errors/errors.js';
import { clearRealTimer, setRealTimer } from '../../../util/clock.js';
import { messageOf } from '../../../util/message-of.js';

/** Where the store connects: a connection string, or a pool the user owns. */
export type PostgresTarget = string | Pool;

/** The `pg` module's parts the store uses. */
type PgModule = typeof import('pg');

/** `int8` columns (timestamps in ms, lease tokens) read as numbers, which hold them exactly below 2^53. */
const INT8 = 20;

let loading: Promise<PgModule> | undefined;

const CONNECT_TIMEOUT_MS = 10_000;
const FIRST_BACKOFF_MS = 50;
const MAX_BACKOFF_MS = 1000;

/** Waits `ms` on the host's own timers (fake timers never hold a reconnect back), or until `signal` aborts. */
function pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearRealTimer(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setRealTimer(done, ms, { unref: true });
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** Loads `pg`. @throws FlowError `WEIR_STORE` saying how to install it when it is missing. */
export function loadPg(): Promise<PgModule> {
  loading ??= import('pg').then(
    (module) => (module as unknown as { default?: PgModule }).default ?? module,
    (error: unknown) => {
      loading = undefined;
      throw new FlowError(`run store (postgres): the "pg" package is needed for a Postgres store: npm install pg (${messageOf(error)})`, {
        code: ErrorCode.STORE,
        cause: error,
      });
    },
  );
  return loading;
}

/** SQLSTATE classes and codes that mean the connection or the server is gone, or the transaction may simply be tried again. */
const TRANSIENT_STATES = new Set(['57P01', '57P02', '57P03', '40001', '40P01', '53300']);
const TRANSIENT_ERRNOS = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENOTCONN', 'EAI_AGAIN']);

/** Whether an error means the server or the connection went away (or a deadlock): the same write may go again. */
export function isTransient(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && (code.startsWith('08') || TRANSIENT_STATES.has(code) || TRANSIENT_ERRNOS.has(code))) return true;
  const message = messageOf(error);
  return /Connection terminated|connection is closed|Client has encountered a connection error|terminating connection/i.test(message);
}

/** The store's connections. */
export class PgConnection {
  readonly #target: PostgresTarget;
  readonly #poolSize: number;
  #pg: PgModule | undefined;
  #pool: Pool | undefined;
  #types: { getTypeParser: (oid: number, format?: string) => (text: string) => unknown } | undefined;

  /** How long a write or read goes again while the server is unreachable, in milliseconds. */
  readonly reconnectFor: number;
  #closed = false;

  constructor(target: PostgresTarget, poolSize: number, reconnectFor: number) {
    this.#target = target;
    this.#poolSize = poolSize;
    this.reconnectFor = reconnectFor;
  }

  /** Whether the pool is the store's own (made from a URL), to be ended on close. */
  get ownsPool(): boolean {
    return typeof this.#target === 'string';
  }

  /** Loads `pg` and makes the pool; safe to call again. @throws FlowError `WEIR_STORE_CLOSED` after `close()`. */
  async open(): Promise<Pool> {
    if (this.#closed) throw new FlowError('run store (postgres): the store is closed', { code: ErrorCode.STORE_CLOSED });
    if (this.#pool !== undefined) return this.#pool;
    const pg = (this.#pg ??= await loadPg());
    const base = pg.types;
    this.#types ??= { getTypeParser: (oid, format) => (oid === INT8 ? Number : base.getTypeParser(oid, format as 'text')) as (text: string) => unknown };
    if (this.#pool !== undefined) return this.#pool;
    if (typeof this.#target === 'string') {
      // A server that does not answer fails a connection in 10 s, rather than leaving its caller waiting.
      const pool = new pg.Pool({ connectionString: this.#target, max: this.#poolSize, application_name: 'weir', connectionTimeoutMillis: CONNECT_TIMEOUT_MS });
      // An idle client that loses its server must not crash the process: the next query reconnects.
      pool.on('error', () => undefined);
      this.#pool = pool;
    } else {
      this.#pool = this.#target;
    }
    return this.#pool;
  }

  /** Runs one statement on any pooled connection. */
  async query<R extends QueryResultRow>(text: string, values: readonly unknown[] = []): Promise<R[]> {
    const pool = await this.open();
    const result = await pool.query<R>({ text, values: values as unknown[], types: this.#types! });
    return result.rows;
  }

  /**
   * Runs a read (a statement that changes nothing, so it may go again), again while the server is
   * unreachable (see `retrying`).
   */
  read<R extends QueryResultRow>(text: string, values: readonly unknown[] = []): Promise<R[]> {
    return this.retrying(() => this.query<R>(text, values));
  }

  /**
   * Runs `attempt`, and again after a backoff while it fails because the server is unreachable,
   * until `reconnectFor` runs out, the store closes or `signal` aborts; then throws the last error.
   * `beforeRetry` hears of each attempt made again.
   */
  async retrying<T>(attempt: () => Promise<T>, options: { readonly signal?: AbortSignal; readonly beforeRetry?: () => void } = {}): Promise<T> {
    const started = performance.now();
    const { signal, beforeRetry } = options;
    for (let backoff = FIRST_BACKOFF_MS; ; backoff = Math.min(MAX_BACKOFF_MS, backoff * 2)) {
      try {
        return await attempt();
      } catch (error) {
        const stopped = (): boolean => this.#closed || signal?.aborted === true || performance.now() - started >= this.reconnectFor;
        if (!isTransient(error) || stopped()) throw error;
        await pause(backoff, signal);
        if (stopped()) throw error;
        beforeRetry?.();
      }
    }
  }

  /** Runs one statement on a given client, reading `int8` as numbers. */
  async queryOn<R extends QueryResultRow>(client: ClientBase, text: string, values: readonly unknown[] = [], name?: string): Promise<R[]> {
    const result = await client.query<R>({ text, values: values as unknown[], types: this.#types!, ...(name === undefined ? {} : { name }) });
    return result.rows;
  }

  /** A client of the pool held until `release`d: for the write queue, LISTEN and migrations. */
  async client(): Promise<PoolClient> {
    const pool = await this.open();
    const client = await pool.connect();
    // A held client that loses its server reports it here; its next query fails and the holder reconnects.
    client.on('error', () => undefined);
    return client;
  }

  /** Ends the pool if it is the store's own; a user's pool is left open. */
  async close(): Promise<void> {
    this.#closed = true;
    const pool = this.#pool;
    this.#pool = undefined;
    if (pool !== undefined && this.ownsPool) await pool.end();
  }
}
