/**
 * Group commit: the writes queued in one tick, or in the rest of a busy event-loop turn, go to
 * SQLite in one transaction, each settling its own promise. When SQLite fails the transaction, each
 * write goes again in a transaction of its own, so one bad write fails alone. A run that writes
 * alone, turn after turn (a sequential chain: each commit waits for the one before), is written at
 * once each time, within the limits of a turn (`SOLO_FLUSHES_PER_TURN`, `SOLO_TURN_MS`), instead of
 * waiting for the turn's end.
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
  /** Who a write comes from (its run): writes of one writer alone in a turn need no gathering. */
  writerOf(this: void, work: W): string;
}

const RESOLVED = Promise.resolve();

/**
 * Flushes on a promise job in one event-loop turn while a single writer writes, up to this many and
 * for up to `SOLO_TURN_MS` from the turn's first write; then the rest of the turn is gathered, so a
 * long chain still lets the loop run every few milliseconds (a commit takes ~35 µs with `NORMAL`,
 * several times that with `FULL`).
 */
const SOLO_FLUSHES_PER_TURN = 64;
const SOLO_TURN_MS = 2;

/** `#turnWriter` once writes of more than one writer came in the turn. */
const MIXED = Symbol('mixed');

/** The writes of one SQLite store, in the order they were queued. */
export class WriteQueue<W> {
  readonly #options: WriteQueueOptions<W>;
  #group: BetterSqlite3.Transaction<(queue: readonly Pending<W>[], outcomes: unknown[], failed: boolean[]) => void> | undefined;
  #single: BetterSqlite3.Transaction<(work: W) => unknown> | undefined;
  #queue: Pending<W>[] = [];
  #scheduled = false;
  /** The writer of every write queued in this event-loop turn, `MIXED` once there were several; none before the turn's first. */
  #turnWriter: string | typeof MIXED | undefined;
  /** When this turn's first write came (`performance.now()`). */
  #turnStarted = 0;
  /** Flushes started on a promise job in this turn. */
  #turnFlushes = 0;
  /**
   * The writer of the last turn with writes, if it wrote alone in it: only that writer, alone in
   * this turn too, may flush on promise jobs more than once in it.
   */
  #lastSoloWriter: string | undefined;
  readonly #flushNow = (): void => void this.#startFlush();
  readonly #newTurn = (): void => {
    this.#lastSoloWriter = this.#turnWriter === MIXED ? undefined : this.#turnWriter;
    this.#turnWriter = undefined;
    this.#turnFlushes = 0;
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
      const writer = this.#options.writerOf(work);
      this.#queue.push({ work, resolve, reject });
      if (this.#turnWriter === undefined) {
        this.#turnWriter = writer;
        this.#turnStarted = performance.now();
        setRealImmediate(this.#newTurn);
      } else if (this.#turnWriter !== writer) {
        this.#turnWriter = MIXED;
      }
      if (this.#scheduled) return;
      this.#scheduled = true;
      if (this.#turnFlushes > 0 && !this.#soloGoesOn()) {
        // Writes keep coming in this turn (from other callbacks, or from other runs, or past the
        // solo limit): gather them until its end.
        setRealImmediate(this.#flushNow);
      } else {
        // The turn's first write, or the next of a writer that wrote alone in this turn and in the
        // last with writes: it goes once the current tick's writes have joined it, without waiting
        // a loop turn; a promise job, because no fake timer can hold it back.
        this.#turnFlushes++;
        void RESOLVED.then(this.#flushNow);
      }
    });
  }

  /** Whether the writer of this turn wrote alone in it and in the last turn with writes, within the turn's solo limits. */
  #soloGoesOn(): boolean {
    return (
      this.#turnWriter === this.#lastSoloWriter &&
      this.#turnFlushes < SOLO_FLUSHES_PER_TURN &&
      performance.now() - this.#turnStarted < SOLO_TURN_MS
    );
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
