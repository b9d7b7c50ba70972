/**
 * Group commit on Postgres: the writes queued while the previous group is on the wire go together
 * in one call of the write function (one round trip, one transaction), each settling its own
 * promise. A group is ordered by run (stably, so each run's writes keep their order), so two
 * processes' groups lock rows in the same order and never deadlock. When the connection drops, the
 * group goes again, marked as a retry, on a new connection until `reconnectFor` runs out; when the
 * server refuses the group, each write goes alone, so one bad write fails alone.
 * @internal
 */
import type { PoolClient } from 'pg';
import { ErrorCode, FlowError } from '../../../errors/errors.js';
import { closedError, wrapError } from '../store-support.js';
import { isTransient, type PgConnection } from './connection.js';

/** A write as the write function takes it (see `schema`'s `apply`). */
export interface WriteItem {
  /** `c` create, `m` commit, `i` input entry, `x` input clear, `r` lease renewal. */
  readonly t: 'c' | 'm' | 'i' | 'x' | 'r';
  readonly id: string;
  retry?: true;
  readonly [field: string]: unknown;
}

/** One write's outcome from the write function: `["ok"]`, `["ok", stored]`, `["nf"]`, `["conflict"]`, `["lease", token]`, `["seq", lastSeq]`. */
export type Outcome = readonly [string, unknown?];

interface Pending {
  readonly item: WriteItem;
  /** Turns the outcome into what the caller is told, or throws the refusal. */
  readonly settle: (outcome: Outcome) => unknown;
  readonly failure: string;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: unknown) => void;
}

const RESOLVED = Promise.resolve();

/**
 * A commit whose outcome is unknown (the server went away with it on the wire, and stayed away):
 * its run's state in the store may be ahead of the context's, so the context stops running it, as
 * it does a run whose lease was taken, and whoever recovers it goes on from what the store holds.
 */
function unknownOutcome(runId: string, reconnectFor: number, cause: unknown): FlowError {
  return new FlowError(
    `run store (postgres): a commit to run ${JSON.stringify(runId)} may or may not have been applied: the server could not be reached for ${reconnectFor} ms; this context stops running the run, and recover() goes on with it from the store`,
    { code: ErrorCode.LEASE_LOST, cause },
  );
}

/** The writes of one Postgres store, in the order they were queued. */
export class PgWriteQueue {
  readonly #connection: PgConnection;
  readonly #sql: string;
  readonly #name: string;
  #client: PoolClient | undefined;
  #queue: Pending[] = [];
  #flushing: Promise<void> | undefined;
  #closed = false;
  /** Aborted on close: a group waiting to reconnect gives up. */
  readonly #stop = new AbortController();
  /** How many groups and writes went to the server: for the benches' and tests' figures. */
  readonly stats = { groups: 0, writes: 0 };

  constructor(connection: PgConnection, schema: string, quotedSchema: string) {
    this.#connection = connection;
    this.#sql = `SELECT ${quotedSchema}.apply($1::jsonb) AS outcomes`;
    this.#name = `weir_apply_${schema}`.slice(0, 63);
  }

  /** Queues a write; settles once it is committed, or refused. */
  enqueue(item: WriteItem, settle: (outcome: Outcome) => unknown, failure: string): Promise<unknown> {
    if (this.#closed) return Promise.reject(closedError('postgres', failure));
    return new Promise((resolve, reject) => {
      this.#queue.push({ item, settle, failure, resolve, reject });
      // The first write waits for the rest of its tick; later ones join whatever goes next.
      this.#flushing ??= RESOLVED.then(() => this.#flush());
    });
  }

  /** Writes everything queued, and what is queued meanwhile. */
  async drain(): Promise<void> {
    while (this.#flushing !== undefined) await this.#flushing;
  }

  /** Stops waiting to reconnect: what is queued fails with `WEIR_STORE_CLOSED`; then releases the connection. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#stop.abort();
    await this.drain();
    this.#client?.release();
    this.#client = undefined;
  }

  async #flush(): Promise<void> {
    try {
      while (this.#queue.length > 0) {
        const group = this.#queue;
        this.#queue = [];
        await this.#write(group);
      }
    } finally {
      this.#flushing = undefined;
    }
  }

  /** Writes one group; each promise settles with its own write. */
  async #write(queued: Pending[]): Promise<void> {
    // Stable: each run's writes keep their order, and every group locks runs in the same order.
    const group = queued.length > 1 ? [...queued].sort((a, b) => (a.item.id < b.item.id ? -1 : a.item.id > b.item.id ? 1 : 0)) : queued;
    let outcomes: Outcome[];
    try {
      outcomes = await this.#send(group.map((p) => p.item));
    } catch (error) {
      if (isTransient(error) || group.length === 1) {
        for (const p of group) p.reject(this.#failure(p, error));
        return;
      }
      // The server refused the group: each write goes alone, so only the bad one fails.
      for (const p of group) await this.#write([p]);
      return;
    }
    for (let i = 0; i < group.length; i++) {
      const p = group[i]!;
      try {
        p.resolve(p.settle(outcomes[i]!));
      } catch (error) {
        p.reject(error);
      }
    }
  }

  /** What a write whose group failed is told: closed, an unknown outcome (a commit the server stayed away with), or the server's refusal. */
  #failure(p: Pending, error: unknown): FlowError {
    if (!isTransient(error)) return wrapError('postgres', p.failure, error);
    if (this.#closed) return closedError('postgres', p.failure);
    return p.item.t === 'm' ? unknownOutcome(p.item.id, this.#connection.reconnectFor, error) : wrapError('postgres', p.failure, error);
  }

  /**
   * Sends writes in one call, going again on a new connection while the server is away (each write
   * marked as a retry, so one the lost call applied reports success), until `reconnectFor` runs out.
   */
  async #send(items: WriteItem[]): Promise<Outcome[]> {
    return this.#connection.retrying(
      async () => {
        try {
          this.#client ??= await this.#connection.client();
          const rows = await this.#connection.queryOn<{ outcomes: Outcome[] }>(this.#client, this.#sql, [JSON.stringify(items)], this.#name);
          this.stats.groups += 1;
          this.stats.writes += items.length;
          return rows[0]!.outcomes;
        } catch (error) {
          if (isTransient(error)) {
            // The connection is gone: the next attempt takes a new one.
            this.#client?.release(true);
            this.#client = undefined;
          }
          throw error;
        }
      },
      {
        signal: this.#stop.signal,
        beforeRetry: () => {
          for (const item of items) item.retry = true;
        },
      },
    );
  }
}
