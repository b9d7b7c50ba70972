/** One file per key under a directory, each replaced atomically (write a temp file, then rename). */
import { createHash, randomUUID } from 'node:crypto';
import { mkdir, readdir, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { ResultsBackend, StoredEntry } from './backend.js';
import { decodeRecord, encodeRecord } from '../codec.js';

const EXT = '.json';

function isMissing(error: unknown): boolean {
  return (error as NodeJS.ErrnoException | null)?.code === 'ENOENT';
}

/** Stores each entry in `<dir>/<sha256 of key>.json`; the key itself is kept inside the record. */
export class DiskBackend implements ResultsBackend {
  readonly kind = 'disk';
  readonly #dir: string;
  readonly scope: string;
  #ready: Promise<unknown> | undefined;

  constructor(dir: string) {
    this.#dir = dir;
    this.scope = `disk:${resolve(dir)}`;
  }

  // Hashing keeps any key (slashes, dots, case, length) a safe, unique file name.
  #file(key: string): string {
    return join(this.#dir, createHash('sha256').update(key).digest('hex') + EXT);
  }

  async #read(file: string): Promise<string | undefined> {
    try {
      return await readFile(file, 'utf8');
    } catch (error) {
      if (isMissing(error)) return undefined;
      throw error;
    }
  }

  /** Creates the directory and proves a file can be written in it: a path under a file, or a read-only one, fails here. */
  async open(): Promise<void> {
    await this.#mkdir();
    const probe = join(this.#dir, `.weir-probe-${randomUUID()}.tmp`);
    await writeFile(probe, '', 'utf8');
    await unlink(probe);
  }

  #mkdir(): Promise<unknown> {
    this.#ready ??= mkdir(this.#dir, { recursive: true }).catch((error: unknown) => {
      this.#ready = undefined;
      throw error;
    });
    return this.#ready;
  }

  async get(key: string): Promise<StoredEntry | undefined> {
    const text = await this.#read(this.#file(key));
    return text === undefined ? undefined : decodeRecord(text, key).entry;
  }

  async set(key: string, entry: StoredEntry): Promise<void> {
    const text = encodeRecord(key, entry);
    await this.#mkdir();
    const file = this.#file(key);
    const temp = `${file}.${randomUUID()}.tmp`;
    try {
      await writeFile(temp, text, 'utf8');
      await rename(temp, file);
    } catch (error) {
      await unlink(temp).catch(() => undefined);
      throw error;
    }
  }

  async delete(key: string): Promise<boolean> {
    try {
      await unlink(this.#file(key));
      return true;
    } catch (error) {
      if (isMissing(error)) return false;
      throw error;
    }
  }

  async has(key: string): Promise<boolean> {
    try {
      await stat(this.#file(key));
      return true;
    } catch (error) {
      if (isMissing(error)) return false;
      throw error;
    }
  }

  async #names(): Promise<string[]> {
    try {
      return await readdir(this.#dir);
    } catch (error) {
      if (isMissing(error)) return [];
      throw error;
    }
  }

  // The key is inside each record, so listing reads every file: fine for the journal's run records, kept in a directory of their own.
  async *entries(prefix: string): AsyncGenerator<[string, StoredEntry]> {
    for (const name of await this.#names()) {
      if (!name.endsWith(EXT)) continue;
      const text = await this.#read(join(this.#dir, name));
      if (text === undefined) continue;
      let record;
      try {
        record = decodeRecord(text);
      } catch {
        continue; // a corrupt record has no key; get() reports it
      }
      if (record.key.startsWith(prefix)) yield [record.key, record.entry];
    }
  }

  async deleteOlderThan(cutoff: number): Promise<number> {
    const names = await this.#names();
    let deleted = 0;
    for (const name of names) {
      if (!name.endsWith(EXT)) continue;
      const file = join(this.#dir, name);
      const text = await this.#read(file);
      if (text === undefined) continue;
      let writtenAt: number;
      try {
        writtenAt = decodeRecord(text).entry.writtenAt;
      } catch {
        continue; // a corrupt record has no age; get() reports it
      }
      if (writtenAt >= cutoff) continue;
      try {
        await unlink(file);
        deleted += 1;
      } catch (error) {
        if (!isMissing(error)) throw error;
      }
    }
    return deleted;
  }

  async close(): Promise<void> {}
}
