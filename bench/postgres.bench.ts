/**
 * Durable runs on Postgres, against one server started here (fsync on): the cost of a durable step
 * of a sequential 200-step chain (~100-byte outputs) as a ratio to the same chain on the memory
 * store and as plain `SELECT 1` round trips; one-step runs per second taken from the queue by 1, 2
 * and 3 worker processes against the same runs started at once in one process; and the time a
 * surviving worker takes to go on with the runs of a worker killed with SIGKILL, against the lease
 * timeout (workers as on two hosts, and on one); how soon a parked run answered from another context
 * goes on (the notice, not a poll). Last, the statements a chain step and a queued run
 * send, counted by pg_stat_statements (after a restart that loads it) when the server has it.
 * Run alone with `node --import ./bench/loader/register.mjs bench/postgres.bench.ts`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { availableParallelism, loadavg } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import pg from 'pg';
import { z } from 'zod';
import { Flow, FlowContext, Processor, ResultsManager, type AnyFlow } from '../src/index.js';
import { runStoreOf } from '../src/results/results-manager.js';
import type { PostgresRunStore } from '../src/storage/journal/postgres/postgres-run-store.js';
import { startPostgres, type PostgresServer } from '../test/support/postgres-server.js';
import { measure, perItem, row, TS_LOADER } from './harness.js';
import { Carried as N, Next, TEXT } from './processors.js';

const WORKER = join(import.meta.dirname, 'programs', 'postgres-worker.ts');

/** `Next` after a sleep of `ms`: a step that takes a while. */
class SlowNext extends Processor<typeof N, typeof N> {
  readonly input = N;
  readonly output = N;
  readonly #ms: number;
  constructor(ms: number) {
    super();
    this.#ms = ms;
  }
  async process(input: N): Promise<N> {
    await sleep(this.#ms);
    return { n: input.n + 1, text: input.text };
  }
}

const CHAIN_STEPS = 200;
/** One-step runs per throughput measurement. */
const RUNS = 3000;
/** Runs a worker holds (and steps it runs) at once in the throughput measurements. */
const WORKER_CONCURRENCY = 500;
const WORKER_COUNTS = [1, 2, 3] as const;
const FAILOVER_ROUNDS = 3;
const FAILOVER_LEASE_MS = 2000;
const FAILOVER_RUNS = 40;
const FAILOVER_STEPS = 20;
const FAILOVER_STEP_MS = 20;
/** Runs each failover worker holds at once: 2 workers run the 40 runs in waves, so runs are midway at the kill. */
const FAILOVER_CONCURRENCY = 10;
const FAILOVER_POLL_MS = 200;

function chain(steps: number): Flow<N, Record<string, unknown>> {
  const root = Flow.sequential<N>(`chain-${steps}`);
  for (let i = 0; i < steps; i++) new Flow(new Next(), { name: `s${i}` }).registerTo(root);
  return root;
}

/**
 * The flows the workers run, by the spec they get in argv: `one` (a one-step run) or
 * `chain:<steps>:<ms>` (a sequential chain of steps that sleep `ms`). The bench enqueues the same.
 */
export function benchFlow(spec: string): AnyFlow {
  if (spec === 'one') return new Flow(new Next(), { name: 'pg-one' });
  const [kind, steps, ms] = spec.split(':');
  if (kind !== 'chain' || steps === undefined || ms === undefined) throw new Error(`unknown flow spec ${JSON.stringify(spec)}`);
  const root = Flow.sequential<N>(`pg-chain-${steps}x${ms}`);
  for (let i = 0; i < Number(steps); i++) new Flow(new SlowNext(Number(ms)), { name: `s${i}` }).registerTo(root);
  return root;
}

const median = (values: readonly number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

async function connect(url: string): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url });
  client.on('error', () => undefined);
  await client.connect();
  return client;
}

async function completedCount(db: pg.Client, schema: string): Promise<number> {
  const { rows } = await db.query<{ n: number }>(`SELECT count(*)::integer AS n FROM ${schema}.runs WHERE status = 'completed'`);
  return rows[0]!.n;
}

