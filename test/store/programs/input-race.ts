// Races another process to store input entries key-0..key-(N-1) of run r1 in one SQLite file; prints the keys it won.
import { SqliteRunStore } from '../../../src/storage/journal/sqlite/sqlite-run-store.js';

const [, , file, name, count] = process.argv;
const store = new SqliteRunStore(file!);
await store.readInputs('r1'); // open the file before the start signal
process.send!('ready');
await new Promise<void>((resolve) => process.once('message', () => resolve()));
const won: string[] = [];
for (let i = 0; i < Number(count); i++) {
  if (await store.putInput('r1', { key: `key-${i}`, outcome: 'answered', value: name, at: Date.now() })) won.push(`key-${i}`);
}
await store.close();
process.send!(won, () => process.disconnect());
