/**
 * Recovery: taking over the stale runs of registered flows (their lease ran out, or their owner's
 * process on this host is gone) and going on with them from their last completed steps; looking
 * again at runs that wait for input; doing so by itself with `recover: true`.
 */
import { toErrorData } from '../errors/error-data.js';
import { ErrorCode, FlowError, WarningCode } from '../errors/errors.js';
import type { Answers } from '../human/answers.js';
import { FlowStatus } from '../model/status.js';
import type { Run } from '../run/run.js';
import type { LoadedRun, RunRecord } from '../storage/journal/run-store.js';
import { setRealImmediate, type TimerHandle } from '../util/clock.js';
import { messageOf } from '../util/message-of.js';
import type { ContextCore } from '../context/context-core.js';
import { HOST } from '../util/host.js';
import { isStale } from './history.js';
import { outputsOf } from '../run/stored-run.js';
import { releaseLease } from './leases.js';
import { changedGraph, restoreRun } from './restore.js';
import type { WorkSharing } from './work-sharing.js';
import { hasVersionOf, othersRun } from './versions.js';

/** A context's recovery of stale runs. */
export class Recovery {
  readonly #core: ContextCore;
  readonly #answers: Answers;
  /** Runs this context is taking over right now: two overlapping `recover()` calls take each once. */
  readonly #takingOver = new Set<string>();
  #scheduled = false;
  #timer: TimerHandle | undefined;

  /** Claims queued runs, and on a shared store stale ones. */
  readonly #sharing: WorkSharing;

  constructor(core: ContextCore, answers: Answers, sharing: WorkSharing) {
    this.#core = core;
    this.#answers = answers;
    this.#sharing = sharing;
  }

