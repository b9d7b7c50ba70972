/**
 * What the parts of a context share (its facade, durability, human input): its settings, its
 * store and owner identity, its flows, its live runs, its state, and the store work it must wait
 * for before it closes.
 */
import type { Slots } from '../util/slots.js';
import { ErrorCode, FlowError } from '../errors/errors.js';
import type { Executor } from '../executors/executor.js';
import type { RunEnvironment } from '../run/environment.js';
import { systemClock, type Clock } from '../util/clock.js';
import { RunJournal } from '../run/journal.js';
import type { LoadedRun, RunOwner, RunStore } from '../storage/journal/run-store.js';
import type { FlowRegistry } from './flow-registry.js';
import type { LiveRuns } from './live-runs.js';
import { HOST, PROCESS_ID } from '../util/host.js';
import type { ContextSettings } from './options.js';

/** The lifecycle of a context. */
export type ContextState = 'open' | 'closing' | 'closed';

let contextCount = 0;

/** A context's shared internals. */
export class ContextCore {
  readonly settings: ContextSettings;
  readonly store: RunStore;
  /** This context's identity as a lease owner (`host:pid:n`). */
  readonly owner: RunOwner;
  readonly registry: FlowRegistry;
  readonly env: RunEnvironment;
  /** Set once, right after the core is made (it needs the core). */
  runs!: LiveRuns;
  state: ContextState = 'open';
  /** Store work started outside any run (recovery, skip, retry links): `close()` waits for it. */
  readonly #chores = new Set<Promise<unknown>>();

  constructor(settings: ContextSettings, store: RunStore, registry: FlowRegistry, executors: ReadonlyMap<string, Executor>, queue: Slots, publish: RunEnvironment['publish']) {
    this.settings = settings;
    this.store = store;
    this.registry = registry;
    this.owner = { processId: `${PROCESS_ID}:${++contextCount}`, host: HOST, pid: process.pid };
    this.env = { store, owner: this.owner, leaseMs: settings.leaseMs, executors, queue, processId: PROCESS_ID, publish, clock: settings.clock, doubles: settings.doubles, trackStarts: settings.clock !== systemClock, commits: { lastMs: undefined, lastAt: undefined } };
  }

  /** The time the context and its runs run on. */
  get clock(): Clock {
    return this.settings.clock;
  }

  /** Tracks store work done outside a run, so `close()` waits for it. */
  chore<T>(work: Promise<T>): Promise<T> {
    this.#chores.add(work);
    const done = (): void => void this.#chores.delete(work);
    work.then(done, done);
    return work;
  }

  /** Whether store work outside a run is under way. */
  get choring(): boolean {
    return this.#chores.size > 0;
  }

  /** Resolves once the store work under way now has settled. */
  async choresDone(): Promise<void> {
    await Promise.allSettled([...this.#chores]);
  }

  /** @throws FlowError `WEIR_CONTEXT_CLOSED` unless the context is open. */
  assertOpen(action: string): void {
    if (this.state !== 'open') throw new FlowError(`cannot ${action}: the FlowContext is ${this.state}`, { code: ErrorCode.CONTEXT_CLOSED });
  }

  /** Reads (and a cancel) still work while the context closes; once closed, nothing does. @throws FlowError `WEIR_CONTEXT_CLOSED`. */
  assertNotClosed(action: string): void {
    if (this.state === 'closed') throw new FlowError(`cannot ${action}: the FlowContext is closed`, { code: ErrorCode.CONTEXT_CLOSED });
  }

  /** The journal to write a stored run with, under the lease `token` taken for it. */
  journalOf(runId: string, token: number, lastSeq: number): RunJournal {
    return RunJournal.ofStored(this.store, runId, token, lastSeq, this.env.commits);
  }

  /** A stored run. @throws FlowError `WEIR_RUN_NOT_FOUND` when there is none. */
  async load(runId: string): Promise<LoadedRun> {
    const loaded = await this.store.loadRun(runId);
    if (loaded === undefined) throw new FlowError(`there is no run "${runId}" in the store`, { code: ErrorCode.RUN_NOT_FOUND });
    return loaded;
  }
}
