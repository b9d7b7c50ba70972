/**
 * Answers and the live toggle at the context level: `submitInput` and `setHumanInLoop` for runs live
 * here or only in the store, and going on with parked runs once a wait ended (an answer, a
 * deadline, the context's `inputTimeout`), in exactly one context of those sharing the store.
 */
import { ErrorCode, FlowError, WarningCode, type CancelledError } from '../errors/errors.js';
import { waitsOf } from '../durability/history.js';
import { takeFreeLease, underLease } from '../durability/leases.js';
import { changedGraph, restoreRun } from '../durability/restore.js';
import { othersRun } from '../durability/versions.js';
import { FlowStatus, RunMode } from '../model/status.js';
import type { InputEntry } from '../model/waits.js';
import type { ResumeReason } from '../run/restored.js';
import type { Run } from '../run/run.js';
import type { LoadedRun, RunPatch } from '../storage/journal/run-store.js';
import { FINISHED } from '../storage/journal/store-support.js';
import type { TimerHandle } from '../util/clock.js';
import { messageOf } from '../util/message-of.js';
import type { ContextCore } from '../context/context-core.js';
import { validateAgainstJson } from './ask.js';
import { answeredAlready, notAwaited } from './waits.js';

/** How a parked run goes on. */
export interface ContinueHow {
  readonly fallback?: 'fail' | 'default' | 'batch' | undefined;
  readonly patch?: RunPatch | undefined;
  readonly cancelWith?: CancelledError | undefined;
  /** Writes a change under the lease before the run is read again (a skip). */
  readonly apply?: ((token: number, loaded: LoadedRun) => Promise<void>) | undefined;
}

/** A context's answers, toggles and reviews of parked runs. */
export class Answers {
  readonly #core: ContextCore;
  /** When this context looks again at a parked run (a wait's deadline, or `inputTimeout`), by run id. */
  readonly #timers = new Map<string, TimerHandle>();
  /** Parked runs this context is taking again right now, one continuation per run at a time. */
  readonly #continuing = new Map<string, Promise<Run | undefined>>();

  constructor(core: ContextCore) {
    this.#core = core;
  }

  /** Whether a review of the run is already due on a timer here. */
  scheduled(runId: string): boolean {
    return this.#timers.has(runId);
  }

  /** Answers a wait of a run (see `FlowContext.submitInput`). */
  async submit(runId: string, key: string, value: unknown): Promise<void> {
    if (typeof key !== 'string' || key.length === 0) throw new FlowError(`submitInput: key must be a non-empty string, got ${JSON.stringify(key)}`, { code: ErrorCode.INVALID_OPTIONS });
    const found = this.#core.runs.live(runId);
    const live = found instanceof Promise ? await found : found;
    if (live?.status === FlowStatus.RUNNING) return this.#submitLive(live, key, value);
    return this.#core.chore(this.#submitStored(runId, key, value));
  }