/** Polls every 10 ms until `n` runs of `schema` completed; returns when (performance.now()). Fails after `ms`. */
async function untilCompleted(db: pg.Client, schema: string, n: number, ms = 60_000): Promise<number> {
  const deadline = performance.now() + ms;
  for (;;) {
    const done = await completedCount(db, schema);
    if (done >= n) return performance.now();
    if (performance.now() > deadline) throw new Error(`only ${done} of ${n} runs of ${schema} completed within ${ms} ms`);
    await sleep(10);
  }
}

interface Worker {
  readonly child: ChildProcess;
  readonly pid: number;
  /** Lines the worker printed, as they came. */
  readonly lines: string[];
  /** Date.now() of each `recovered` line, by run id. */
  readonly recovered: Map<string, number>;
  /** Writes a line to its stdin. */
  tell(line: string): void;
  /** Resolves to the runs it completed and the CPU it used since ready (or since `go`), once it closed and exited. */
  stop(): Promise<{ completed: number; cpuMs: number }>;
}

async function startWorker(url: string, schema: string, spec: string, lease: number, concurrency: number, poll: number, start: 'now' | 'hold', host = '-'): Promise<Worker> {
  const args = [...TS_LOADER, WORKER, url, schema, spec, String(lease), String(concurrency), String(poll), start, host];
  const child = spawn(process.execPath, args, { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines: string[] = [];
  const recovered = new Map<string, number>();
  const ready = new Promise<void>((resolve, reject) => {
    createInterface({ input: child.stdout }).on('line', (line) => {
      lines.push(line);
      const [word, runId, at] = line.split(' ');
      if (word === 'recovered' && runId !== undefined) recovered.set(runId, Number(at));
      if (line === 'ready') resolve();
    });
    child.once('exit', (code, signal) => reject(new Error(`worker exited (${String(code ?? signal)}) before it was ready`)));
  });
  await ready;
  const exited = once(child, 'exit');
  return {
    child,
    pid: child.pid!,
    lines,
    recovered,
    tell: (line) => void child.stdin.write(`${line}\n`),
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.stdin.write('stop\n');
        const failsafe = setTimeout(() => child.kill('SIGKILL'), 15_000);
        const [code, signal] = (await exited) as [number | null, NodeJS.Signals | null];
        clearTimeout(failsafe);
        if (code !== 0) throw new Error(`worker ${child.pid} did not exit cleanly (${String(code ?? signal)})`);
      }
      const [, completed, cpuMs] = (lines.find((l) => l.startsWith('closed ')) ?? '').split(' ');
      return { completed: Number(completed ?? 0), cpuMs: Number(cpuMs ?? Number.NaN) };
    },
  };
}

/** Ends what is left of workers that failed midway. */
function killAll(workers: readonly Worker[]): void {
  for (const w of workers) if (w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGKILL');
}

/** The postgres store of a results manager, for its write counts. */
const storeOf = (results: ResultsManager): PostgresRunStore => runStoreOf(results) as PostgresRunStore;

/** Clock ticks per second of /proc's CPU times (USER_HZ: 100 on Linux). */
const TICKS = 100;

/** utime, stime, cutime, cstime of a process in ticks, and its parent, from /proc/<pid>/stat. */
function procStat(pid: number): { ppid: number; own: number; children: number } | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // After the command name in parentheses: state, ppid, ... utime (14th field), stime, cutime, cstime.
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ').map(Number);
  return { ppid: f[1]!, own: f[11]! + f[12]!, children: f[13]! + f[14]! };
}

/**
 * A reader of the CPU time the Postgres server used, in ms: its postmaster and live backends, and
 * the backends that exited (counted in the postmaster's children's times). Undefined without /proc.
 */
async function serverCpu(db: pg.Client): Promise<(() => number) | undefined> {
  const { rows } = await db.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
  const postmaster = procStat(rows[0]!.pid)?.ppid;
  if (postmaster === undefined) return undefined;
  return () => {
    const main = procStat(postmaster);
    if (main === undefined) return Number.NaN;
    let ticks = main.own + main.children;
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      const stat = procStat(Number(entry));
      if (stat?.ppid === postmaster) ticks += stat.own;
    }
    return (ticks * 1000) / TICKS;
  };
}

/** Node's CPU of this process since `from`, in ms. */
const cpuSince = (from: NodeJS.CpuUsage): number => {
  const used = process.cpuUsage(from);
  return (used.user + used.system) / 1000;
};

