/** Keeps entries in a Map, by reference: the fast path for runs that need not survive the process. */
import type { ResultsBackend, StoredEntry } from './backend.js';
import { checkLossless } from '../codec.js';

/** A Map of entries; values are stored as given, not copied. */
export class MemoryBackend implements ResultsBackend {
  readonly kind = 'memory';
  get scope(): unknown {
    return this;
  }
  readonly #entries = new Map<string, StoredEntry>();
  readonly #checkValues: boolean;

  /** @param checkValues refuse what a durable backend could not serialise, as it would. */
  constructor(checkValues = true) {
    this.#checkValues = checkValues;
  }

  async open(): Promise<void> {}

  async get(key: string): Promise<StoredEntry | undefined> {
    return this.#entries.get(key);
  }

  async set(key: string, entry: StoredEntry): Promise<void> {
    if (this.#checkValues) checkLossless(entry.value, key);
    this.#entries.set(key, entry);
  }

  async delete(key: string): Promise<boolean> {
    return this.#entries.delete(key);
  }

  async has(key: string): Promise<boolean> {
    return this.#entries.has(key);
  }

  async deleteOlderThan(cutoff: number): Promise<number> {
    let deleted = 0;
    for (const [key, entry] of this.#entries) {
      if (entry.writtenAt < cutoff && this.#entries.delete(key)) deleted += 1;
    }
    return deleted;
  }

  async *entries(prefix: string): AsyncGenerator<[string, StoredEntry]> {
    for (const [key, entry] of [...this.#entries]) if (key.startsWith(prefix)) yield [key, entry];
  }

  async close(): Promise<void> {
    this.#entries.clear();
  }
}
