import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import fc from 'fast-check';
import { afterEach, expect, it } from 'vitest';
import { FlowContext, ResultsManager, type FlowResult, type RunSummary } from '../../src/index.js';
import { cases, fcParams, scale, Tally as Counts } from '../support/property.js';
import { expectedOf, LEAVES, loadFlows, readEffects, runOf, type Execution, type Out } from './load-flows.js';

// Two worker processes share one SQLite file: the test queues 1,000 runs of four kinds of flow,
// kills one worker with SIGKILL five times at moments fast-check draws (restarting it each time),
// and checks that every run completed once, each step's stored output comes from one recorded
// execution, every other execution was cut short by a kill, no lease is left to a dead process,
// and the worker never killed is back to the file descriptors and (about) the heap it started with.

const WORKER = fileURLToPath(new URL('./programs/sqlite-worker.ts', import.meta.url));
const RUNS = cases(1000);
const KILLS = cases(5);
/**
 * Long enough that a busy live worker never loses a lease; a killed worker's runs are stale at once
 * (its pid is gone), taken by its replacement as it starts or by the other worker's sweep (every lease).
 */
const LEASE_MS = 2000;
/**
 * A worker on SQLite takes queued runs when it polls, up to its queue's free slots: at most 6 runs per
 * 100 ms per worker, so the second half of the load lasts longer (4 s or more) than the kills take.
 */
const POLL_MS = 100;
const QUEUE = 6;
/** Replacements booted ahead of the kills (a boot takes seconds on two busy cores). */
const SPARES = 3;
/** The descriptors of the checkpointer thread: its SQLite connection (database, WAL), its event loop (epoll, eventfd, two pipes), /dev/null. */
const CHECKPOINTER_FDS = 7;
/** Heap growth allowed from ready to idle after the load (warm-up), and over the load's second half. */
const WARM_UP_HEAP = 6 * 2 ** 20;
const LATE_HEAP = 2 * 2 ** 20;
const mib = (bytes: number): string => (bytes / 2 ** 20).toFixed(1);

/**
 * A kill: once `permille` of the runs completed, `after` ms later (and then as soon as the victim
 * holds a started run); its replacement (a standby that loaded its code meanwhile) starts `restart`
 * ms after the death, or (`restart: 'taken'`) once the other worker took over every run it held.
 */
interface Kill {
  readonly permille: number;
  readonly after: number;
  readonly restart: number | 'taken';
}

/** The kills, over the first half of the load; one waits for the other worker to take the dead one's runs. */
const killsArb = fc
  .tuple(
    fc.uniqueArray(fc.integer({ min: 20, max: 450 }), { minLength: KILLS, maxLength: KILLS }),
    fc.array(fc.record({ after: fc.integer({ min: 0, max: 40 }), restart: fc.integer({ min: 0, max: 200 }) }), { minLength: KILLS, maxLength: KILLS }),
    fc.nat(KILLS - 1),
  )
  .map(([at, moments, taken]) => at.sort((x, y) => x - y).map((permille, i): Kill => ({ ...moments[i]!, permille, ...(i === taken ? { restart: 'taken' as const } : {}) })));

