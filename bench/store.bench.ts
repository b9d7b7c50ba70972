/**
 * The run journal: commit cost on SQLite (NORMAL and FULL, one by one and 100 at once) against a
 * raw better-sqlite3 loop doing the same writes, the memory store's commit, one-step runs per
 * second, and the bytes a 200-step chain's journal takes. Run alone with `node --import ./bench/loader/register.mjs bench/store.bench.ts`.
 */
import { statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import Database from 'better-sqlite3';
import type { WeirEvent } from '../src/model/events.js';
import { encode } from '../src/storage/codec.js';
import { ResultsManager, runStoreOf } from '../src/results/results-manager.js';
import { MemoryRunStore } from '../src/storage/journal/memory-run-store.js';
import type { CommitBatch, RunOwner, RunStore, StepRecord } from '../src/storage/journal/run-store.js';
import { SqliteRunStore } from '../src/storage/journal/sqlite/sqlite-run-store.js';
import { row } from './harness.js';

type Sync = 'NORMAL' | 'FULL';
const OWNER: RunOwner = { processId: 'bench:1', host: 'bench', pid: 1 };
// About 100 bytes once encoded.
const OUTPUT = { words: 12, text: 'the quick brown fox jumps over the lazy dog', at: 1_700_000_000_000 };

function newRun(runId: string, t: number) {
  return {
    runId,
    flow: 'bench',
    fingerprint: 'fp',
    input: { text: 'a b c' },
    mode: 'batch' as const,
    humanInLoop: false,
    status: 'running' as const,
    createdAt: t,
    updatedAt: t,
    owner: OWNER,
    leaseExpiresAt: t + 30_000,
  };
}

function runStart(runId: string, t: number): WeirEvent {
  return { type: 'run_start', runId, seq: 1, time: t, flow: 'bench', mode: 'batch' };
}

/** The batch a step completion makes: its record, its output, `step_complete` and the next `step_start` (no run patch, as the scheduler commits it). */
function completion(runId: string, token: number, i: number, seq: number, t: number): CommitBatch {
  const step = `s${i}`;
  const record: StepRecord = {
    runId,
    step,
    status: 'completed',
    attempts: [{ attempt: 1, startTime: t, endTime: t, duration: 0 }],
    startTime: t,
    endTime: t,
    hasOutput: true,
    updatedAt: t,
  };
  return {
    runId,
    leaseToken: token,
    steps: [record],
    outputs: [{ step, value: OUTPUT }],
    events: [
      { type: 'step_complete', runId, seq, time: t, step, attempt: 1, duration: 0 },
      { type: 'step_start', runId, seq: seq + 1, time: t, step: `s${i + 1}`, attempt: 1 },
    ],
  };
}

function cpu(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/** One commit after another, each awaited: µs of wall time and of CPU per commit. */
async function sequential(store: RunStore, runId: string, n: number): Promise<{ wall: number; cpu: number }> {
  const t = Date.now();
  const { leaseToken } = await store.createRun(newRun(runId, t), [runStart(runId, t)]);
  const batches = Array.from({ length: n }, (_, i) => completion(runId, leaseToken, i, 2 + 2 * i, t));
  const c0 = cpu();
  const start = performance.now();
  for (const batch of batches) await store.commit(batch);
  return { wall: ((performance.now() - start) * 1000) / n, cpu: ((cpu() - c0) * 1000) / n };
}

/** `width` runs committing at once, `rounds` times: µs of wall time and of CPU per commit. */
async function concurrent(store: RunStore, prefix: string, width: number, rounds: number): Promise<{ wall: number; cpu: number }> {
  const t = Date.now();
  const tokens = await Promise.all(Array.from({ length: width }, async (_, r) => (await store.createRun(newRun(`${prefix}${r}`, t), [runStart(`${prefix}${r}`, t)])).leaseToken));
  const c0 = cpu();
  const start = performance.now();
  for (let i = 0; i < rounds; i++) {
    await Promise.all(tokens.map((token, r) => store.commit(completion(`${prefix}${r}`, token, i, 2 + 2 * i, t))));
  }
  return { wall: ((performance.now() - start) * 1000) / (width * rounds), cpu: ((cpu() - c0) * 1000) / (width * rounds) };
}

/**
 * The same writes as a step-completion commit straight through better-sqlite3, on the store's own
 * connection (so the same schema, indexes and pragmas): values pre-encoded, the run's head (lease
 * token, last event's seq) read for the fence, both events in one row with the step record and
 * output on it, one `BEGIN IMMEDIATE` transaction per `perTransaction` commits.
 */
async function rawLoop(file: string, sync: Sync, n: number, perTransaction: number): Promise<{ wall: number; cpu: number }> {
  const store = new SqliteRunStore(file, { synchronous: sync });
  const t = Date.now();
  await store.createRun(newRun('raw', t), [runStart('raw', t)]);
  const db = await store.database();
  const head = db.prepare('SELECT lease_token, (SELECT max(seq) FROM weir_events WHERE run_id = ?) AS last_seq FROM weir_runs WHERE run_id = ?');
  const events = db.prepare('INSERT INTO weir_events (run_id, seq, first_seq, data, records) VALUES (?, ?, ?, ?, ?)');
  const texts = Array.from({ length: n }, (_, i) => {
    const batch = completion('raw', 1, i, 2 + 2 * i, t);
    return { records: JSON.stringify({ s: batch.steps, o: [[`s${i}`, JSON.stringify(OUTPUT)]] }), events: `[${batch.events!.map((e) => JSON.stringify(e)).join(',')}]` };
  });
  const write = db.transaction((from: number, count: number) => {
    for (let i = from; i < from + count; i++) {
      const text = texts[i]!;
      const { lease_token: token, last_seq: lastSeq } = head.get('raw', 'raw') as { lease_token: number; last_seq: number };
      if (token !== 1 || lastSeq !== 1 + 2 * i) throw new Error('raw: unexpected head');
      events.run('raw', 3 + 2 * i, 2 + 2 * i, text.events, text.records);
    }
  });
  const c0 = cpu();
  const start = performance.now();
  for (let i = 0; i < n; i += perTransaction) write.immediate(i, perTransaction);
  const result = { wall: ((performance.now() - start) * 1000) / n, cpu: ((cpu() - c0) * 1000) / n };
  await store.close();
  return result;
}

/** One-step runs, `count` started at once: create (with run_start), step start, step completion with the run's end. */
async function oneStepRuns(store: RunStore, prefix: string, count: number): Promise<number> {
  const start = performance.now();
  await Promise.all(
    Array.from({ length: count }, async (_, r) => {
      const runId = `${prefix}${r}`;
      const t = Date.now();
      const { leaseToken } = await store.createRun(newRun(runId, t), [runStart(runId, t)]);
      await store.commit({
        runId,
        leaseToken,
        steps: [{ runId, step: 'only', status: 'running', attempts: [], startTime: t, hasOutput: false, updatedAt: t }],
        events: [{ type: 'step_start', runId, seq: 2, time: t, step: 'only', attempt: 1 }],
      });
      await store.commit({
        runId,
        leaseToken,
        run: { status: 'completed', endedAt: t, updatedAt: t, output: { only: OUTPUT } },
        steps: [{ runId, step: 'only', status: 'completed', attempts: [{ attempt: 1, startTime: t, endTime: t, duration: 0 }], startTime: t, endTime: t, hasOutput: true, updatedAt: t }],
        outputs: [{ step: 'only', value: OUTPUT }],
        events: [
          { type: 'step_complete', runId, seq: 3, time: t, step: 'only', attempt: 1, duration: 0 },
          { type: 'run_complete', runId, seq: 4, time: t, duration: 0 },
        ],
      });
    }),
  );
  return (count / (performance.now() - start)) * 1000;
}

/** The SQLite bytes of one chain's journal: the rows' payloads and the file's growth. */
async function chainBytes(dir: string, steps: number): Promise<{ payload: number; file: number; outputs: number }> {
  const file = join(dir, `chain-${steps}.db`);
  const store = new SqliteRunStore(file);
  await store.createRun(newRun('warm', Date.now()));
  await store.close();
  const empty = checkpointedSize(file);
  const chain = new SqliteRunStore(file);
  await sequential(chain, 'chain', steps);
  await chain.commit({ runId: 'chain', leaseToken: 1, run: { status: 'completed', output: undefined } });
  await chain.close();
  const db = new Database(file);
  const payload = db
    .prepare(
      `SELECT (SELECT coalesce(sum(length(data) + length(run_id) + length(step)), 0) FROM weir_steps WHERE run_id = 'chain')
            + (SELECT coalesce(sum(length(value) + length(run_id) + length(step)), 0) FROM weir_outputs WHERE run_id = 'chain')
            + (SELECT coalesce(sum(length(data) + coalesce(length(records), 0) + length(run_id) + 8), 0) FROM weir_events WHERE run_id = 'chain')
            + (SELECT sum(length(input) + 200) FROM weir_runs WHERE run_id = 'chain')`,
    )
    .pluck()
    .get() as number;
  db.close();
  return { payload, file: checkpointedSize(file) - empty, outputs: encode(OUTPUT).length * steps };
}

function checkpointedSize(file: string): number {
  const db = new Database(file);
  db.pragma('wal_checkpoint(TRUNCATE)');
  db.close();
  return statSync(file).size;
}

/** ns per memory commit: 100 runs of `steps` steps each, committed round-robin; min and median of `rounds` fresh stores. */
async function memoryCommitNs(steps: number, rounds: number): Promise<{ awaited: [number, number]; batched: [number, number] }> {
  const t = Date.now();
  const once = async (awaitEach: boolean): Promise<number> => {
    const store = new MemoryRunStore();
    const tokens: number[] = [];
    for (let r = 0; r < 100; r++) tokens.push((await store.createRun(newRun(`m${r}`, t), [runStart(`m${r}`, t)])).leaseToken);
    const batches: CommitBatch[] = [];
    for (let i = 0; i < steps; i++) for (let r = 0; r < 100; r++) batches.push(completion(`m${r}`, tokens[r]!, i, 2 + 2 * i, t));
    const start = performance.now();
    if (awaitEach) {
      for (const batch of batches) await store.commit(batch);
    } else {
      const pending: Promise<void>[] = [];
      for (const batch of batches) pending.push(store.commit(batch));
      await Promise.all(pending);
    }
    const ns = ((performance.now() - start) * 1e6) / batches.length;
    await store.close();
    return ns;
  };
  const stats = async (awaitEach: boolean): Promise<[number, number]> => {
    const all: number[] = [];
    for (let i = 0; i < rounds; i++) all.push(await once(awaitEach));
    all.sort((a, b) => a - b);
    return [all[0]!, all[Math.floor(all.length / 2)]!];
  };
  await once(true);
  return { awaited: await stats(true), batched: await stats(false) };
}

export async function storeBench(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'weir-store-bench-'));
  try {
    console.log('\n## Run journal: a step-completion commit (1 step record, 1 output of ~100 bytes, 2 events, no run patch)\n');
    row('case', 'µs wall', 'µs CPU', 'commits/s', 'wall vs raw');
    const figures: Record<string, number> = {};
    for (const sync of ['NORMAL', 'FULL'] as const) {
      const n = sync === 'NORMAL' ? 5000 : 300;
      const raw = await rawLoop(join(dir, `raw-${sync}.db`), sync, n, 1);
      const raw100 = await rawLoop(join(dir, `raw100-${sync}.db`), sync, n * 4, 100);
      const store = new SqliteRunStore(join(dir, `store-${sync}.db`), { synchronous: sync });
      await sequential(store, 'warm', 200);
      const seq = await sequential(store, 'seq', n);
      const conc = await concurrent(store, 'c', 100, sync === 'NORMAL' ? 50 : 10);
      await store.close();
      figures[sync] = seq.wall;
      const line = (name: string, m: { wall: number; cpu: number }) =>
        row(name, m.wall.toFixed(1), m.cpu.toFixed(1), (1e6 / m.wall).toFixed(0), `${(m.wall / raw.wall).toFixed(2)}x`);
      line(`raw better-sqlite3, 1 commit per transaction, ${sync}`, raw);
      line(`raw better-sqlite3, 100 per transaction, ${sync}`, raw100);
      line(`SqliteRunStore, sequential (awaited), ${sync}`, seq);
      line(`SqliteRunStore, 100 concurrent (group commit), ${sync}`, conc);
    }

    const kv = ResultsManager.disk(join(dir, 'disk'));
    const kvSeq = await sequential(runStoreOf(kv), 'kv', 200);
    await kv.close();
    row('KvRunStore over disk, sequential', kvSeq.wall.toFixed(1), kvSeq.cpu.toFixed(1), (1e6 / kvSeq.wall).toFixed(0), '');

    const mem = await memoryCommitNs(50, 9);
    console.log('\n## MemoryRunStore commit (same batch; 100 runs x 50 steps, round-robin)\n');
    row('case', 'ns min', 'ns median', '');
    row('awaited one by one', mem.awaited[0].toFixed(0), mem.awaited[1].toFixed(0), '');
    row('issued in a loop, awaited together', mem.batched[0].toFixed(0), mem.batched[1].toFixed(0), '');

    console.log('\n## One-step runs, 1000 started at once (create + start + completion), SQLite NORMAL\n');
    const runsStore = new SqliteRunStore(join(dir, 'runs.db'));
    await oneStepRuns(runsStore, 'warm', 200);
    const perSecond: number[] = [];
    for (let i = 0; i < 3; i++) perSecond.push(await oneStepRuns(runsStore, `r${i}-`, 1000));
    await runsStore.close();
    perSecond.sort((a, b) => a - b);
    row('one-step runs per second (median of 3)', perSecond[1]!.toFixed(0), '', '');

    console.log('\n## Bytes of a chain\'s journal on SQLite (each step ~100-byte output)\n');
    row('steps', 'payload', 'file growth', 'sum of outputs');
    for (const steps of [200, 400]) {
      const bytes = await chainBytes(dir, steps);
      row(String(steps), `${(bytes.payload / 1024).toFixed(1)} KiB`, `${(bytes.file / 1024).toFixed(1)} KiB`, `${(bytes.outputs / 1024).toFixed(1)} KiB`);
    }

    console.log(`\naims: < 80 µs per durable step on NORMAL (sequential commit: ${figures.NORMAL!.toFixed(1)} µs); > 10,000 one-step runs/s (${perSecond[1]!.toFixed(0)})`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  console.log(`weir store benchmark on Node ${process.version}`);
  await storeBench();
}