  /**
   * Takes over the stale runs of registered flows (and, with work sharing, queued ones) and looks at
   * the waiting ones; resolves to the runs it goes on with.
   */
  async recover(): Promise<Run[]> {
    const core = this.#core;
    const runs: Run[] = [];
    const claims = core.store.claims;
    // Queued runs, and on a shared store runs whose lease ran out, are claimed in batches; there the
    // listing below is for runs whose owner on this host is gone, and runs no live worker has the version of.
    runs.push(...(await this.#sharing.claim()));
    const live = claims === undefined ? undefined : await claims.liveVersions(core.clock.now());
    let before: string | undefined;
    do {
      const at = this.#core.clock.now();
      const page = await core.store.listRuns({ status: FlowStatus.RUNNING, limit: 500, ...(before === undefined ? {} : { before }), now: at });
      before = page.next;
      const taken = await Promise.allSettled(page.runs.map((run) => this.#takeOver(run, at, live)));
      for (const outcome of taken) {
        if (outcome.status === 'fulfilled') {
          if (outcome.value !== undefined) runs.push(outcome.value);
        } else if (!(outcome.reason instanceof FlowError && outcome.reason.code === ErrorCode.CONTEXT_CLOSED)) {
          process.emitWarning(`weir: a run could not be recovered: ${messageOf(outcome.reason)}`, { code: WarningCode.RECOVERY });
        }
      }
    } while (before !== undefined && core.state === 'open');
    // Runs waiting for input: those whose wait ended go on; the others are looked at again when due.
    before = undefined;
    do {
      const page = await core.store.listRuns({ status: FlowStatus.WAITING, limit: 500, ...(before === undefined ? {} : { before }), now: this.#core.clock.now() });
      before = page.next;
      const due = page.runs.filter((run) => core.registry.named(run.flow) !== undefined && !this.#answers.scheduled(run.runId) && !core.runs.has(run.runId));
      await Promise.all(due.map((run) => this.#answers.review(run.runId)));
      for (const run of due) {
        const live = core.runs.get(run.runId);
        if (live !== undefined) runs.push(live);
      }
    } while (before !== undefined && core.state === 'open');
    return runs;
  }

  /**
   * Recovers by itself: on the next turn (so flows registered right after are known), then again
   * every `leaseTimeout` (so runs another process leaves behind later are taken too).
   */
  schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    const core = this.#core;
    setRealImmediate(() => {
      this.#scheduled = false;
      if (core.state !== 'open') return;
      core.chore(this.recover()).catch((error: unknown) => {
        process.emitWarning(`weir: recovering runs failed: ${messageOf(error)}`, { code: WarningCode.RECOVERY });
      });
      this.#core.clock.clearTimer(this.#timer);
      this.#timer = this.#core.clock.setTimer(() => this.schedule(), core.settings.leaseMs, { unref: true, background: true });
    });
  }

  stop(): void {
    this.#core.clock.clearTimer(this.#timer);
    this.#timer = undefined;
  }

  /**
   * Takes over one stale run of a registered flow; `undefined` when it is not stale, not ours to
   * run, or taken first. With `live` (a shared store's live flow versions), only a run whose owner
   * on this host is gone, or whose version no live worker has, is taken here: the others are claimed.
   */
  async #takeOver(run: RunRecord, at: number, live?: ReadonlySet<string>): Promise<Run | undefined> {
    const core = this.#core;
    if (core.runs.has(run.runId) || this.#takingOver.has(run.runId) || !isStale(run, at, HOST) || core.state !== 'open') return undefined;
    if (live !== undefined && !(await this.#mayTakeOver(run, at, live))) return undefined;
    this.#takingOver.add(run.runId);
    try {
      return await this.#takeOverNow(run, at);
    } finally {
      this.#takingOver.delete(run.runId);
    }
  }

  /** On a shared store: whether a stale run is this context's to take rather than a claim's. */
  async #mayTakeOver(run: RunRecord, at: number, live: ReadonlySet<string>): Promise<boolean> {
    if (this.#core.registry.registered(run.flow) === undefined || (await othersRun(this.#core, run, live))) return false;
    // A lease that ran out at this version is claimed (by the batch above, or another worker); here
    // only a live one whose owner on this host is gone, or a run no live worker has the version of.
    return run.leaseExpiresAt >= at || !hasVersionOf(this.#core, run);
  }

  async #takeOverNow(run: RunRecord, at: number): Promise<Run | undefined> {
    const core = this.#core;
    if (core.registry.registered(run.flow) === undefined) return undefined;
    // A live lease is taken only from an owner known to be dead, and only if nobody took it since.
    const token = await core.store.acquireLease(run.runId, core.owner, core.settings.leaseMs, this.#core.clock.now(), {
      takeover: true,
      ...(run.leaseExpiresAt > at ? { fromToken: run.leaseToken } : {}),
    });
    if (token === undefined) return undefined;
    return this.goOn(run, token);
  }

  /**
   * Goes on with a run taken over under `token`: it fails at once when it lost its owner too often
   * or its graph changed (and the context says fail), or when its records cannot be read.
   */
  async goOn(run: RunRecord, token: number): Promise<Run | undefined> {
    const core = this.#core;
    const flow = core.registry.registered(run.flow);
    if (flow === undefined || core.runs.has(run.runId) || core.state !== 'open') {
      await releaseLease(core, run.runId, token);
      return undefined;
    }
    const graph = core.registry.graphOf(flow);
    let loaded: LoadedRun;
    let outputs: Map<string, unknown>;
    try {
      loaded = await core.load(run.runId);
      // Outputs too: one that cannot be read fails this run, not the recovery of the others.
      outputs = await outputsOf(core.store, loaded);
    } catch (error) {
      // A record that cannot be read fails its run, with the error naming it; other runs go on.
      const data = toErrorData(error);
      const failedAt = this.#core.clock.now();
      await core
        .journalOf(run.runId, token, run.lastSeq)
        .patchNow({ status: FlowStatus.FAILED, error: data, endedAt: failedAt, updatedAt: failedAt })
        .catch((commitError: unknown) =>
          process.emitWarning(`weir: run "${run.runId}" cannot be recovered (${data.message}) nor marked failed: ${messageOf(commitError)}`, { code: WarningCode.RECOVERY }),
        );
      return undefined;
    }
    const recoveries = loaded.run.recoveries;
    const { maxRecoveries } = core.settings;
    const failWith =
      recoveries > maxRecoveries
        ? new FlowError(`run "${run.runId}" lost its owner ${recoveries} times, more than maxRecoveries (${maxRecoveries}); it is not taken over again`, {
            code: ErrorCode.RECOVERY_LIMIT,
          })
        : changedGraph(core, graph, loaded.run);
    return restoreRun(core, graph, loaded, token, { reason: 'recovered', failWith }, outputs);
  }
}
