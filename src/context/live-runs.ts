/**
 * The runs a context runs now, the ones that parked here, and the handles that follow them: a
 * live run's handle reads the run; once it parks, the handle follows the stored run (here, or in
 * whichever context goes on with it). It is the `RunKeeper` runs report back to.
 */
import { isDeepStrictEqual } from 'node:util';
import { ErrorCode, FlowError } from '../errors/errors.js';
import type { CompiledGraph } from '../graph/compile.js';
import { storedResult } from '../run/stored-run.js';
import type { AnyFlow } from '../model/flow.js';
import type { FlowResult } from '../model/result.js';
import { FlowStatus } from '../model/status.js';
import type { RunKeeper, RunSettings } from '../run/environment.js';
import { handleOf, storedHandleOf, type RunHandle } from '../run/handle.js';
import { PARKED, Run } from '../run/run.js';
import { FINISHED } from '../storage/journal/store-support.js';
import type { ContextCore } from './context-core.js';

/** What live runs tell the rest of the context. */
export interface LiveRunsHooks {
  /** A run parked here: whoever lets go of a waiting run looks at its answers after, so one stored meanwhile is not left unread. */
  parked(runId: string): Promise<void>;
  /** A run was launched: its lease is renewed from now on. */
  launched(): void;
}

/** A context's live and parked runs. */
export class LiveRuns implements RunKeeper {
  readonly #core: ContextCore;
  readonly #hooks: LiveRunsHooks;
  readonly #runs = new Map<string, Run>();
  /** Runs that parked here, so the handle of one can find the run that goes on with it here (weakly: a dropped handle is not kept). */
  readonly #parked = new Map<string, WeakRef<Run>>();
  /** Handles of runs not live here wait on these: resolved when this context takes the run. */
  readonly #launched = new Map<string, { promise: Promise<void>; resolve: () => void }>();
  /** The run that went on here with a run that parked here: a handle of the parked one follows it (held as long as that handle is). */
  readonly #successors = new WeakMap<Run, Run>();
  /** Once the context closed: what the handle of a run parked here gives (the run as it waits). */
  readonly #closed = new Map<string, FlowResult>();

  constructor(core: ContextCore, hooks: LiveRunsHooks) {
    this.#core = core;
    this.#hooks = hooks;
  }

  /** How many runs go on here now. */
  get size(): number {
    return this.#runs.size;
  }

  get(runId: string): Run | undefined {
    return this.#runs.get(runId);
  }

  has(runId: string): boolean {
    return this.#runs.has(runId);
  }

  values(): IterableIterator<Run> {
    return this.#runs.values();
  }

  /** The ids of the runs that go on here now. */
  keys(): IterableIterator<string> {
    return this.#runs.keys();
  }

