/**
 * Whether a SQLite store's path still names the file its connection opened. A file renamed over,
 * moved away or deleted under a live connection keeps taking its writes (its WAL included), where
 * nobody who opens the path sees them; so a write is refused once the path names another file, or
 * none, until the opened file is back. The check is a stat of the path (about 3 µs): before every
 * write a caller is told is final (a run created or ended, an input, a lease), and before other
 * commits at most every `CHECK_MS`, so it costs a chain of commits next to nothing.
 * @internal
 */
import { readdirSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { ErrorCode, FlowError } from '../../../errors/errors.js';
import { setRealTimer } from '../../../util/clock.js';

/** How long a commit may go on without a check since the last one, in ms. */
export const CHECK_MS = 20;

/** The most directory entries looked at to find where the opened file went. */
const SEARCH_LIMIT = 10_000;

/** The opened file's identity, and whether the path still names it. */
export class FileIdentity {
  readonly #file: string;
  /** Hears that the path stopped naming the opened file (once each time it does). */
  readonly #onReplaced: () => void;
  #dev = 0;
  #ino = 0;
  #known = false;
  /** Set by a check that found the file, for `CHECK_MS`: a commit meanwhile reads a field, not the clock. */
  #fresh = false;
  readonly #expire = (): void => {
    this.#fresh = false;
  };
  #replaced: FlowError | undefined;

  constructor(file: string, onReplaced: () => void) {
    this.#file = file;
    this.#onReplaced = onReplaced;
  }

  /** Records the file the connection just opened (a real file, not `:memory:`). */
  opened(): void {
    const stats = statSync(this.#file);
    this.#dev = stats.dev;
    this.#ino = stats.ino;
    this.#known = true;
    this.#refresh();
  }

  /** The device and inode opened, for a second connection to check that it opened the same file. */
  get identity(): { readonly dev: number; readonly ino: number } | undefined {
    return this.#known ? { dev: this.#dev, ino: this.#ino } : undefined;
  }

  /**
   * Throws when the path no longer names the opened file: checked now when `always`, while the path
   * names another file, or once `CHECK_MS` passed since the last check found it; else trusted.
   * @throws FlowError `WEIR_STORE_REPLACED`, saying where the opened file is now when it is in the same directory.
   */
  check(always: boolean): void {
    if (!this.#known || (this.#fresh && !always)) return;
    const stats = statSync(this.#file, { throwIfNoEntry: false });
    if (stats !== undefined && stats.dev === this.#dev && stats.ino === this.#ino) {
      this.#replaced = undefined;
      this.#refresh();
      return;
    }
    this.#fresh = false;
    if (this.#replaced === undefined) {
      this.#replaced = this.#error(stats === undefined ? 'no file is there now' : 'another file is there now');
      this.#onReplaced();
    }
    throw this.#replaced;
  }

  #refresh(): void {
    if (this.#fresh) return;
    this.#fresh = true;
    // On the host's timers: a test's fake clock must not stretch the window.
    setRealTimer(this.#expire, CHECK_MS, { unref: true });
  }

  #error(how: string): FlowError {
    const aside = this.#findAside();
    const where = aside === undefined ? 'which is no longer in that directory (moved elsewhere, or deleted)' : `now at ${JSON.stringify(aside)}`;
    return new FlowError(
      `run store (sqlite): ${JSON.stringify(this.#file)} is not the database file this store opened (${how}): nothing more is written until that file is back at the path. What was committed before is in the file it opened, ${where}`,
      { code: ErrorCode.STORE_REPLACED },
    );
  }

  /** Where the opened file is now, if it is in the same directory under another name. */
  #findAside(): string | undefined {
    const dir = dirname(this.#file);
    try {
      const names = readdirSync(dir).slice(0, SEARCH_LIMIT);
      for (const name of names) {
        if (name === basename(this.#file)) continue;
        const stats = statSync(join(dir, name), { throwIfNoEntry: false });
        if (stats?.dev === this.#dev && stats.ino === this.#ino) return join(dir, name);
      }
    } catch {
      // An unreadable directory: the message says the file is not found there.
    }
    return undefined;
  }
}
