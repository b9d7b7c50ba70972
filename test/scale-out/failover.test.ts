import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterEach, expect, it } from 'vitest';
import { FlowContext, ResultsManager, type RunHandle } from '../../src/index.js';
import { EFFECTS_TABLE, failoverChain, stepName, type Exec } from './failover-flow.js';
import { describePostgres, testDatabase } from '../support/postgres.js';
import { startPostgres, type PostgresServer } from '../support/postgres-server.js';

// Worker processes share one Postgres database: runs queued by the test are claimed by exactly one
// of them; when one dies (SIGKILL), stalls past its lease (SIGSTOP) or loses the server (a restart),
// the others, or it once back, go on, and nothing completed runs again.

const WORKER = fileURLToPath(new URL('./programs/worker.ts', import.meta.url));
const SCHEMA = 'failover';

interface Worker {
  readonly child: ChildProcess;
  readonly pid: number;
  /** Lines the worker printed. */
  readonly lines: string[];
}

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

async function startWorker(url: string, leaseMs: number, steps: number, sleepMs: number, concurrency: number): Promise<Worker> {
  const child = spawn(process.execPath, ['--import', 'tsx', WORKER, url, SCHEMA, String(leaseMs), String(steps), String(sleepMs), String(concurrency)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  cleanups.push(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await once(child, 'exit');
    }
  });
  const lines: string[] = [];
  const ready = new Promise<void>((resolve, reject) => {
    createInterface({ input: child.stdout }).on('line', (line) => {
      lines.push(line);
      if (line === 'ready') resolve();
    });
    child.once('exit', (code) => reject(new Error(`worker exited with ${code} before it was ready`)));
  });
  await ready;
  return { child, pid: child.pid!, lines };
}

async function kill(worker: Worker, signal: NodeJS.Signals): Promise<void> {
  const exited = once(worker.child, 'exit');
  worker.child.kill(signal);
  if (signal === 'SIGKILL') await exited;
}

/** What the runs and workers look like, for a test that timed out. */
let describeState: () => Promise<string> = async () => '';

/** Polls until `done()` holds, reading the database; fails after `ms`, saying where the runs are. */
async function until(what: string, ms: number, done: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await done())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; ${await describeState().catch((e: unknown) => String(e))}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

async function completedCount(pool: pg.Pool): Promise<number> {
  const { rows } = await pool.query<{ n: number }>(`SELECT count(*)::integer AS n FROM ${SCHEMA}.runs WHERE status = 'completed'`);
  return rows[0]!.n;
}

/**
 * A database with the effects table, and a client context on it; `enqueue()` queues the runs (after
 * the workers are up, so each gets its share).
 */
async function setUp(url: string, runs: number, steps: number): Promise<{ pool: pg.Pool; client: FlowContext; enqueue: () => Promise<RunHandle<Record<string, Exec>>[]> }> {
  const pool = new pg.Pool({ connectionString: url, max: 4 });
  // An idle client that loses its server (the restart test) is replaced by the next query.
  pool.on('error', () => undefined);
  cleanups.push(() => pool.end());
  await pool.query(EFFECTS_TABLE);
  describeState = async () => {
    const { rows } = await pool.query<{ status: string; owner: string | null; expired: boolean; n: number }>(
      `SELECT status, owner_id AS owner, lease_expires_at < (extract(epoch from now()) * 1000)::bigint AS expired, count(*)::integer AS n FROM ${SCHEMA}.runs GROUP BY 1, 2, 3 ORDER BY 1, 2`,
    );
    return `runs: ${JSON.stringify(rows)}`;
  };
  const client = new FlowContext({ results: ResultsManager.postgres(url, { schema: SCHEMA }) });
  cleanups.push(() => client.close());
  const chain = failoverChain(pool, steps, 0);
  client.register(chain);
  const enqueue = (): Promise<RunHandle<Record<string, Exec>>[]> =>
    Promise.all(Array.from({ length: runs }, (_, i) => client.enqueue(chain, { i: 0, execs: [] }, { runId: `run-${String(i).padStart(3, '0')}` })));
  return { pool, client, enqueue };
}