async function chainSection(url: string): Promise<void> {
  console.log(`\n## Durable step on Postgres: a sequential ${CHAIN_STEPS}-step chain through ctx.run, ~100-byte outputs\n`);
  row('case', 'median', 'per item', 'ratio');
  const db = await connect(url);
  try {
    const select1 = await measure('select 1', async () => {
      for (let i = 0; i < 100; i++) await db.query('SELECT 1');
    }, { warmup: 5, runs: 21 });
    const rtUs = (select1.ms * 1000) / 100;
    row('SELECT 1 round trip, plain pg.Client (baseline)', `${(select1.ms / 100).toFixed(3)} ms`, perItem(select1, 100), '1.0 rt');
    await db.query('CREATE TABLE IF NOT EXISTS bench_commit (id bigserial PRIMARY KEY, v text NOT NULL)');
    const commit = await measure('insert commit', async () => {
      for (let i = 0; i < 50; i++) await db.query('INSERT INTO bench_commit (v) VALUES ($1)', [TEXT]);
    }, { warmup: 2, runs: 11 });
    row('one-row INSERT, autocommit (fsync of the WAL)', `${(commit.ms / 50).toFixed(3)} ms`, perItem(commit, 50), `${((commit.ms * 1000) / 50 / rtUs).toFixed(1)} rt`);
  
    const flow = chain(CHAIN_STEPS);
    const input = { n: 0, text: TEXT };
    const memory = new FlowContext();
    const mem = await measure('memory', () => memory.run(flow, input), { warmup: 30, runs: 21, after: () => memory.prune({ olderThan: new Date(Date.now() + 1) }) });
    await memory.close();
    row(`${CHAIN_STEPS}-step chain, memory store (baseline)`, `${mem.ms.toFixed(2)} ms`, perItem(mem, CHAIN_STEPS), '1.0x');

    const results = ResultsManager.postgres(url, { schema: 'bench_chain' });
    const ctx = await new FlowContext({ results }).ready();
    const store = storeOf(results);
    const warmup = 3;
    const runs = 11;
    const before = { ...store.writeStats };
    const m = await measure('postgres', async () => {
      const result = await ctx.run(flow, input);
      if (result.status !== 'completed') throw new Error(`the chain ended ${result.status}`);
    }, { warmup, runs });
    const groups = store.writeStats.groups - before.groups;
    const writes = store.writeStats.writes - before.writes;
    await ctx.close();
    const stepUs = (m.ms * 1000) / CHAIN_STEPS;
    const overheadUs = ((m.ms - mem.ms) * 1000) / CHAIN_STEPS;
    row(`${CHAIN_STEPS}-step chain, Postgres`, `${m.ms.toFixed(2)} ms`, perItem(m, CHAIN_STEPS), `${(m.ms / mem.ms).toFixed(1)}x`);
    row('  per step, in SELECT 1 round trips', '', `${stepUs.toFixed(1)} µs`, `${(stepUs / rtUs).toFixed(1)} rt`);
    row('  per step, in one-row INSERT commits', '', '', `${(stepUs / ((commit.ms * 1000) / 50)).toFixed(2)} commits`);
    row('  durability overhead per step (vs memory)', '', `${overheadUs.toFixed(1)} µs`, `${(overheadUs / rtUs).toFixed(1)} rt`);
    const chainSteps = (warmup + runs) * CHAIN_STEPS;
    row('  write groups per step / writes per group', '', (groups / chainSteps).toFixed(2), (writes / groups).toFixed(2));
    console.log(`\naim: under 0.4 ms per durable step (DBOS Transact: about 1.6 ms); here ${(stepUs / 1000).toFixed(3)} ms per step`);
  } finally {
    await db.end();
  }
}

