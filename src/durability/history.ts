/**
 * Run history read from the journal: what `ctx.getRun` and `ctx.listRuns` return, and whether a run
 * is stale. Reads only; writes go through a run's journal.
 */
import type { ErrorData } from '../errors/error-data.js';
import type { CompiledGraph } from '../graph/compile.js';
import type { AttemptRecord } from '../model/result.js';
import { FlowStatus, type RunMode } from '../model/status.js';
import type { ListRunsQuery, LoadedRun, RunRecord, StepRecord } from '../storage/journal/run-store.js';
import type { ContextCore } from '../context/context-core.js';
import { HOST } from '../util/host.js';
import { hasVersionOf, versionOf } from './versions.js';
import type { InputWait, StepProgress, WaitInfo } from '../model/waits.js';

/** One step as `getRun` shows it. */
export interface StepInfo {
  readonly name: string;
  readonly status: FlowStatus;
  readonly attempts: readonly AttemptRecord[];
  readonly startTime?: number;
  readonly endTime?: number;
  readonly error?: ErrorData;
  /** The last progress it reported. */
  readonly progress?: StepProgress;
  /** When its next attempt is due, for a step waiting on backoff (ms since the epoch). */
  readonly retryAt?: number;
  /** The inputs it waits on, for a waiting step. */
  readonly waitingFor?: readonly InputWait[];
}

/** The statuses of runs someone must still take: queued, running, or waiting for input. */
const STRANDABLE: readonly FlowStatus[] = [FlowStatus.PENDING, FlowStatus.RUNNING, FlowStatus.WAITING];

/** A run as `listRuns` lists it. */
export interface RunSummary {
  readonly runId: string;
  /** The root flow's name. */
  readonly flow: string;
  readonly status: FlowStatus;
  readonly mode: RunMode;
  /** Whether an unanswered `waitForInput` waits for a person (interactive, or hybrid with a person in the loop). */
  readonly humanInLoop: boolean;
  /** For a run with steps waiting for input: what each waits on (key, JSON Schema, deadline). */
  readonly waitingFor?: readonly WaitInfo[];
  /** When it was started, in ms since the epoch. */
  readonly createdAt: number;
  /** Its last recorded change. */
  readonly updatedAt: number;
  readonly endedAt?: number;
  /** For a failed or cancelled run: why; `error.step` names the first failing step. */
  readonly error?: ErrorData;
  /** The run this one retries, and the one that retried it. */
  readonly retryOf?: string;
  readonly retriedBy?: string;
  /** The process that last ran it (`host:pid`), kept after it ended. */
  readonly ranBy?: string;
  /** The context that holds its lease (`host:pid:n`), while one does. */
  readonly owner?: string;
  /** When its lease runs out, in ms since the epoch (0 when nobody holds it). */
  readonly leaseExpiresAt: number;
  /** How many times it was taken over after its owner was lost. */
  readonly recoveries: number;
  /** Whether its owner is gone (lease expired, or its process dead on this host) and `recover()` would take it. */
  readonly stale: boolean;
  /** The version of its flow it needs: the flow's `version`, else the graph's fingerprint. */
  readonly version: string;
  /** For a queued run: its priority, when not 0, and its concurrency key. */
  readonly priority?: number;
  readonly concurrencyKey?: string;
}

/** A run in detail, as `getRun` returns it. */
export interface RunInfo extends RunSummary {
  /** Steps running now. */
  readonly running: readonly string[];
  /** Leaf steps done (completed or skipped past) out of all leaf steps. */
  readonly progress: { readonly done: number; readonly total: number };
  /** The seq of its last stored event. */
  readonly lastSeq: number;
  /** Every step with a record, by name (steps never reached have none, unless the flow is registered). */
  readonly steps: Readonly<Record<string, StepInfo>>;
}