/** The runs `worker` holds now, started ones only (it has stored their first event). */
async function heldBy(pool: pg.Pool, worker: Worker): Promise<string[]> {
  const { rows } = await pool.query<{ run_id: string }>(
    `SELECT run_id FROM ${SCHEMA}.runs WHERE status = 'running' AND last_seq > 0 AND (owner::jsonb->>'pid')::integer = $1`,
    [worker.pid],
  );
  return rows.map((r) => r.run_id);
}

/**
 * Checks the promise: every run completed once, its events dense; each step completed once, its
 * stored output from one execution, and no execution of it began after its completion was stored.
 * Other executions are those of processes that died, or whose lease ran out (a stall, or a slow
 * renewal under load: their commits are refused), or of attempts that failed.
 */
async function checkNothingLostNorRepeated(pool: pg.Pool, client: FlowContext, handles: RunHandle<Record<string, Exec>>[], steps: number, lost: ReadonlySet<number>): Promise<{ uncommitted: number }> {
  const results = await Promise.all(handles.map((h) => h.result()));
  expect(results.filter((r) => r.status !== 'completed')).toEqual([]);
  const { rows: ends } = await pool.query<{ run_id: string; n: number; max: number }>(`SELECT run_id, count(*)::integer AS n, max(seq) AS max FROM ${SCHEMA}.events GROUP BY run_id`);
  expect(ends.length).toBe(handles.length);
  for (const e of ends) expect(e.max).toBe(e.n);
  const { rows: effects } = await pool.query<{ run_id: string; step: string; exec: string; pid: number; at: number }>(
    'SELECT run_id, step, exec, pid, (extract(epoch from at) * 1000)::float8 AS at FROM effects',
  );
  const byStep = new Map<string, { exec: string; pid: number; at: number }[]>();
  for (const row of effects) {
    const key = `${row.run_id}/${row.step}`;
    byStep.set(key, [...(byStep.get(key) ?? []), row]);
  }
  let uncommitted = 0;
  for (const [index, result] of results.entries()) {
    const runId = handles[index]!.runId;
    const execs = result.output![stepName(steps)]!.execs;
    expect(execs).toHaveLength(steps);
    const completes = new Map<string, number>();
    const completedAt = new Map<string, number>();
    let ends = 0;
    for await (const event of client.events(runId)) {
      if (event.type === 'step_complete') {
        completes.set(event.step, (completes.get(event.step) ?? 0) + 1);
        completedAt.set(event.step, event.time);
      }
      if (event.type === 'run_complete' || event.type === 'run_failed' || event.type === 'run_cancelled') ends++;
    }
    // The run ended once.
    expect(ends).toBe(1);
    // Each step completed once: none ran again after its completion was stored.
    expect([...completes.values()]).toEqual(Array.from({ length: steps }, () => 1));
    const info = await client.getRun(runId);
    for (let i = 1; i <= steps; i++) {
      const ran = byStep.get(`${runId}/${stepName(i)}`) ?? [];
      const committed = execs[i - 1]!;
      expect(ran.map((r) => r.exec)).toContain(committed);
      const others = ran.filter((r) => r.exec !== committed);
      uncommitted += others.length;
      // No completed step ran again: every other execution began before the completion was stored.
      const done = completedAt.get(stepName(i))!;
      for (const other of others) {
        expect(other.at, `${runId}/${stepName(i)} ran again in ${other.pid}${lost.has(other.pid) ? ' (lost)' : ''} ${other.at - done} ms after it completed`).toBeLessThan(done + 1);
      }
    }
    // Attempts recorded: the last one of each step ended without an error.
    for (let i = 1; i <= steps; i++) {
      const step = info.steps[stepName(i)]!;
      expect(step.status).toBe('completed');
      expect(step.attempts.length).toBeGreaterThan(0);
      expect(step.attempts.at(-1)!.error).toBeUndefined();
    }
  }
  return { uncommitted };
}

