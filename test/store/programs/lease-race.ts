// Races another process for the leases of runs run-0..run-(N-1) in one SQLite file; prints the runs it won.
import { SqliteRunStore } from '../../../src/storage/journal/sqlite/sqlite-run-store.js';

const [, , file, name, count] = process.argv;
const store = new SqliteRunStore(file!);
const owner = { processId: `${name}:${process.pid}`, host: name!, pid: process.pid };
await store.listRuns({ now: 0, limit: 1 }); // open the file before the start signal
process.send!('ready');
await new Promise<void>((resolve) => process.once('message', () => resolve()));
const won: Record<string, number> = {};
for (let i = 0; i < Number(count); i++) {
  const token = await store.acquireLease(`run-${i}`, owner, 60_000, Date.now(), { takeover: true });
  if (token !== undefined) won[`run-${i}`] = token;
}
await store.close();
process.send!(won, () => process.disconnect());