/** Whether a running run's owner is gone: its lease expired, or it ran on this host in a process that no longer exists. */
export function isStale(run: RunRecord, at: number, host: string): boolean {
  if (run.status !== FlowStatus.RUNNING) return false;
  // As the stores' lease checks: a lease that runs out at `at` is still held at `at`.
  if (run.leaseExpiresAt < at) return true;
  return run.owner !== undefined && run.owner.host === host && run.owner.pid !== process.pid && !processAlive(run.owner.pid);
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists, owned by someone else.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The inputs a stored run's steps wait on (waiting steps, and running ones that asked), but those in `ended`. */
export function waitsOf(loaded: LoadedRun, ended?: ReadonlySet<string>): WaitInfo[] {
  const waits: WaitInfo[] = [];
  for (const record of loaded.steps) {
    if (record.status !== FlowStatus.WAITING && record.status !== FlowStatus.RUNNING) continue;
    for (const wait of record.waitingFor ?? []) if (ended?.has(wait.key) !== true) waits.push({ step: record.step, ...wait });
  }
  return waits;
}

/** The summary of a stored run; `waits` for a run with steps waiting. */
export function summaryOf(run: RunRecord, at: number, host: string, waits?: readonly WaitInfo[]): RunSummary {
  return {
    runId: run.runId,
    flow: run.flow,
    status: run.status,
    mode: run.mode,
    humanInLoop: run.humanInLoop,
    ...(waits === undefined || waits.length === 0 ? {} : { waitingFor: waits }),
    createdAt: run.createdAt,
    updatedAt: run.updatedAt,
    ...(run.endedAt === undefined ? {} : { endedAt: run.endedAt }),
    ...(run.error === undefined ? {} : { error: run.error }),
    ...(run.retryOf === undefined ? {} : { retryOf: run.retryOf }),
    ...(run.retriedBy === undefined ? {} : { retriedBy: run.retriedBy }),
    ...(run.ranBy === undefined ? {} : { ranBy: run.ranBy }),
    ...(run.owner === undefined ? {} : { owner: run.owner.processId }),
    leaseExpiresAt: run.leaseExpiresAt,
    recoveries: run.recoveries,
    stale: isStale(run, at, host),
    version: versionOf(run),
    ...(run.priority === undefined ? {} : { priority: run.priority }),
    ...(run.concurrencyKey === undefined ? {} : { concurrencyKey: run.concurrencyKey }),
  };
}

/** A stored run in detail; with its compiled graph, steps never reached show as `pending`. */
export function infoOf(loaded: LoadedRun, graph: CompiledGraph | undefined, at: number, host: string, ended?: ReadonlySet<string>): RunInfo {
  const byName = new Map(loaded.steps.map((s) => [s.step, s]));
  const steps: Record<string, StepInfo> = {};
  const running: string[] = [];
  let done = 0;
  let total = 0;
  // Without the graph, the records say which steps are composites; the run's own composite is not a step.
  const leaves = graph?.nodes.filter((n) => n.processor !== undefined).map((n) => n.name) ?? loaded.steps.filter((s) => s.composite !== true).map((s) => s.step);
  const names =
    graph === undefined
      ? loaded.steps.filter((s) => !(s.composite === true && s.step === loaded.run.flow)).map((s) => s.step)
      : graph.nodes.filter((n) => n.index !== 0 || n.processor !== undefined).map((n) => n.name);
  for (const name of names) {
    const record = byName.get(name);
    steps[name] = record === undefined ? { name, status: FlowStatus.PENDING, attempts: [] } : stepInfoOf(record);
    if (record?.status === FlowStatus.RUNNING && leaves.includes(name)) running.push(name);
  }
  for (const name of leaves) {
    total++;
    const status = byName.get(name)?.status;
    if (status === FlowStatus.COMPLETED || status === FlowStatus.SKIPPED) done++;
  }
  return { ...summaryOf(loaded.run, at, host, waitsOf(loaded, ended)), running, progress: { done, total }, lastSeq: loaded.run.lastSeq, steps };
}

function stepInfoOf(record: StepRecord): StepInfo {
  return {
    name: record.step,
    status: record.status,
    attempts: record.attempts,
    ...(record.startTime === undefined ? {} : { startTime: record.startTime }),
    ...(record.endTime === undefined ? {} : { endTime: record.endTime }),
    ...(record.error === undefined ? {} : { error: record.error }),
    ...(record.progress === undefined ? {} : { progress: record.progress }),
    ...(record.retryAt === undefined ? {} : { retryAt: record.retryAt }),
    ...(record.waitingFor === undefined || (record.status !== FlowStatus.WAITING && record.status !== FlowStatus.RUNNING) ? {} : { waitingFor: record.waitingFor }),
  };
}


/** One page of `listRuns`. */
export interface RunList {
  readonly runs: readonly RunSummary[];
  /** Pass as `before` for the next page; absent on the last page. */
  readonly next?: string;
}

/** What `getRun` and `listRuns` read: the store, as it is once the runs live here have flushed. */
export class History {
  readonly #core: ContextCore;

  constructor(core: ContextCore) {
    this.#core = core;
  }

  /** A run in detail (see `FlowContext.getRun`). */
  async getRun(runId: string): Promise<RunInfo> {
    const core = this.#core;
    const live = core.runs.get(runId);
    if (live !== undefined) await live.flushed();
    const loaded = await core.load(runId);
    return infoOf(loaded, core.registry.graphMatching(loaded.run), this.#core.clock.now(), HOST, await this.#endedWaits(loaded));
  }

  /** Active and recent runs, newest first, one page at a time (see `FlowContext.listRuns`). */
  async listRuns(query: Omit<ListRunsQuery, 'now'>): Promise<RunList> {
    const core = this.#core;
    const at = this.#core.clock.now();
    await Promise.all([...core.runs.values()].map((run) => run.flushed()));
    const stranded = query.stranded === true && core.store.claims === undefined;
    if (query.stale !== true && !stranded) {
      const page = await core.store.listRuns({ ...query, stale: false, now: at });
      // What a waiting run waits on is in its step records.
      const runs = await Promise.all(
        page.runs.map(async (run) => {
          if (run.status !== FlowStatus.WAITING) return summaryOf(run, at, HOST);
          const loaded = await core.store.loadRun(run.runId);
          return summaryOf(run, at, HOST, loaded === undefined ? undefined : waitsOf(loaded, await this.#endedWaits(loaded)));
        }),
      );
      return { runs, ...(page.next === undefined ? {} : { next: page.next }) };
    }
    // Stale: an expired lease (the store's query), or a dead owner on this host (checked here).
    // Stranded, on a store without a register of workers: a flow version this context does not have.
    const keep = stranded ? (run: RunRecord) => !hasVersionOf(core, run) : (run: RunRecord) => isStale(run, at, HOST);
    const statuses = stranded ? STRANDABLE.filter((s) => query.status === undefined || [query.status].flat().includes(s)) : [FlowStatus.RUNNING];
    const runs: RunSummary[] = [];
    let before = query.before;
    const limit = query.limit ?? 100;
    for (;;) {
      const page = await core.store.listRuns({ ...query, status: statuses, stale: false, stranded: false, ...(before === undefined ? {} : { before }), limit, now: at });
      for (const run of page.runs) if (keep(run)) runs.push(summaryOf(run, at, HOST));
      if (runs.length >= limit || page.next === undefined) return { runs: runs.slice(0, limit), ...(page.next === undefined ? {} : { next: page.next }) };
      before = page.next;
    }
  }

  /** The keys whose waits ended (answered or expired), for a run with waits; none read otherwise. */
  async #endedWaits(loaded: LoadedRun): Promise<ReadonlySet<string> | undefined> {
    if (!loaded.steps.some((s) => s.waitingFor !== undefined)) return undefined;
    return new Set((await this.#core.store.readInputs(loaded.run.runId)).map((e) => e.key));
  }
}