describePostgres('failover across worker processes on one Postgres', () => {
  it('three workers run 300 runs of a 20-step flow; two are killed with SIGKILL; the survivor finishes every run, each step completed once', { timeout: 120_000 }, async () => {
    const db = await testDatabase();
    cleanups.push(() => db.drop());
    const steps = 20;
    const leaseMs = 1500;
    const { pool, client, enqueue } = await setUp(db.url, 300, steps);
    const workers = await Promise.all([0, 1, 2].map(() => startWorker(db.url, leaseMs, steps, 1, 25)));
    const handles = await enqueue();
    // Each is killed mid-load, while it holds runs it has begun.
    await until('60 completed runs', 60_000, async () => (await completedCount(pool)) >= 60 && (await heldBy(pool, workers[0]!)).length > 0);
    await kill(workers[0]!, 'SIGKILL');
    await until('150 completed runs', 60_000, async () => (await completedCount(pool)) >= 150 && (await heldBy(pool, workers[1]!)).length > 0);
    await kill(workers[1]!, 'SIGKILL');
    await until('every run completed', 90_000, async () => (await completedCount(pool)) === 300);
    const lost = new Set([workers[0]!.pid, workers[1]!.pid]);
    const { uncommitted } = await checkNothingLostNorRepeated(pool, client, handles, steps, lost);
    // Each killed worker held runs mid-flight: the survivor took them over.
    const recovered = workers[2]!.lines.filter((l) => l.startsWith('resumed ')).length;
    expect(recovered).toBeGreaterThan(0);
    console.info(`failover: 300 runs x ${steps} steps; ${recovered} runs taken over by the survivor; ${uncommitted} executions lost with their workers`);
  });

  it('a worker stalled past its lease (SIGSTOP) loses its runs to the others, and its late commits are refused', { timeout: 120_000 }, async () => {
    const db = await testDatabase();
    cleanups.push(() => db.drop());
    const steps = 5;
    const leaseMs = 800;
    const { pool, client, enqueue } = await setUp(db.url, 60, steps);
    // Steps of 300 ms: when it stops, nearly every run it holds is inside a step.
    const workers = await Promise.all([0, 1].map(() => startWorker(db.url, leaseMs, steps, 300, 30)));
    const handles = await enqueue();
    await until('the first worker at work on runs', 60_000, async () => (await heldBy(pool, workers[0]!)).length > 0);
    await kill(workers[0]!, 'SIGSTOP');
    // The runs it held as it stopped: the other worker takes one of them once its lease runs out.
    const heldIds = new Set(await heldBy(pool, workers[0]!));
    expect(heldIds.size).toBeGreaterThan(0);
    const stalled = describeState;
    describeState = async () => `${await stalled()}; the other worker printed: ${workers[1]!.lines.slice(-5).join(' | ')}`;
    await until('a run taken over from the stalled worker', 30_000, async () => workers[1]!.lines.some((l) => l.startsWith('resumed ') && heldIds.has(l.split(' ')[1]!)));
    await kill(workers[0]!, 'SIGCONT');
    await until('every run completed', 90_000, async () => (await completedCount(pool)) === 60);
    const { uncommitted } = await checkNothingLostNorRepeated(pool, client, handles, steps, new Set([workers[0]!.pid]));
    // Steps it was running when it stopped finished after it woke; their commits were refused by the fence.
    expect(uncommitted).toBeGreaterThan(0);
  });

  it('runs pause while the server restarts under load (connections dropped) and go on, nothing lost', { timeout: 120_000 }, async () => {
    // A server of its own: the others share one that must not restart under them.
    const server: PostgresServer = await startPostgres();
    cleanups.push(() => server.stop());
    const steps = 10;
    const { pool, client, enqueue } = await setUp(server.url, 100, steps);
    // Leases long enough to outlast the restart: nobody's runs are taken over, so nothing may run twice.
    const workers = await Promise.all([0, 1].map(() => startWorker(server.url, 20_000, steps, 5, 25)));
    const handles = await enqueue();
    await until('20 completed runs', 60_000, async () => (await completedCount(pool)) >= 20);
    await server.restart({ immediate: true });
    await until('every run completed', 90_000, async () => (await completedCount(pool).catch(() => -1)) === 100);
    await checkNothingLostNorRepeated(pool, client, handles, steps, new Set());
    expect(workers.every((w) => w.child.exitCode === null)).toBe(true);
  });
});
