/** The internal contract every results backend implements; ResultsManager adds validation, errors and lifecycle. */

/** Which backend a ResultsManager stores its values in. */
export type ResultsKind = 'memory' | 'disk' | 'sqlite' | 'keyv' | 'postgres';

/** One stored result: the value and when it was written. */
export interface StoredEntry {
  readonly value: unknown;
  /** Milliseconds since the epoch, from `now()`. */
  readonly writtenAt: number;
}

/**
 * A place to keep entries by key. Backends open lazily, may throw any error (the manager wraps it
 * as WEIR_STORE) and throw FlowErrors they mean the caller to see as they are (corrupt records).
 */
export interface ResultsBackend {
  readonly kind: ResultsKind;
  /**
   * What the backend stores into, the same for two backends over the same data in one process (a
   * resolved directory, a Keyv instance): the run journal serialises its writes per run within it.
   */
  readonly scope: unknown;
  /** Opens what the backend needs now (a directory, a database file), so a bad path fails early; safe to call again. */
  open(): Promise<void>;
  get(key: string): Promise<StoredEntry | undefined>;
  set(key: string, entry: StoredEntry): Promise<void>;
  /** Resolves to whether there was an entry to delete. */
  delete(key: string): Promise<boolean>;
  has(key: string): Promise<boolean>;
  /** Deletes every entry written before `cutoff` (ms since the epoch); resolves to how many. */
  deleteOlderThan(cutoff: number): Promise<number>;
  /**
   * Every readable entry whose key starts with `prefix`, in no set order; records that cannot be
   * read are skipped (`get` reports them). Used by the run journal to list runs.
   * @throws FlowError `WEIR_UNSUPPORTED` when the store cannot be iterated.
   */
  entries(prefix: string): AsyncIterable<[key: string, entry: StoredEntry]>;
  /** Releases handles; called once, after which the backend is not used again. */
  close(): Promise<void>;
}