async function throughputSection(url: string): Promise<void> {
  console.log(`\n## One-step durable runs per second on Postgres: ${RUNS} runs; concurrency ${WORKER_CONCURRENCY} (steps and queued runs) per process\n`);
  row('case', 'time', 'runs/s', 'vs ctx.run');
  const flow = benchFlow('one');
  const db = await connect(url);
  const server = await serverCpu(db);
  const cpuRow = (node: string, nodeMs: number, serverMs: number, wallMs: number) =>
    row(`  CPU µs per run: ${node} / Postgres (cores busy)`, ((nodeMs * 1000) / RUNS).toFixed(0), ((serverMs * 1000) / RUNS).toFixed(0), `(${((nodeMs + serverMs) / wallMs).toFixed(2)})`);
  try {
    // Baseline: the runs started at once in this process with ctx.run.
    const results = ResultsManager.postgres(url, { schema: 'bench_inproc' });
    const ctx = await new FlowContext({ results, concurrency: WORKER_CONCURRENCY }).ready();
    const all = async (n: number) => {
      const done = await Promise.all(Array.from({ length: n }, (_, i) => ctx.run(flow, { n: i, text: TEXT })));
      if (done.some((r) => r.status !== 'completed')) throw new Error('a one-step run did not complete');
    };
    await all(500);
    const before = { ...storeOf(results).writeStats };
    const cpu0 = process.cpuUsage();
    const server0 = server?.() ?? Number.NaN;
    const t0 = performance.now();
    await all(RUNS);
    const inproc = performance.now() - t0;
    const nodeMs = cpuSince(cpu0);
    const serverMs = (server?.() ?? Number.NaN) - server0;
    const stats = storeOf(results).writeStats;
    await ctx.close();
    const baseRate = RUNS / (inproc / 1000);
    row(`${RUNS} runs at once, ctx.run in one process (baseline)`, `${inproc.toFixed(0)} ms`, baseRate.toFixed(0), '1.00x');
    row('  writes per run / writes per group', '', ((stats.writes - before.writes) / RUNS).toFixed(2), ((stats.writes - before.writes) / (stats.groups - before.groups)).toFixed(1));
    cpuRow('this process', nodeMs, serverMs, inproc);

    for (const k of WORKER_COUNTS) {
      const schema = `bench_queue_${k}`;
      const client = await new FlowContext({ results: ResultsManager.postgres(url, { schema }) }).ready();
      client.register(flow);
      const workers: Worker[] = [];
      try {
        workers.push(...(await Promise.all(Array.from({ length: k }, () => startWorker(url, schema, 'one', 30_000, WORKER_CONCURRENCY, 1000, 'hold')))));
        const e0 = performance.now();
        await Promise.all(Array.from({ length: RUNS }, (_, i) => client.enqueue(flow, { n: i, text: TEXT })));
        const enqueued = performance.now() - e0;
        if (k === 1) row(`  enqueue ${RUNS} runs (ctx.enqueue, all at once)`, `${enqueued.toFixed(0)} ms`, (RUNS / (enqueued / 1000)).toFixed(0), '');
        const server0 = server?.() ?? Number.NaN;
        const r0 = performance.now();
        for (const w of workers) w.tell('go');
        const r1 = await untilCompleted(db, schema, RUNS);
        const serverMs = (server?.() ?? Number.NaN) - server0;
        const rate = RUNS / ((r1 - r0) / 1000);
        const stopped = await Promise.all(workers.map((w) => w.stop()));
        row(`${RUNS} queued runs, ${k} worker process${k === 1 ? '' : 'es'}`, `${(r1 - r0).toFixed(0)} ms`, rate.toFixed(0), `${(rate / baseRate).toFixed(2)}x`);
        if (k > 1) row('  runs completed by each worker', '', stopped.map((w) => w.completed).join('/'), '');
        cpuRow(k === 1 ? 'worker' : 'workers', stopped.reduce((sum, w) => sum + w.cpuMs, 0), serverMs, r1 - r0);
      } finally {
        killAll(workers);
        await client.close();
      }
    }
    console.log(
      `\naim: over 3,000 runs/s with one worker, growing with more (DBOS: about 750/s); this machine has ${availableParallelism()} cores for the workers, this process and the server`,
    );
  } finally {
    await db.end();
  }
}

interface Failover {
  readonly victimRuns: number;
  /** From the kill to the expiry of the first of the victim's leases, in ms. */
  readonly leaseLeft: number;
  /** From the kill to the first of the victim's runs taken over by the survivor, in ms. */
  readonly firstTaken: number;
  /** From the kill to every run completed, in ms. */
  readonly allDone: number;
  readonly taken: number;
}

/** `apart`: the workers say they run on hosts of their own, so a dead one is found by its leases running out; `same`: one host, where its pid is seen gone. */
type Hosts = 'apart' | 'same';

