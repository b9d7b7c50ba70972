/** What the main thread and the checkpointer thread say to each other; both sides import it. @internal */

/** The checkpointer thread's `workerData`. */
export interface CheckpointerData {
  /** The database file, which the main connection has already made. */
  readonly file: string;
  readonly synchronous: 'NORMAL' | 'FULL';
  /** How long to wait for another connection's lock, in milliseconds. */
  readonly busyTimeout: number;
  /** The device and inode of the file the main connection opened: the thread checkpoints only that file, not one put at the path since. */
  readonly dev?: number;
  readonly ino?: number;
}

/** To the thread: run a passive checkpoint, or close the connection and end. */
export type CheckpointerRequest = 'checkpoint' | 'close';

/** From the thread: a checkpoint was asked for and has finished (or could not run). */
export type CheckpointerReply = 'done';