  async #submitLive(live: Run, key: string, value: unknown): Promise<void> {
    await live.submitInput(key, value);
    // The run parked while the answer was stored: it did not take it in; going on with it here does.
    if (live.status === FlowStatus.WAITING) {
      await live.parked();
      await this.#core.chore(this.review(live.runId));
    }
  }

  async #submitStored(runId: string, key: string, value: unknown): Promise<void> {
    const core = this.#core;
    const loaded = await core.load(runId);
    const live = core.runs.get(runId);
    if (live?.status === FlowStatus.RUNNING) return this.#submitLive(live, key, value);
    const { run } = loaded;
    if (FINISHED.has(run.status)) throw new FlowError(`cannot submit input "${key}" to run "${runId}": it has ended (${run.status})`, { code: ErrorCode.RUN_STATE });
    const entries = await core.store.readInputs(runId);
    if (entries.some((e) => e.key === key)) throw answeredAlready(runId, key);
    const answered = new Set(entries.map((e) => e.key));
    const waits = waitsOf(loaded).filter((w) => !answered.has(w.key));
    const wait = waits.find((w) => w.key === key);
    if (wait === undefined) throw notAwaited(runId, key, waits.map((w) => w.key));
    validateAgainstJson(wait.schema, value, `the value submitted for input "${key}" of run "${runId}"`);
    const entry: InputEntry = { key, outcome: 'answered', value, at: this.#core.clock.now() };
    if (!(await core.store.putInput(runId, entry))) throw answeredAlready(runId, key);
    // Stored: a run that waits goes on (here, if its flow is); one that runs elsewhere reads it there.
    if (core.registry.named(run.flow) === undefined) return;
    if (run.status === FlowStatus.WAITING) {
      await this.review(runId, loaded);
    } else {
      // It ran elsewhere when read: if it parked since, its owner may have read the answers before this one landed.
      await this.review(runId);
    }
  }

  /** Turns the person in the loop of a hybrid run on or off (see `FlowContext.setHumanInLoop`). */
  async setHumanInLoop(runId: string, on: boolean): Promise<void> {
    if (typeof on !== 'boolean') throw new FlowError(`setHumanInLoop: on must be a boolean, got ${typeof on}`, { code: ErrorCode.INVALID_OPTIONS });
    const found = this.#core.runs.live(runId);
    const live = found instanceof Promise ? await found : found;
    if (live?.status === FlowStatus.RUNNING) {
      notHybrid(runId, live.mode);
      return live.setHumanInLoop(on);
    }
    return this.#core.chore(this.#setStored(runId, on, 3));
  }

  async #setStored(runId: string, on: boolean, tries: number): Promise<void> {
    const core = this.#core;
    const loaded = await core.load(runId);
    const { run } = loaded;
    notHybrid(runId, run.mode);
    const live = core.runs.get(runId);
    if (live?.status === FlowStatus.RUNNING) return live.setHumanInLoop(on);
    if (run.status !== FlowStatus.WAITING) {
      throw new FlowError(
        `cannot set human in the loop of run "${runId}": ${FINISHED.has(run.status) ? `it has ended (${run.status})` : `it runs in another context (${run.owner?.processId ?? 'its owner is gone; recover() takes it over'}); set it there`}`,
        { code: ErrorCode.RUN_STATE },
      );
    }
    if (run.humanInLoop === on) return;
    const continued = await this.continueWaiting(loaded, 'human_in_loop', { patch: { humanInLoop: on } });
    if (continued !== undefined) return;
    if (tries <= 1) throw new FlowError(`cannot set human in the loop of run "${runId}": other contexts kept taking it; try again`, { code: ErrorCode.RUN_STATE });
    return this.#setStored(runId, on, tries - 1);
  }

  /**
   * Looks at a run that waits for input with nothing else to do: goes on with it when a wait
   * ended (an answer, a deadline, the context's `inputTimeout`), else looks again when the next
   * one is due. Only for runs of flows known here. Never rejects: what could not be done now (a
   * store that fails) is warned of, and done by the next review or `recover()`.
   */
  async review(runId: string, read?: LoadedRun): Promise<void> {
    await this.#reviewNow(runId, read).catch((error: unknown) => {
      process.emitWarning(`weir: run "${runId}" waits for input and could not go on yet: ${messageOf(error)}; recover() tries again`, { code: WarningCode.INPUT });
    });
  }

  async #reviewNow(runId: string, read: LoadedRun | undefined): Promise<void> {
    const core = this.#core;
    this.#core.clock.clearTimer(this.#timers.get(runId));
    this.#timers.delete(runId);
    if (core.state !== 'open' || core.runs.has(runId)) return;
    // The run the caller just read will do (going on checks under its lease that nobody wrote it
    // since); the answers are read now, after the caller's own: two answers stored at once both
    // see each other's.
    const loaded = read ?? (await core.store.loadRun(runId));
    if (loaded === undefined || loaded.run.status !== FlowStatus.WAITING || core.registry.named(loaded.run.flow) === undefined) return;
    // A run of a version another live worker has is that worker's to go on with.
    if (await othersRun(core, loaded.run)) return;
    const ended = new Set((await core.store.readInputs(runId)).map((e) => e.key));
    const waits = waitsOf(loaded);
    const at = this.#core.clock.now();
    for (const wait of waits) {
      if (!ended.has(wait.key) && wait.deadline !== undefined && wait.deadline <= at) {
        await core.store.putInput(runId, { key: wait.key, outcome: 'expired', at });
        ended.add(wait.key);
      }
    }
    const open = waits.filter((w) => !ended.has(w.key));
    // A step goes on once all its waits ended; one answer of two leaves it waiting.
    let reason: ResumeReason | undefined = waits.some((w) => !open.some((o) => o.step === w.step)) ? 'input' : undefined;
    let fallback: 'fail' | 'default' | 'batch' | undefined;
    let patch: RunPatch | undefined;
    const { inputTimeout, inputFallback } = core.settings;
    const orphanedAt = inputTimeout === undefined ? Infinity : loaded.run.updatedAt + inputTimeout;
    if (open.length > 0 && orphanedAt <= at) {
      fallback = inputFallback;
      reason = 'orphaned';
      if (fallback === 'batch') patch = { humanInLoop: false };
      else for (const wait of open) await core.store.putInput(runId, { key: wait.key, outcome: fallback === 'fail' ? 'refused' : 'expired', at });
    }
    if (reason === undefined) {
      const due = Math.min(orphanedAt, ...open.map((w) => w.deadline ?? Infinity));
      if (due !== Infinity && core.state === 'open') {
        this.#timers.set(
          runId,
          this.#core.clock.setTimer(() => void core.chore(this.review(runId)), Math.max(0, due - this.#core.clock.now()), { unref: true }),
        );
      }
      return;
    }
    await this.continueWaiting(loaded, reason, { fallback, patch });
  }

  /**
   * Takes a run that waits (compare-and-set on its lease token, so one context of many does),
   * applies `how`, and goes on with it here.
   * @returns the run, or `undefined` when another context took it first (it reads the answers then).
   */
  async continueWaiting(loaded: LoadedRun, reason: ResumeReason, how: ContinueHow): Promise<Run | undefined> {
    const runId = loaded.run.runId;
    // One at a time per run here: this context's own live lease would not keep a second one out.
    const busy = this.#continuing.get(runId);
    if (busy !== undefined) {
      await busy.catch(() => undefined);
      return undefined;
    }
    const work = this.#continueNow(loaded, reason, how);
    this.#continuing.set(runId, work);
    try {
      return await work;
    } finally {
      if (this.#continuing.get(runId) === work) this.#continuing.delete(runId);
    }
  }

  async #continueNow(loaded: LoadedRun, reason: ResumeReason, how: ContinueHow): Promise<Run | undefined> {
    const core = this.#core;
    const { run } = loaded;
    const runId = run.runId;
    const graph = core.registry.graphFor(run);
    // A run live here holds its own lease. A parked run holds no lease: one held now means another
    // context took it since (it reads the answers).
    if (core.runs.has(runId) || (run.owner !== undefined && run.leaseExpiresAt >= this.#core.clock.now())) return undefined;
    // Only a free lease: of two contexts going on with one parked run, exactly one takes it.
    const token = await takeFreeLease(core, run);
    if (token === undefined) return undefined;
    // Nobody took the lease since `loaded` was read (the token rose by one), so nobody wrote the
    // run since: it is what goes on, unless this continuation writes a change first.
    let fresh: LoadedRun;
    try {
      fresh = await underLease(
        core,
        runId,
        token,
        async () => {
          // A closing context still cancels the runs that wait (a memory store's).
          if (core.state !== 'open' && !(core.state === 'closing' && how.cancelWith !== undefined)) {
            throw new FlowError(`cannot go on with run "${runId}": the FlowContext is ${core.state}`, { code: ErrorCode.CONTEXT_CLOSED });
          }
          if (how.patch !== undefined) await core.journalOf(runId, token, run.lastSeq).patchNow({ ...how.patch, updatedAt: this.#core.clock.now() });
          if (how.apply !== undefined) await how.apply(token, loaded);
          return how.patch !== undefined || how.apply !== undefined ? core.load(runId) : loaded;
        },
        () => core.runs.has(runId),
      );
    } catch (error) {
      if (error instanceof FlowError && error.code === ErrorCode.CONTEXT_CLOSED) return undefined;
      throw error;
    }
    return restoreRun(core, graph, fresh, token, { reason, fallback: how.fallback, failWith: changedGraph(core, graph, run), cancelWith: how.cancelWith });
  }

  /** Cancels every run waiting for input in the store (a closing context over a memory store), so their handles settle. */
  async cancelAll(reason: CancelledError): Promise<void> {
    const core = this.#core;
    // A store that fails (or was closed under the context) has nothing left to cancel.
    const page = await core.store.listRuns({ status: FlowStatus.WAITING, limit: 10_000, now: this.#core.clock.now() }).catch(() => undefined);
    await Promise.allSettled(
      (page?.runs ?? []).map(async (run) => {
        const loaded = await core.load(run.runId);
        await (await this.continueWaiting(loaded, 'resumed', { cancelWith: reason }))?.ended();
      }),
    );
  }

  /** Stops the review timers: the context closes. */
  stop(): void {
    for (const timer of this.#timers.values()) this.#core.clock.clearTimer(timer);
    this.#timers.clear();
  }
}

/** @throws FlowError `WEIR_RUN_STATE` unless the run is hybrid. */
function notHybrid(runId: string, mode: RunMode): void {
  if (mode !== RunMode.HYBRID) {
    throw new FlowError(`cannot set human in the loop of run "${runId}": it is a ${mode} run; only a hybrid run's person in the loop can be turned on or off`, { code: ErrorCode.RUN_STATE });
  }
}