async function failoverRound(url: string, db: pg.Client, hosts: Hosts, round: number): Promise<Failover> {
  const schema = `bench_failover_${hosts}_${round}`;
  const spec = `chain:${FAILOVER_STEPS}:${FAILOVER_STEP_MS}`;
  const flow = benchFlow(spec);
  const client = await new FlowContext({ results: ResultsManager.postgres(url, { schema }) }).ready();
  client.register(flow);
  const workers: Worker[] = [];
  try {
    workers.push(
      ...(await Promise.all(
        ['a', 'b'].map((name) => startWorker(url, schema, spec, FAILOVER_LEASE_MS, FAILOVER_CONCURRENCY, FAILOVER_POLL_MS, 'now', hosts === 'apart' ? `bench-host-${name}` : '-')),
      )),
    );
    await Promise.all(Array.from({ length: FAILOVER_RUNS }, (_, i) => client.enqueue(flow, { n: 0, text: TEXT }, { runId: `fo-${round}-${String(i).padStart(2, '0')}` })));
    // Some runs completed, and the next wave a few steps in.
    await untilCompleted(db, schema, 5);
    await sleep(100);
    const { rows: owners } = await db.query<{ pid: number; n: number }>(
      `SELECT (owner::jsonb->>'pid')::integer AS pid, count(*)::integer AS n FROM ${schema}.runs WHERE status = 'running' AND owner IS NOT NULL GROUP BY 1 ORDER BY 2 DESC`,
    );
    const victim = workers.find((w) => w.pid === owners[0]?.pid);
    const survivor = workers.find((w) => w !== victim);
    if (victim === undefined || survivor === undefined) throw new Error(`no worker holds a running run (owners: ${JSON.stringify(owners)})`);
    const { rows: held } = await db.query<{ run_id: string }>(
      `SELECT run_id FROM ${schema}.runs WHERE status = 'running' AND (owner::jsonb->>'pid')::integer = $1`,
      [victim.pid],
    );
    const exited = once(victim.child, 'exit');
    const killedAt = Date.now();
    victim.child.kill('SIGKILL');
    await exited;
    const ids = held.map((r) => r.run_id);
    // What the killed worker left: the leases of its runs, as last renewed (read before any can be taken over).
    const { rows: leases } = await db.query<{ expires: number | null }>(
      `SELECT min(lease_expires_at)::float8 AS expires FROM ${schema}.runs WHERE run_id = ANY($1) AND (owner::jsonb->>'pid')::integer = $2`,
      [ids, victim.pid],
    );
    await untilCompleted(db, schema, FAILOVER_RUNS);
    const allDoneAt = Date.now();
    const taken = ids.map((id) => survivor.recovered.get(id)).filter((at): at is number => at !== undefined);
    if (taken.length === 0) {
      const seen = [];
      for (const id of ids) {
        const types: string[] = [];
        for await (const e of client.events(id)) types.push(e.type === 'run_resumed' ? `resumed:${e.reason}` : e.type);
        const info = await client.getRun(id);
        seen.push(`${id} recoveries ${info.recoveries} ranBy ${info.ranBy} events ${types.filter((x) => !x.startsWith('step')).join(',')}`);
      }
      throw new Error(`none of the ${ids.length} runs of the killed worker was taken over (victim ${victim.pid}, survivor ${survivor.pid}):\n${seen.join('\n')}`);
    }
    await survivor.stop();
    const expires = leases[0]?.expires ?? Number.NaN;
    return { victimRuns: ids.length, leaseLeft: expires - killedAt, firstTaken: Math.min(...taken) - killedAt, allDone: allDoneAt - killedAt, taken: taken.length };
  } finally {
    killAll(workers);
    await client.close();
  }
}

