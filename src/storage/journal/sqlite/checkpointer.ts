/**
 * Checkpoints on a thread of their own (`checkpointer-thread`), asked for every so many commits.
 * The main connection's autocheckpoint stays as the fallback: it finds little left to copy, and
 * takes over if the thread cannot run.
 * @internal
 */
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { CheckpointerData, CheckpointerRequest } from './checkpointer-protocol.js';

/**
 * Commits between two checkpoints on the checkpointer thread. A step commit writes ~2.6 pages to the
 * WAL, mostly the same few again (the run's last events leaf and those above it), and a checkpoint
 * copies each page once: checkpointing every 1024 commits rather than every 256 copies far fewer
 * pages per commit (a 200-step chain ~8% faster), and the WAL stays near 11 MB, well under the
 * main connection's autocheckpoint (`WAL_AUTOCHECKPOINT_PAGES`, ~40 MB).
 */
const CHECKPOINT_EVERY = 1024;

const here = import.meta.url;

/**
 * The thread's entry file, in the format of the code now running: built JavaScript next to it in
 * `dist/`, or, from weir's sources, the plain JavaScript module itself.
 */
export function checkpointerEntry(): string {
  if (here.endsWith('.ts')) return fileURLToPath(new URL('./checkpointer-thread.mjs', here));
  return fileURLToPath(new URL(`./checkpointer-thread${here.endsWith('.cjs') ? '.cjs' : '.js'}`, here));
}

/** Asks one database file's checkpointer thread for checkpoints; starts it on the first. */
export class Checkpointer {
  readonly #data: CheckpointerData;
  /** The identity of the file the main connection opened, once it did. */
  readonly #identity: () => { readonly dev: number; readonly ino: number } | undefined;
  #worker: Worker | undefined;
  /** A checkpoint was asked for and has not finished; none is asked for again meanwhile. */
  #checkpointing = false;
  #failed = false;
  #closed = false;
  #sinceCheckpoint = 0;
  #closing: Promise<void> | undefined;

  constructor(data: CheckpointerData, identity: () => { readonly dev: number; readonly ino: number } | undefined = () => undefined) {
    this.#data = data;
    this.#identity = identity;
  }

  /** Counts commits; asks for a checkpoint once enough have been made since the last. */
  committed(count: number): void {
    this.#sinceCheckpoint += count;
    if (this.#sinceCheckpoint >= CHECKPOINT_EVERY) this.#request();
  }

  #request(): void {
    if (this.#checkpointing || this.#failed || this.#closed) return;
    this.#sinceCheckpoint = 0;
    this.#checkpointing = true;
    try {
      this.#worker ??= this.#start();
      this.#worker.postMessage('checkpoint' satisfies CheckpointerRequest);
    } catch {
      this.#failed = true;
    }
  }

  #start(): Worker {
    const worker = new Worker(checkpointerEntry(), { workerData: { ...this.#data, ...this.#identity() } satisfies CheckpointerData });
    worker.on('message', () => {
      this.#checkpointing = false;
    });
    worker.on('error', () => {
      this.#failed = true;
    });
    worker.on('exit', () => {
      if (this.#worker === worker) this.#worker = undefined;
    });
    worker.unref(); // after the listeners: adding a 'message' listener refs the worker again
    return worker;
  }

  /** Closes the thread's connection and waits for the thread to end; asks for no checkpoint after. Idempotent. */
  close(): Promise<void> {
    this.#closed = true;
    this.#closing ??= (async () => {
      const worker = this.#worker;
      if (worker === undefined) return;
      const exited = once(worker, 'exit').catch(() => undefined);
      worker.ref(); // so the wait for it keeps the process alive
      worker.postMessage('close' satisfies CheckpointerRequest);
      await exited;
    })();
    return this.#closing;
  }
}
