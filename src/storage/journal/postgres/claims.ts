/**
 * Work sharing on Postgres: runs claimed in batches by the `claim` function (`FOR UPDATE SKIP
 * LOCKED`, so each run goes to exactly one worker), notices through LISTEN/NOTIFY, and the
 * register of live workers and the flow versions they run.
 * @internal
 */
import type { QueryResultRow } from 'pg';
import type { ClaimableFlow, ClaimQuery, RunClaims, RunOwner, RunRecord, StoreNotice } from '../run-store.js';
import { versionKey } from '../run-store.js';
import { wrapError } from '../store-support.js';
import type { PgConnection } from './connection.js';
import type { PgNotices } from './notices.js';
import { RUN_COLUMNS, toRun, type RunRow } from './rows.js';

const KIND = 'postgres';

/** A flow as the claim function takes it: `{ f, v, c?, k? }`. */
function claimable(flow: ClaimableFlow): Record<string, unknown> {
  const entry: Record<string, unknown> = { f: flow.flow, v: flow.version };
  if (flow.concurrency !== undefined) entry.c = flow.concurrency;
  if (flow.keyConcurrency !== undefined) entry.k = flow.keyConcurrency;
  return entry;
}

/** A Postgres store's claims. */
export class PgClaims implements RunClaims {
  readonly #connection: PgConnection;
  readonly #sql: string;
  readonly #schema: string;
  readonly #ready: () => Promise<void>;
  readonly #notices: PgNotices;

  constructor(connection: PgConnection, schema: string, quotedSchema: string, notices: PgNotices, ready: () => Promise<void>) {
    this.#connection = connection;
    this.#schema = schema;
    this.#sql = quotedSchema;
    this.#notices = notices;
    this.#ready = ready;
  }

  async claimRuns(owner: RunOwner, query: ClaimQuery): Promise<RunRecord[]> {
    if (query.flows.length === 0 || query.limit <= 0) return [];
    const rows = await this.#query<RunRow>(
      'claim runs',
      `SELECT ${RUN_COLUMNS} FROM ${this.#sql}.claim($1, $2, $3::jsonb, $4, $5, $6, $7, $8, $9::text[])`,
      [
        owner.processId,
        JSON.stringify(owner),
        JSON.stringify(query.flows.map(claimable)),
        Math.floor(query.limit),
        query.now + query.leaseMs,
        query.now,
        query.queued,
        `weir.claim.${this.#schema}`,
        [...(query.skip ?? [])],
      ],
    );
    // A record that cannot be read is left claimed: its lease runs out and the next claim fails it where it is loaded.
    const runs: RunRecord[] = [];
    for (const row of rows) {
      try {
        runs.push(toRun(row));
      } catch {
        // reported by loadRun to whoever takes it next
      }
    }
    return runs;
  }

  subscribe(listener: (notice: StoreNotice) => void): () => void {
    return this.#notices.subscribe(listener);
  }

  async announceWorker(owner: RunOwner, flows: readonly ClaimableFlow[], expiresAt: number): Promise<void> {
    const versions = Object.fromEntries(flows.map((f) => [versionKey(f.flow, f.version), true]));
    await this.#query(
      'announce this worker',
      `INSERT INTO ${this.#sql}.workers (worker_id, host, pid, flows, seen_at, expires_at) VALUES ($1, $2, $3, $4::jsonb, $5, $6)
       ON CONFLICT (worker_id) DO UPDATE SET flows = excluded.flows, seen_at = excluded.seen_at, expires_at = excluded.expires_at`,
      [owner.processId, owner.host, owner.pid, JSON.stringify(versions), Date.now(), expiresAt],
    );
  }

  async retireWorker(owner: RunOwner): Promise<void> {
    await this.#query('retire this worker', `DELETE FROM ${this.#sql}.workers WHERE worker_id = $1`, [owner.processId]);
  }

  async liveVersions(now: number): Promise<ReadonlySet<string>> {
    await this.#ready();
    const rows = await this.#connection.read<{ key: string }>(
      `SELECT DISTINCT jsonb_object_keys(flows) AS key FROM ${this.#sql}.workers WHERE expires_at > $1`,
      [now],
    ).catch((error: unknown) => {
      throw wrapError(KIND, 'could not read the live workers', error);
    });
    return new Set(rows.map((r) => r.key));
  }

  async #query<R extends object>(what: string, text: string, values: readonly unknown[]): Promise<R[]> {
    await this.#ready();
    try {
      return await this.#connection.query<R & QueryResultRow>(text, values);
    } catch (error) {
      throw wrapError(KIND, `could not ${what}`, error);
    }
  }
}