async function failoverSection(url: string): Promise<void> {
  console.log(
    `\n## Failover: 2 worker processes, ${FAILOVER_RUNS} runs of a ${FAILOVER_STEPS}-step chain (${FAILOVER_STEP_MS} ms a step), one killed with SIGKILL\n` +
      `   (leaseTimeout ${FAILOVER_LEASE_MS} ms, queue concurrency ${FAILOVER_CONCURRENCY}, pollInterval ${FAILOVER_POLL_MS} ms; times from the kill)`,
  );
  const db = await connect(url);
  try {
    for (const hosts of ['apart', 'same'] as const) {
      console.log(
        hosts === 'apart'
          ? '\nworkers as on two hosts (each says a host name of its own): the dead one is found when its leases run out\n'
          : '\nworkers on one host: a survivor sees the dead pid at its next recovery pass (every leaseTimeout), before the leases run out\n',
      );
      row('round', 'lease left ms', 'first taken ms', 'vs lease', 'all done ms');
      const rounds: Failover[] = [];
      for (let i = 1; i <= FAILOVER_ROUNDS; i++) {
        const r = await failoverRound(url, db, hosts, i);
        rounds.push(r);
        row(
          `${i} (killed worker held ${r.victimRuns} runs, ${r.taken} taken over)`,
          r.leaseLeft.toFixed(0),
          r.firstTaken.toFixed(0),
          `${(r.firstTaken / FAILOVER_LEASE_MS).toFixed(2)}x`,
          r.allDone.toFixed(0),
        );
      }
      const first = median(rounds.map((r) => r.firstTaken));
      row(`median of ${FAILOVER_ROUNDS}`, median(rounds.map((r) => r.leaseLeft)).toFixed(0), first.toFixed(0), `${(first / FAILOVER_LEASE_MS).toFixed(2)}x`, median(rounds.map((r) => r.allDone)).toFixed(0));
    }
    console.log('\n"lease left": from the kill to the expiry of the first lease the killed worker held; "vs lease": first taken / leaseTimeout');
  } finally {
    await db.end();
  }
}

interface Statement {
  readonly calls: number;
  readonly toplevel: boolean;
  readonly ms: number;
  readonly query: string;
}

/**
 * Prints the statements pg_stat_statements counted since its last reset, per `per` of `unit`: every
 * top-level one, and with `nested` those run inside them at least `per / 4` times.
 */
async function printStatements(db: pg.Client, per: number, unit: string, nested = true): Promise<void> {
  const { rows } = await db.query<Statement>(
    `SELECT calls::integer AS calls, toplevel, total_exec_time AS ms, query FROM pg_stat_statements
     WHERE query !~* 'pg_stat_statements' AND query !~ 'count\\(\\*\\)::integer AS n' AND dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
     ORDER BY toplevel DESC, calls DESC`,
  );
  row('statement (top level, then run inside them)', 'calls', `per ${unit}`, 'exec µs/call');
  for (const r of rows) {
    if (!r.toplevel && (!nested || r.calls < per / 4)) continue;
    const text = r.query.replace(/\s+/g, ' ').replace(/"bench_\w+"\./g, '').trim();
    row(`${r.toplevel ? '' : '  in: '}${text.slice(0, r.toplevel ? 50 : 44)}`, String(r.calls), (r.calls / per).toFixed(2), ((r.ms * 1000) / r.calls).toFixed(1));
  }
  const top = rows.filter((r) => r.toplevel).reduce((sum, r) => sum + r.calls, 0);
  console.log(`top-level statements: ${top}, ${(top / per).toFixed(2)} per ${unit}`);
}

/** The statements a chain step and a queued run send, by pg_stat_statements: loaded by a restart of the server, after the timed parts. */
async function statementsSection(server: PostgresServer): Promise<void> {
  console.log('\n## Where the time goes: statements counted by pg_stat_statements (track = all), loaded by a restart after the timed parts');
  const admin = await connect(server.url);
  try {
    await admin.query(`ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'`);
  } finally {
    await admin.end();
  }
  await server.restart();
  const db = await connect(server.url);
  try {
    try {
      await db.query('CREATE EXTENSION IF NOT EXISTS pg_stat_statements');
      await db.query(`ALTER SYSTEM SET pg_stat_statements.track = 'all'`);
      await db.query('SELECT pg_reload_conf()');
    } catch (error) {
      console.log(`pg_stat_statements is not available (${(error as Error).message}); see the write groups per step above`);
      return;
    }
    console.log(`\nOne ${CHAIN_STEPS}-step chain (ctx.run), after a warm-up run:\n`);
    const flow = chain(CHAIN_STEPS);
    const ctx = await new FlowContext({ results: ResultsManager.postgres(server.url, { schema: 'bench_chain' }) }).ready();
    try {
      await ctx.run(flow, { n: 0, text: TEXT });
      await db.query('SELECT pg_stat_statements_reset()');
      const result = await ctx.run(flow, { n: 0, text: TEXT });
      if (result.status !== 'completed') throw new Error(`the chain ended ${result.status}`);
    } finally {
      await ctx.close();
    }
    await printStatements(db, CHAIN_STEPS, 'step');

    const runs = 1500;
    const one = benchFlow('one');
    for (const k of [1, 3]) {
      console.log(`\n${runs} queued one-step runs taken by ${k} worker process${k === 1 ? '' : 'es'} (concurrency ${WORKER_CONCURRENCY}), enqueue included${k === 1 ? '' : ', top level only'}:\n`);
      const schema = `bench_queue_count_${k}`;
      const client = await new FlowContext({ results: ResultsManager.postgres(server.url, { schema }) }).ready();
      client.register(one);
      const workers: Worker[] = [];
      try {
        workers.push(...(await Promise.all(Array.from({ length: k }, () => startWorker(server.url, schema, 'one', 30_000, WORKER_CONCURRENCY, 1000, 'hold')))));
        await db.query('SELECT pg_stat_statements_reset()');
        await Promise.all(Array.from({ length: runs }, (_, i) => client.enqueue(one, { n: i, text: TEXT })));
        for (const w of workers) w.tell('go');
        await untilCompleted(db, schema, runs);
        await Promise.all(workers.map((w) => w.stop()));
      } finally {
        killAll(workers);
        await client.close();
      }
      await printStatements(db, runs, 'run', k === 1);
    }
  } finally {
    await db.end();
  }
}

