/** Stores entries in a Keyv instance, as our own codec strings, so any Keyv serializer round-trips them. */
import type { Keyv } from 'keyv';
import { ErrorCode, FlowError } from '../../errors/errors.js';
import type { ResultsBackend, StoredEntry } from './backend.js';
import { decodeRecord, encodeRecord, JOURNAL_PREFIX } from '../codec.js';

/** A Keyv-backed store over a given Keyv, or one `open` makes on first use; `close()` disconnects it. */
export class KeyvBackend implements ResultsBackend {
  readonly kind: 'keyv' | 'sqlite';
  readonly #open: () => Promise<Keyv>;
  readonly scope: unknown;
  #keyv: Promise<Keyv> | undefined;

  constructor(kind: 'keyv' | 'sqlite', keyv: Keyv | (() => Promise<Keyv>)) {
    this.kind = kind;
    this.scope = keyv;
    if (typeof keyv === 'function') {
      this.#open = keyv;
    } else {
      // A given Keyv counts as open at once, so close() disconnects it even if it was never used.
      this.#keyv = Promise.resolve(keyv);
      this.#open = () => Promise.resolve(keyv);
    }
  }

  async open(): Promise<void> {
    await this.#connect();
  }

  #connect(): Promise<Keyv> {
    // A failed open is forgotten so the next call tries again.
    this.#keyv ??= this.#open().catch((error: unknown) => {
      this.#keyv = undefined;
      throw error;
    });
    return this.#keyv;
  }

  async get(key: string): Promise<StoredEntry | undefined> {
    const keyv = await this.#connect();
    let text: unknown;
    try {
      text = await keyv.get(key);
    } catch (error) {
      // Keyv's own deserializer throws SyntaxError on a row that is not its JSON envelope.
      if (error instanceof SyntaxError) {
        throw new FlowError(`results: record ${JSON.stringify(key)} is corrupt and cannot be read: ${error.message}`, {
          code: ErrorCode.CORRUPT_RECORD,
          cause: error,
        });
      }
      throw error;
    }
    return text === undefined ? undefined : decodeRecord(text, key).entry;
  }

  async set(key: string, entry: StoredEntry): Promise<void> {
    const text = encodeRecord(key, entry);
    const keyv = await this.#connect();
    // Without throwOnErrors, Keyv reports a failed write only as `false` (and an 'error' event).
    if (!(await keyv.set(key, text))) {
      throw new Error('the Keyv store did not accept the write (create the Keyv with throwOnErrors: true to see why)');
    }
  }

  async delete(key: string): Promise<boolean> {
    return (await this.#connect()).delete(key);
  }

  async has(key: string): Promise<boolean> {
    return (await this.#connect()).has(key);
  }

  async #iterator(what: string): Promise<{ keyv: Keyv; records: AsyncGenerator<[string, unknown]> }> {
    const keyv = await this.#connect();
    if (keyv.iterator === undefined) {
      throw new FlowError(
        `results (${this.kind}): ${what} is not supported: this Keyv store cannot be iterated ` +
          '(Map, sqlite, postgres, mysql, mongo, redis, valkey and etcd stores can)',
        { code: ErrorCode.UNSUPPORTED },
      );
    }
    return { keyv, records: keyv.iterator(keyv.namespace) as AsyncGenerator<[string, unknown]> };
  }

  async *entries(prefix: string): AsyncGenerator<[string, StoredEntry]> {
    const { records } = await this.#iterator('listing runs');
    // Collect first, then yield: some stores page the iterator by offset.
    const found: [string, StoredEntry][] = [];
    for await (const [, text] of records) {
      let record;
      try {
        record = decodeRecord(text);
      } catch {
        continue; // a corrupt record has no trustworthy key; get() reports it
      }
      if (record.key.startsWith(prefix)) found.push([record.key, record.entry]);
    }
    yield* found;
  }

  async deleteOlderThan(cutoff: number): Promise<number> {
    const { keyv, records } = await this.#iterator('cleanup');
    // Keys come from the records, not the iterator: Keyv strips namespaces by splitting on ':'.
    // Collect first, then delete: some stores page the iterator by offset.
    const old: string[] = [];
    for await (const [, text] of records) {
      let record;
      try {
        record = decodeRecord(text);
      } catch {
        continue; // a corrupt record has no age; get() reports it
      }
      // The run journal's records go with their runs (prune), never by age.
      if (record.entry.writtenAt < cutoff && !record.key.startsWith(JOURNAL_PREFIX)) old.push(record.key);
    }
    let deleted = 0;
    for (const key of old) if (await keyv.delete(key)) deleted += 1;
    return deleted;
  }

  async close(): Promise<void> {
    const opening = this.#keyv;
    if (opening === undefined) return;
    const keyv = await opening.catch(() => undefined);
    await keyv?.disconnect();
  }
}