interface Worker {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly lines: string[];
  readonly stderr: string[];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** What follows `prefix` on the next line that starts with it. */
  next(prefix: string): Promise<string>;
}

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** Starts a worker process: at work once ready, or (`standby`) once it has loaded its code, waiting for `start`. */
async function spawnWorker(file: string, dir: string, standby: boolean): Promise<Worker> {
  const args = [WORKER, file, dir, String(LEASE_MS), String(POLL_MS), String(QUEUE), ...(standby ? ['standby'] : [])];
  const child = spawn(process.execPath, ['--expose-gc', '--import', 'tsx', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  cleanups.push(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  });
  const lines: string[] = [];
  const stderr: string[] = [];
  const waiting: { prefix: string; resolve: (rest: string) => void }[] = [];
  createInterface({ input: child.stderr }).on('line', (line) => stderr.push(line));
  createInterface({ input: child.stdout }).on('line', (line) => {
    lines.push(line);
    const i = waiting.findIndex((w) => line.startsWith(`${w.prefix} `));
    if (i >= 0) {
      const [w] = waiting.splice(i, 1);
      w!.resolve(line.slice(w!.prefix.length + 1));
    }
  });
  const next = (prefix: string): Promise<string> =>
    new Promise<string>((resolve, reject) => {
      waiting.push({ prefix, resolve });
      void exited.then(({ code, signal }) => reject(new Error(`worker ${child.pid} exited (${code ?? signal}) before printing "${prefix}"; stderr: ${stderr.join('\n')}`)));
    });
  const worker: Worker = { child, pid: child.pid!, lines, stderr, exited, next };
  await worker.next(standby ? 'standby' : 'ready');
  return worker;
}

/** Puts a standby to work; resolves once its store is open. */
async function startStandby(worker: Worker): Promise<void> {
  worker.child.stdin!.write('start\n');
  await worker.next('ready');
}

interface Usage {
  readonly heapUsed: number;
  readonly fds: number;
  readonly kinds: Record<string, number>;
}

/** Polls `done` every 20 ms; fails after `ms` with `state()`. */
async function until(what: string, ms: number, done: () => boolean, state: () => string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; ${state()}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Every run summary in the store, page by page. */
async function allRuns(ctx: FlowContext): Promise<RunSummary[]> {
  const runs: RunSummary[] = [];
  let before: string | undefined;
  do {
    const page = await ctx.listRuns({ limit: 500, ...(before === undefined ? {} : { before }) });
    runs.push(...page.runs);
    before = page.next;
  } while (before !== undefined);
  return runs;
}

/** What the checks counted. */
interface Tally {
  executions: number;
  attempts: number;
  retried: number;
  /** Executions in a killed process that weir has no record of: never ended, or ended but their outcome was never committed. */
  cutShort: number;
  endedUncommitted: number;
  /** Attempts weir recorded as lost with their process that never reached the step's code. */
  lostBeforeStart: number;
}

/**
 * Checks one run's steps against the executions: for each leaf, weir's attempts are numbered 1..n,
 * the last has no error and its stored output names the last execution with its number, which
 * ended well; each earlier attempt failed with the step's RetryableError (its last execution with
 * that number ended by throwing) or was lost with its process (every execution with that number ran
 * in a killed process, maybe none); each other execution ran in a killed process; and none began
 * after the step's completion was stored.
 */
function checkSteps(result: FlowResult, completedAt: ReadonlyMap<string, number>, execs: Map<string, Execution[]>, killed: ReadonlySet<number>, tally: Tally): void {
  const { runId } = result;
  const { flow, input } = runOf(Number(runId.slice('load-'.length)));
  const expected = expectedOf(flow, input.n);
  for (const step of LEAVES[flow]) {
    const where = `${runId}/${step}`;
    const record = result.steps[step]!;
    const ran = (execs.get(where) ?? []).sort((a, b) => a.startedAt - b.startedAt);
    tally.executions += ran.length;
    tally.attempts += record.attempts.length;
    expect(record.status, where).toBe('completed');
    expect((record.output as Out).n, `${where}: its output`).toBe(expected[step]);
    expect(
      record.attempts.map((a) => a.attempt),
      `${where}: attempts`,
    ).toEqual(record.attempts.map((_, i) => i + 1));
    const matched = new Set<Execution>();
    for (const attempt of record.attempts) {
      const numbered = ran.filter((e) => e.attempt === attempt.attempt);
      const last = numbered.at(-1);
      const what = `${where} attempt ${attempt.attempt} (${attempt.error?.code ?? 'ok'}): executions ${JSON.stringify(numbered)}`;
      if (attempt === record.attempts.at(-1)) {
        expect(attempt.error, what).toBeUndefined();
        expect(last?.exec, what).toBe((record.output as Out).exec);
        expect(last?.outcome, what).toBe('ok');
      } else if (attempt.error?.code === 'WEIR_RETRYABLE') {
        expect(last?.outcome, what).toBe('threw');
        tally.retried++;
      } else {
        expect(attempt.error?.code, what).toBe('WEIR_OWNER_LOST');
        expect(numbered.every((e) => killed.has(e.pid)), what).toBe(true);
        if (last === undefined) tally.lostBeforeStart++;
      }
      if (last !== undefined) matched.add(last);
    }
    for (const other of ran.filter((e) => !matched.has(e))) {
      expect(killed.has(other.pid), `${where}: execution ${JSON.stringify(other)} is not one weir recorded, yet its process was not killed`).toBe(true);
      tally.cutShort++;
      if (other.endedAt !== undefined) tally.endedUncommitted++;
    }
    const done = completedAt.get(step)!;
    for (const e of ran) expect(e.startedAt, `${where}: ${JSON.stringify(e)} began after its completion was stored (at ${done})`).toBeLessThanOrEqual(done);
  }
}

it(`runs ${RUNS} queued runs in two workers on one SQLite file through ${KILLS} SIGKILLs of one of them: each run and step completed once, nothing lost, no lease left to the dead, handles and heap flat`, { timeout: 150_000 * scale }, async () => {
  const began = Date.now();
  const [kills] = fc.sample(killsArb, { ...fcParams(1), numRuns: 1 }) as [Kill[]];
  const dir = mkdtempSync(join(tmpdir(), 'weir-load-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'runs.db');

  // The client queues from a context that does not recover, so it takes none of the runs itself.
  const client = new FlowContext({ results: ResultsManager.sqlite(file) });
  cleanups.push(() => client.close());
  // Its flows are never run here: they only name the flows to queue (their leaves would log to `dir`).
  const flows = new Map(loadFlows({ start: () => 'client', end: () => undefined }).map((f) => [f.name, f]));
  await client.ready();

  const steady = await spawnWorker(file, dir, false);
  const steadyReady = JSON.parse(steady.lines.find((l) => l.startsWith('ready '))!.slice('ready '.length)) as Usage;
  let victim = await spawnWorker(file, dir, false);
  const victims = [victim];
  // Replacements boot ahead, so each restart is only its context opening.
  const spares: Promise<Worker>[] = [];
  const spare = (): void => {
    const booting = spawnWorker(file, dir, true);
    booting.catch(() => undefined);
    spares.push(booting);
  };
  for (let i = 0; i < Math.min(SPARES, KILLS); i++) spare();
  await Promise.all(spares);

  const queuedAt = Date.now();
  await Promise.all(Array.from({ length: RUNS }, (_, i) => runOf(i)).map(({ runId, flow, input }) => client.enqueue(flows.get(flow)!, input, { runId })));
  const queuedMs = Date.now() - queuedAt;

  // Pacing reads the file directly (cheap counts); every check below goes through weir's API.
  const probe = new Database(file, { readonly: true, fileMustExist: true });
  cleanups.push(() => probe.close());
  const completed = (): number => (probe.prepare("SELECT count(*) AS n FROM weir_runs WHERE status = 'completed'").get() as { n: number }).n;
  /** Runs `pid` holds: running ones, and (`started`) only those with an event stored. */
  const heldBy = (pid: number, started = true): number =>
    (
      probe
        .prepare(
          `SELECT count(*) AS n FROM weir_runs r WHERE status = 'running' AND json_extract(owner, '$.pid') = ?${started ? ' AND EXISTS (SELECT 1 FROM weir_events e WHERE e.run_id = r.run_id)' : ''}`,
        )
        .get(pid) as { n: number }
    ).n;
  const state = (): string =>
    JSON.stringify(probe.prepare("SELECT status, json_extract(owner, '$.pid') AS pid, lease_expires_at < ? AS expired, count(*) AS n FROM weir_runs GROUP BY 1, 2, 3").all(Date.now()));

  // The worker never killed, busy, once half the runs completed (whatever the kills do meanwhile): its heap after a full GC and its open descriptors.
  const halfway = (async () => {
    await until(`half the runs completed`, 60_000 * scale, () => completed() * 2 >= RUNS, state);
    steady.child.stdin!.write('snapshot\n');
    return { completed: completed(), ...(JSON.parse(await steady.next('snapshot')) as Usage) };
  })();
  halfway.catch(() => undefined);
  const killed = new Set<number>();
  const heldAtKill: number[] = [];
  /** Started runs of a dead worker while the other was the only one alive (a 'taken' restart): it alone can take them over. */
  let orphanedWhileAlone = 0;
  for (const kill of kills) {
    await until(`${kill.permille}‰ of the runs completed`, 60_000 * scale, () => completed() * 1000 >= kill.permille * RUNS, state);
    await sleep(kill.after);
    await until(`worker ${victim.pid} to hold a started run`, 20_000, () => heldBy(victim.pid) > 0, state);
    heldAtKill.push(heldBy(victim.pid));
    victim.child.kill('SIGKILL');
    expect(await victim.exited).toEqual({ code: null, signal: 'SIGKILL' });
    killed.add(victim.pid);
    // Its started runs the store still gives to the dead one (one may have ended just before the kill landed).
    if (kill.restart === 'taken') orphanedWhileAlone += heldBy(victim.pid);
    if (kill.restart === 'taken') await until(`the runs of worker ${victim.pid} taken over`, LEASE_MS * 2 + 10_000, () => heldBy(victim.pid, false) === 0, state);
    else await sleep(kill.restart);
    victim = await spares.shift()!;
    await startStandby(victim);
    victims.push(victim);
    if (victims.length + spares.length <= KILLS) spare();
  }
  const steadyMid = await halfway;
  await until(`all ${RUNS} runs completed`, 60_000 * scale, () => completed() === RUNS, state);
  const loadMs = Date.now() - queuedAt;

  // The worker never killed, once idle: its heap after a full GC and its open descriptors.
  steady.child.stdin!.write('report\n');
  const steadyAfter = JSON.parse(await steady.next('usage')) as Usage & { leasesOnTime: boolean };
  // Closing: each survivor closes its context and must then exit by itself, with code 0.
  for (const w of [steady, victim]) w.child.stdin!.end();
  const closing = Promise.all([steady, victim].map((w) => w.exited));
  let timer: NodeJS.Timeout | undefined;
  const exits = await Promise.race([closing, new Promise((resolve) => (timer = setTimeout(resolve, 20_000, 'still running 20 s after close()')))]);
  clearTimeout(timer);
  expect(exits).toEqual([
    { code: 0, signal: null },
    { code: 0, signal: null },
  ]);
  for (const w of [steady, victim]) expect(w.lines.at(-1), `worker ${w.pid}`).toMatch(/^closed /);

  // Through weir's public API, from a fresh context on the file.
  const ctx = new FlowContext({ results: ResultsManager.sqlite(file) });
  cleanups.push(() => ctx.close());
  const runs = await allRuns(ctx);
  expect(runs).toHaveLength(RUNS);
  expect(runs.filter((r) => r.status !== 'completed')).toEqual([]);
  // No lease is left: none is held (a finished run releases its own), none by a dead process.
  expect((await ctx.listRuns({ stale: true })).runs).toEqual([]);
  expect(runs.filter((r) => r.owner !== undefined || r.stale)).toEqual([]);

  const byStep = new Map<string, Execution[]>();
  const effects = readEffects(dir);
  for (const e of effects) byStep.set(`${e.runId}/${e.step}`, [...(byStep.get(`${e.runId}/${e.step}`) ?? []), e]);
  const tally: Tally = { executions: 0, attempts: 0, retried: 0, cutShort: 0, endedUncommitted: 0, lostBeforeStart: 0 };
  let recovered = 0;
  for (const { runId } of runs) {
    const events = [];
    for await (const event of ctx.events(runId)) events.push(event);
    // Events dense from 1; the run began once and completed once, at the end.
    expect(
      events.map((e) => e.seq),
      runId,
    ).toEqual(events.map((_, i) => i + 1));
    expect(events[0]?.type, runId).toBe('run_start');
    expect(events.filter((e) => e.type === 'run_start' || e.type === 'run_complete' || e.type === 'run_failed' || e.type === 'run_cancelled').map((e) => e.type), runId).toEqual(['run_start', 'run_complete']);
    expect(events.at(-1)?.type, runId).toBe('run_complete');
    recovered += events.filter((e) => e.type === 'run_resumed').length;
    // Each leaf completed once in the store.
    const completedAt = new Map<string, number>();
    for (const e of events) {
      if (e.type !== 'step_complete') continue;
      expect(completedAt.has(e.step), `${runId}/${e.step} completed twice`).toBe(false);
      completedAt.set(e.step, e.time);
    }
    const result = await (await ctx.handle(runId)).result();
    expect(result.status, runId).toBe('completed');
    expect([...completedAt.keys()].filter((s) => !s.startsWith('load-') && s !== 'nest-inner').sort(), runId).toEqual([...LEAVES[runOf(Number(runId.slice(5))).flow]].sort());
    checkSteps(result, completedAt, byStep, killed, tally);
  }
  // Every execution belongs to a run and a leaf the checks above went through.
  expect(tally.executions).toBe(effects.length);

  const takenBy = (ws: Worker[]): number => ws.flatMap((w) => w.lines).filter((l) => l.startsWith('taken ') && l.endsWith(' recovered')).length;
  const steadyTook = takenBy([steady]);
  // The kills landed on runs in flight, and the worker never killed took over at least those it alone could.
  expect(tally.cutShort + tally.lostBeforeStart).toBeGreaterThan(0);
  expect(steadyTook).toBeGreaterThanOrEqual(orphanedWhileAlone);

  // Handles: back to where they were once ready, but for the checkpointer thread weir starts after
  // 1024 commits and keeps until close() (its SQLite connection: database and WAL; its event loop:
  // epoll, eventfd, two pipes; /dev/null), and the same as halfway.
  const fdKinds = JSON.stringify({ ready: steadyReady.kinds, mid: steadyMid.kinds, after: steadyAfter.kinds });
  expect(steadyAfter.fds, fdKinds).toBeLessThanOrEqual(steadyReady.fds + CHECKPOINTER_FDS);
  // (The thread may start after halfway: then the end has its descriptors more, and nothing else new.)
  expect([steadyMid.fds, steadyMid.fds + CHECKPOINTER_FDS], fdKinds).toContain(steadyAfter.fds);
  expect(steadyAfter.kinds.db, fdKinds).toBeLessThanOrEqual(2);
  // Heap after a full GC: weir keeps nothing of a run once it ended (what it caches is bounded: the
  // step records of 16 runs, prepared statements by shape, compiled graphs by flow), so the heap
  // grows by warm-up only (measured: 1.6 to 2.3 MiB), and not over the second half of the runs
  // (measured: -0.3 to +0.5 MiB), where a leak of 8 KiB a run it ran (some 250 of them) shows as 2 MiB.
  expect(steadyAfter.heapUsed - steadyReady.heapUsed).toBeLessThan(WARM_UP_HEAP);
  expect(steadyAfter.heapUsed - steadyMid.heapUsed).toBeLessThan(LATE_HEAP);

  console.info(
    `sqlite load: ${RUNS} runs queued in ${queuedMs} ms, done ${loadMs} ms later through ${kills.length} kills (${JSON.stringify(kills)}, holding ${heldAtKill.join('/')} runs); ` +
      `${tally.executions} executions for ${tally.attempts} attempts (${tally.retried} retried), ${tally.cutShort} cut short by kills (${tally.endedUncommitted} had ended, uncommitted), ${tally.lostBeforeStart} attempts lost before starting; ` +
      `${recovered} takeovers, ${steadyTook} by the worker never killed (${orphanedWhileAlone} left to it alone), ${takenBy(victims)} by restarted ones; its leases on time: ${steadyAfter.leasesOnTime}, warnings: ${steady.stderr.length}; ` +
      `fds ${steadyReady.fds} -> ${steadyMid.fds} (at ${steadyMid.completed} runs completed) -> ${steadyAfter.fds}; heap ${mib(steadyReady.heapUsed)} -> ${mib(steadyMid.heapUsed)} -> ${mib(steadyAfter.heapUsed)} MiB; ${Date.now() - began} ms in all`,
  );
  const counts = new Counts('sqlite load');
  counts.add('runs', RUNS);
  counts.add('kills', kills.length);
  counts.add('executions', tally.executions);
  counts.add('attempts', tally.attempts);
  counts.add('cut short by kills', tally.cutShort);
  counts.add('takeovers', recovered);
  counts.report();
});
