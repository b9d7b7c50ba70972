/**
 * The store's notices through LISTEN/NOTIFY: one connection per store listens on the schema's
 * channel while anyone subscribes, and comes back after the server drops it (with a `reconnected`
 * notice, since notices sent meanwhile are lost: subscribers look again).
 * @internal
 */
import type { Notification, PoolClient } from 'pg';
import { clearRealTimer, setRealTimer, type TimerHandle } from '../../../util/clock.js';
import type { StoreNotice } from '../run-store.js';
import type { PgConnection } from './connection.js';
import { quoteIdent } from './schema.js';

const FIRST_RETRY_MS = 100;
const MAX_RETRY_MS = 2000;

/** Reads a notification's payload as a notice. */
function noticeOf(payload: string | undefined): StoreNotice | undefined {
  if (payload === 'queued' || payload === 'ended') return { type: payload };
  if (payload?.startsWith('input:') === true) return { type: 'input', runId: payload.slice('input:'.length) };
  return undefined;
}

/** A store's LISTEN connection and its subscribers. */
export class PgNotices {
  readonly #connection: PgConnection;
  readonly #channel: string;
  readonly #ready: () => Promise<void>;
  readonly #listeners = new Set<(notice: StoreNotice) => void>();
  #client: PoolClient | undefined;
  #connecting = false;
  #retry: TimerHandle | undefined;
  #retryMs = FIRST_RETRY_MS;
  #closed = false;

  /** @param ready opens (and migrates) the store before the first LISTEN. */
  constructor(connection: PgConnection, channel: string, ready: () => Promise<void>) {
    this.#connection = connection;
    this.#channel = channel;
    this.#ready = ready;
  }

  subscribe(listener: (notice: StoreNotice) => void): () => void {
    this.#listeners.add(listener);
    if (this.#client === undefined && !this.#connecting && this.#retry === undefined) void this.#listen(false);
    return () => {
      this.#listeners.delete(listener);
      if (this.#listeners.size === 0) this.#stop();
    };
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#listeners.clear();
    this.#stop();
  }

  #emit(notice: StoreNotice): void {
    for (const listener of this.#listeners) listener(notice);
  }

  readonly #onNotification = (message: Notification): void => {
    const notice = noticeOf(message.payload);
    if (notice !== undefined) this.#emit(notice);
  };

  async #listen(again: boolean): Promise<void> {
    if (this.#closed || this.#listeners.size === 0 || this.#client !== undefined || this.#connecting) return;
    this.#connecting = true;
    let client: PoolClient | undefined;
    try {
      await this.#ready();
      client = await this.#connection.client();
      client.on('notification', this.#onNotification);
      const lost = (): void => this.#lost(client!);
      client.once('error', lost);
      client.once('end', lost);
      await client.query(`LISTEN ${quoteIdent(this.#channel)}`);
    } catch {
      client?.release(true);
      this.#connecting = false;
      this.#scheduleRetry();
      return;
    }
    this.#connecting = false;
    if (this.#closed || this.#listeners.size === 0) {
      client.release(true);
      return;
    }
    this.#client = client;
    this.#retryMs = FIRST_RETRY_MS;
    if (again) this.#emit({ type: 'reconnected' });
  }

  #lost(client: PoolClient): void {
    if (this.#client !== client) return;
    this.#client = undefined;
    client.release(true);
    this.#scheduleRetry();
  }

  #scheduleRetry(): void {
    if (this.#closed || this.#listeners.size === 0 || this.#retry !== undefined) return;
    this.#retry = setRealTimer(
      () => {
        this.#retry = undefined;
        void this.#listen(true);
      },
      this.#retryMs,
      { unref: true },
    );
    this.#retryMs = Math.min(MAX_RETRY_MS, this.#retryMs * 2);
  }

  #stop(): void {
    clearRealTimer(this.#retry);
    this.#retry = undefined;
    const client = this.#client;
    this.#client = undefined;
    // Released broken, so the pool does not hand out a connection still listening.
    client?.release(true);
  }
}
