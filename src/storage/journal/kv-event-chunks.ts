/**
 * A run's events in the key-value journal: chunk records of `EVENT_CHUNK` events, read in seq
 * order, appended to by the writer that holds the lease, whose tail chunk it keeps in memory.
 * @internal
 */
import type { WeirEvent } from '../../model/events.js';
import { chunkOf, EVENT_CHUNK, type KvRecords, type StoredRun } from './kv-records.js';

/** The tail chunk of a run's events, as the writer last left it. */
export interface Tail {
  readonly token: number;
  readonly chunk: number;
  /** The chunk's events, each already encoded. */
  readonly encoded: readonly string[];
  readonly lastSeq: number;
}

/** The event chunks of one store, with the tails of the runs it writes to. */
export class EventChunks {
  readonly #records: KvRecords;
  readonly #tails = new Map<string, Tail>();

  constructor(records: KvRecords) {
    this.#records = records;
  }

  /** The events after `after`, at most `limit` of them. */
  async read(runId: string, after: number, limit: number): Promise<WeirEvent[]> {
    const out: WeirEvent[] = [];
    let expected = Math.max(0, after) + 1;
    for (let chunk = chunkOf(expected); out.length < limit; chunk++) {
      const texts = await this.#records.readChunk(runId, chunk);
      if (texts === undefined) break;
      for (let i = 0; i < texts.length && out.length < limit; i++) {
        const seq = chunk * EVENT_CHUNK + i + 1;
        if (seq < expected) continue;
        out.push(this.#records.decodeEvent(runId, seq, texts[i]!));
        expected = seq + 1;
      }
      if (texts.length < EVENT_CHUNK) break;
    }
    return out;
  }

  /** The writer's tail: kept while this store holds the lease, else read from the chunks. */
  async tail(runId: string, run: StoredRun): Promise<Tail> {
    const cached = this.#tails.get(runId);
    if (cached !== undefined && cached.token === run.leaseToken && cached.lastSeq >= run.lastSeq) return cached;
    return this.scan(runId, run.lastSeq, run.leaseToken);
  }

  /** Finds the true last seq: a commit cut short after its events may have stored some past `lastSeq`. */
  async scan(runId: string, lastSeq: number, token: number): Promise<Tail> {
    let chunk = chunkOf(lastSeq + 1);
    let tail: Tail = { token, chunk, encoded: [], lastSeq };
    for (;;) {
      const texts = await this.#records.readChunk(runId, chunk);
      if (texts === undefined) return tail;
      tail = { token, chunk, encoded: texts, lastSeq: chunk * EVENT_CHUNK + texts.length };
      if (texts.length < EVENT_CHUNK) return tail;
      chunk += 1;
      tail = { token, chunk, encoded: [], lastSeq: tail.lastSeq };
    }
  }

  /** Writes events into their chunks in seq order; returns the new tail, which the caller keeps once it counts. */
  async append(runId: string, tail: Tail, events: readonly WeirEvent[], texts: readonly string[]): Promise<Tail> {
    if (events.length === 0) return tail;
    let chunk = tail.chunk;
    let encoded = tail.encoded;
    let lastSeq = tail.lastSeq;
    let dirty = false;
    for (let i = 0; i < events.length; i++) {
      const seq = events[i]!.seq;
      const target = chunkOf(seq);
      if (target !== chunk) {
        if (dirty) await this.#records.writeChunk(runId, chunk, encoded);
        chunk = target;
        encoded = [];
      }
      encoded = [...encoded, texts[i]!];
      dirty = true;
      lastSeq = seq;
    }
    await this.#records.writeChunk(runId, chunk, encoded);
    return { token: tail.token, chunk, encoded, lastSeq };
  }

  /** Keeps a run's tail for its next append. */
  keep(runId: string, tail: Tail): void {
    this.#tails.set(runId, tail);
  }

  /** Forgets a run's tail, or only one kept under another lease token. */
  forget(runId: string, unlessToken?: number): void {
    if (unlessToken === undefined || this.#tails.get(runId)?.token !== unlessToken) this.#tails.delete(runId);
  }

  clear(): void {
    this.#tails.clear();
  }
}
