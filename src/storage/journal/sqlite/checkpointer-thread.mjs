/**
 * The checkpointer thread's entry: its own connection to the journal's file, and a passive
 * checkpoint on each request, so the fsyncs of a checkpoint never stall the event loop or a commit.
 * Plain JavaScript, so it starts from weir's sources without a TypeScript loader (which would cost
 * the thread a quarter of a second); built as an entry of its own next to `index`. Its messages are
 * those of `checkpointer-protocol.ts`. @internal
 */
import { statSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';

/** @type {{ file: string, synchronous: 'NORMAL' | 'FULL', busyTimeout: number, dev?: number, ino?: number }} */
const data = workerData;
const port = parentPort;
const db = new Database(data.file, { fileMustExist: true, timeout: data.busyTimeout });
db.pragma(`synchronous = ${data.synchronous}`);
db.pragma('wal_autocheckpoint = 0');
const opened = statSync(data.file, { throwIfNoEntry: false });

if (data.ino !== undefined && (opened?.dev !== data.dev || opened?.ino !== data.ino)) {
  // Another file is at the path now, and the WAL there is the main connection's: its pages must not go into that file.
  db.close();
  port.close();
} else {
  port.on('message', (/** @type {'checkpoint' | 'close'} */ message) => {
    if (message === 'close') {
      db.close();
      port.close();
      return;
    }
    try {
      db.pragma('wal_checkpoint(PASSIVE)');
    } catch {
      // Busy or failing: the writer's own autocheckpoint still runs.
    }
    port.postMessage('done');
  });
}