  /**
   * This context's live run of `runId`, at once (no await: an answer given from a listener must
   * reach the run in the same turn), or, for a run parking now, a promise of it once parked: it is
   * then in the store only, and `undefined` unless it already went on here.
   */
  live(runId: string): Run | undefined | Promise<Run | undefined> {
    const live = this.#runs.get(runId);
    if (live?.status !== FlowStatus.WAITING) return live;
    return live.parked().then(() => this.#runs.get(runId));
  }

  /** Makes a run and starts it here. */
  launch(graph: CompiledGraph, input: unknown, settings: RunSettings): Run {
    const run = new Run(graph, input, settings, this.#core.env, this);
    this.#runs.set(settings.runId, run);
    const parked = this.#parked.get(settings.runId)?.deref();
    if (parked !== undefined) this.#successors.set(parked, run);
    this.#parked.delete(settings.runId);
    const launched = this.#launched.get(settings.runId);
    if (launched !== undefined) {
      this.#launched.delete(settings.runId);
      launched.resolve();
    }
    this.#hooks.launched();
    run.start();
    return run;
  }

  /** The handle of a run live here. */
  handle<O>(run: Run): RunHandle<O> {
    // One follower per handle, however often its result or events are asked for.
    let follower: RunHandle<O> | undefined;
    return handleOf<O>(run, () => (follower ??= this.stored<O>(run.runId, undefined, run)));
  }

  /**
   * The handle of a run in the store: it follows the run wherever it goes on (here, it reads the live
   * run), reading the store until it ends. Given its flow, a composite's output is assembled by it.
   */
  stored<O>(runId: string, flow?: AnyFlow, parked?: Run): RunHandle<O> {
    const core = this.#core;
    return storedHandleOf<O>(runId, {
      finished: async () => {
        const live = this.#runs.get(runId);
        if (live !== undefined) {
          const outcome = await live.ended();
          return outcome === PARKED ? undefined : outcome;
        }
        // The run that went on here with the parked one (and with that one, if it parked again) may have ended here.
        let latest = parked;
        for (let next = latest && this.#successors.get(latest); next !== undefined; next = this.#successors.get(next)) latest = next;
        if (latest !== undefined && latest !== parked) {
          const outcome = await latest.ended();
          if (outcome !== PARKED) return outcome;
        }
        if (core.state !== 'open') {
          const closed = this.#closed.get(runId);
          if (closed !== undefined) return closed;
        }
        const loaded = await core.load(runId);
        if (!FINISHED.has(loaded.run.status)) return undefined;
        return storedResult(core.store, loaded, core.registry.graphMatching(loaded.run, flow));
      },
      // Once this context closes, a follower of a run that goes on elsewhere ends quietly.
      readEvents: async (after) => {
        try {
          return await core.store.readEvents(runId, after);
        } catch (error) {
          if (core.state === 'open') throw error;
          return [];
        }
      },
      ended: async () => {
        if (core.state !== 'open') return true;
        return FINISHED.has((await core.load(runId)).run.status);
      },
      liveEvents: (after, signal) => this.#runs.get(runId)?.eventsAfter(after, signal),
      launched: () => {
        let launched = this.#launched.get(runId);
        if (launched === undefined) {
          let resolve!: () => void;
          const promise = new Promise<void>((r) => (resolve = r));
          launched = { promise, resolve };
          this.#launched.set(runId, launched);
        }
        return launched.promise;
      },
    });
  }

  released(run: Run): void {
    if (this.#runs.get(run.runId) === run) this.#runs.delete(run.runId);
    if (run.status !== FlowStatus.WAITING) return;
    this.#parked.set(run.runId, new WeakRef(run));
    this.#core.registry.started(run.graph.root.flow);
    void this.#core.chore(this.#hooks.parked(run.runId));
  }

  /** Idempotent start: a run with this id exists in the store; same flow and input get its handle's result. */
  async adopt(run: Run, error: FlowError): Promise<FlowResult> {
    const stored = await this.#core.store.loadRun(run.runId);
    if (stored === undefined) throw error;
    if (stored.run.flow !== run.graph.root.name || !isDeepStrictEqual(stored.run.input, run.input)) {
      throw conflictWith(run.runId, `exists with ${stored.run.flow === run.graph.root.name ? 'another input' : `flow "${stored.run.flow}"`}`);
    }
    return this.stored(run.runId).result();
  }

  /**
   * The context is closing: the handles of runs that parked here settle as the run waits (status
   * `waiting`, `reason` as the error), before the store closes under their followers.
   */
  closing(reason: FlowError): void {
    for (const [runId, parked] of this.#parked) {
      const run = parked.deref();
      if (run !== undefined) this.#closed.set(runId, run.waitingResult(reason));
    }
    this.#parked.clear();
  }

  /** The context closed: followers waiting for this context to take a run look once more, and stop. */
  closed(): void {
    for (const launched of this.#launched.values()) launched.resolve();
    this.#launched.clear();
  }
}

/** `WEIR_RUN_CONFLICT`: an idempotent start needs the same flow and input. */
export function conflictWith(runId: string, how: string): FlowError {
  return new FlowError(`run "${runId}" ${how}; an idempotent start needs the same flow and input`, { code: ErrorCode.RUN_CONFLICT });
}