/** The 1-minute load average: other work on the machine skews every figure here. */
const load = (): string => loadavg()[0]!.toFixed(2);

/**
 * How soon a parked run goes on once another context answers it: the answering context (a store of
 * its own, no flow registered, as on another host) stores the answer; the worker hears the notice
 * and goes on. Polls and reviews are an hour apart, so only the notice can wake it.
 */
async function wakeSection(url: string): Promise<void> {
  console.log('\n## A parked run answered from another context: from the stored answer to the run going on in the worker\n');
  const schema = 'bench_wake';
  const asks = new Flow(
    new (class extends Processor<z.ZodUnknown, z.ZodString> {
      readonly input = z.unknown();
      readonly output = z.string();
      async process(_input: unknown, step: import('../src/index.js').Step): Promise<string> {
        return `got ${await step.waitForInput('name', z.string())}`;
      }
    })(),
    { name: 'asks' },
  );
  const worker = new FlowContext({ results: ResultsManager.postgres(url, { schema }), recover: true, leaseTimeout: 3_600_000, queue: { pollInterval: 3_600_000 } });
  worker.register(asks);
  const other = await new FlowContext({ results: ResultsManager.postgres(url, { schema }) }).ready();
  try {
    await worker.ready();
    const samples: number[] = [];
    for (let i = 0; i < 25; i++) {
      const runId = `wake-${i}`;
      const parked = new Promise((resolve) => worker.once('run_waiting', resolve));
      worker.start(asks, null, { mode: 'interactive', runId });
      await parked;
      await sleep(20);
      const resumed = new Promise<number>((resolve) => {
        const on = (e: { runId: string }): void => {
          if (e.runId !== runId) return;
          worker.off('run_resumed', on);
          resolve(performance.now());
        };
        worker.on('run_resumed', on);
      });
      await other.submitInput(runId, 'name', 'Ada');
      const stored = performance.now();
      samples.push((await resumed) - stored);
    }
    samples.sort((a, b) => a - b);
    row('case', 'median', 'p90', 'max');
    row('answer stored -> run_resumed in the worker (25 runs)', `${samples[12]!.toFixed(1)} ms`, `${samples[22]!.toFixed(1)} ms`, `${samples[24]!.toFixed(1)} ms`);
    console.log('\naim: under 100 ms');
  } finally {
    await other.close();
    await worker.close();
  }
}

export async function postgresBench(): Promise<void> {
  console.log(`\n# Postgres (a server started here, fsync on); load average at the start: ${load()}`);
  const server = await startPostgres();
  try {
    await chainSection(server.url);
    await throughputSection(server.url);
    await failoverSection(server.url);
    await wakeSection(server.url);
    await statementsSection(server);
  } finally {
    await server.stop();
  }
  console.log(`\nload average at the end: ${load()}`);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  console.log(`weir Postgres benchmark on Node ${process.version}, ${availableParallelism()} cores`);
  await postgresBench();
}
