/**
 * The checkpointer thread's entry: its own connection to the journal's file, and a passive
 * checkpoint on each request, so the fsyncs of a checkpoint never stall the event loop or a commit.
 * Built as an entry of its own next to `index`; imports nothing of weir but the protocol's types.
 * @internal
 */
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';
import type { CheckpointerData, CheckpointerReply, CheckpointerRequest } from './checkpointer-protocol.js';

const data = workerData as CheckpointerData;
const port = parentPort!;
const db = new Database(data.file, { fileMustExist: true, timeout: data.busyTimeout });
db.pragma(`synchronous = ${data.synchronous}`);
db.pragma('wal_autocheckpoint = 0');

port.on('message', (message: CheckpointerRequest) => {
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
  port.postMessage('done' satisfies CheckpointerReply);
});
