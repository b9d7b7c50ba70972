/**
 * Group commit: the writes queued in one tick, or in the rest of a busy event-loop turn, go to
 * SQLite in one transaction, each settling its own promise. When SQLite fails the transaction, each
 * write goes again in a transaction of its own, so one bad write fails alone.
 * @internal
 */
// On the host's own timers, so fake timers in tests never hold back a commit.
import { setRealImmediate } from '../../../util/clock.js';
import type BetterSqlite3 from 'better-sqlite3';
import { FlowError } from '../../../errors/errors.js';
import { wrapError } from '../store-support.js';

interface Pending<W> {
  readonly work: W;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: unknown) => void;
}

/** What a queue writes with. */
export interface WriteQueueOptions<W> {
  /** Opens the connection; the store attaches it to the queue (`attach`) before this resolves. */
  connect(): Promise<unknown>;
  /** Applies one write inside the transaction; a `FlowError` refuses it before it writes anything. */
  apply(this: void, work: W): unknown;
  /** What a write that SQLite failed reports. */
  failureOf(work: W): string;
  /** Called before each group is written; a `FlowError` it throws refuses the whole group, which writes nothing. */
  check?(this: void, queue: readonly { readonly work: W }[]): void;
  /** Hears how many writes each group held, once they settled. */
  written(count: number): void;
}

const RESOLVED = Promise.resolve();

/** The writes of one SQLite store, in the order they were queued. */
export class WriteQueue<W> {
  readonly #options: WriteQueueOptions<W>;
  #group: BetterSqlite3.Transaction<(queue: readonly Pending<W>[], outcomes: unknown[], failed: boolean[]) => void> | undefined;
  #single: BetterSqlite3.Transaction<(work: W) => unknown> | undefined;
  #queue: Pending<W>[] = [];
  #scheduled = false;
  /** Whether a flush already ran on a microtask in this event-loop turn. */
  #turnFlushed = false;
  readonly #flushNow = (): void => void this.#startFlush();
  readonly #newTurn = (): void => {
    this.#turnFlushed = false;
  };
  #flushing: Promise<void> | undefined;

  constructor(options: WriteQueueOptions<W>) {
    this.#options = options;
  }

  /** Binds the queue to the open connection: from now on a flush writes at once. */
  attach(db: BetterSqlite3.Database): void {
    const apply = this.#options.apply;
    this.#group = db.transaction((queue: readonly Pending<W>[], outcomes: unknown[], failed: boolean[]) => {
      // Each write is checked against its run's head before it writes, so one transaction without savepoints holds them all.
      for (let i = 0; i < queue.length; i++) {
        try {
          outcomes[i] = apply(queue[i]!.work);
        } catch (error) {
          if (!(error instanceof FlowError)) throw error;
          failed[i] = true;
          outcomes[i] = error;
        }
      }
    });
    this.#single = db.transaction((work: W) => apply(work));
  }

  /** Queues a write; settles once it is committed, or refused. */
  enqueue(work: W): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.#queue.push({ work, resolve, reject });
      if (this.#scheduled) return;
      this.#scheduled = true;
      if (this.#turnFlushed) {
        // Writes keep coming in this turn (from other callbacks): gather them until its end.
        setRealImmediate(this.#flushNow);
      } else {
        // The first write of the turn goes once the current tick's writes have joined it, without
        // waiting a loop turn; a promise job, because no fake timer can hold it back.
        this.#turnFlushed = true;
        setRealImmediate(this.#newTurn);
        void RESOLVED.then(this.#flushNow);
      }
    });
  }

  /** Writes everything queued, and what is queued meanwhile. */
  async drain(): Promise<void> {
    while (this.#flushing !== undefined || this.#queue.length > 0) {
      await (this.#flushing ?? this.#startFlush());
    }
  }

  #startFlush(): Promise<void> {
    if (this.#group !== undefined) {
      // Open already: written at once, with no promise of its own to wait for.
      this.#scheduled = false;
      const queue = this.#queue;
      this.#queue = [];
      if (queue.length > 0) this.#write(queue);
      return RESOLVED;
    }
    this.#flushing = this.#flushOnOpen().finally(() => {
      this.#flushing = undefined;
    });
    return this.#flushing;
  }

  async #flushOnOpen(): Promise<void> {
    this.#scheduled = false;
    const queue = this.#queue;
    this.#queue = [];
    if (queue.length === 0) return;
    try {
      await this.#options.connect();
    } catch (error) {
      for (const p of queue) p.reject(error);
      return;
    }
    this.#write(queue);
  }

  /** Writes a group in one transaction; each promise settles with its own write. */
  #write(queue: readonly Pending<W>[]): void {
    try {
      this.#options.check?.(queue);
    } catch (error) {
      for (const p of queue) p.reject(error);
      return;
    }
    const outcomes: unknown[] = new Array(queue.length);
    const failed: boolean[] = new Array(queue.length).fill(false);
    try {
      this.#group!.immediate(queue, outcomes, failed);
    } catch {
      // SQLite failed a write: the group was rolled back, so each write goes again on its own.
      for (let i = 0; i < queue.length; i++) {
        failed[i] = false;
        try {
          outcomes[i] = this.#single!.immediate(queue[i]!.work);
        } catch (error) {
          failed[i] = true;
          outcomes[i] = wrapError('sqlite', this.#options.failureOf(queue[i]!.work), error);
        }
      }
    }
    for (let i = 0; i < queue.length; i++) {
      if (failed[i]) queue[i]!.reject(outcomes[i]);
      else queue[i]!.resolve(outcomes[i]);
    }
    this.#options.written(queue.length);
  }
}
