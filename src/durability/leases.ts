/**
 * Leases: taking a run's free lease (a compare-and-set on its token, so of two takers exactly one
 * goes on), giving it back when what was to be done under it fails, and renewing the leases of a
 * context's live runs on a timer, apart from their step events.
 */
import { ErrorCode, FlowError, WarningCode } from '../errors/errors.js';
import { FlowStatus } from '../model/status.js';
import type { RunRecord } from '../storage/journal/run-store.js';
import type { TimerHandle } from '../util/clock.js';
import { messageOf } from '../util/message-of.js';
import type { ContextCore } from '../context/context-core.js';

/**
 * Takes the lease of a run that nobody holds (it ended, or waits for input), unless anybody took it
 * since `run` was read: one compare-and-set on its token in the store (`ifToken`), so of any two
 * takers, other contexts or other calls of this one, exactly one goes on, and nothing taken too
 * late has to be given back.
 * @returns the token to write with, or `undefined` when somebody was first.
 */
export async function takeFreeLease(core: ContextCore, run: RunRecord): Promise<number | undefined> {
  return core.store.acquireLease(run.runId, core.owner, core.settings.leaseMs, core.clock.now(), { ifToken: run.leaseToken });
}

/**
 * `takeFreeLease`, for a caller that must have it.
 * @throws FlowError `WEIR_RUN_STATE` naming `action` when another context took the run first.
 */
export async function takeFreeLeaseOrFail(core: ContextCore, run: RunRecord, action: string): Promise<number> {
  const token = await takeFreeLease(core, run);
  if (token === undefined) throw new FlowError(`cannot ${action}: another call took the run first (here or in another context)`, { code: ErrorCode.RUN_STATE });
  return token;
}

/** Gives a lease back; a failure is left to the lease's expiry. */
export async function releaseLease(core: ContextCore, runId: string, token: number): Promise<void> {
  await core.store.releaseLease(runId, core.owner, token).catch(() => false);
}

/**
 * Does `work` under a lease just taken; if it fails, the lease is given back (unless `keep` says a
 * run now holds it) and the error thrown on.
 */
export async function underLease<T>(core: ContextCore, runId: string, token: number, work: () => Promise<T>, keep: () => boolean = () => false): Promise<T> {
  try {
    return await work();
  } catch (error) {
    if (!keep()) await releaseLease(core, runId, token);
    throw error;
  }
}

/** Renews the leases of a context's live runs every third of `leaseTimeout`, while it has any. */
export class LeaseRenewal {
  readonly #core: ContextCore;
  #timer: TimerHandle | undefined;
  /** When the leases were last renewed, and how many (on the context's clock). */
  #renewedAt: number | undefined;
  #renewed = 0;
  /** Set while the last renewal failed. */
  #failing = false;

  constructor(core: ContextCore) {
    this.#core = core;
  }

  /** Keeps renewing while the context runs something (called whenever a run is launched). */
  start(): void {
    if (this.#timer !== undefined) return;
    this.#timer = this.#core.clock.setTimer(() => void this.#renew(), Math.max(10, Math.floor(this.#core.settings.leaseMs / 3)), { unref: true, background: true });
  }

  stop(): void {
    this.#core.clock.clearTimer(this.#timer);
    this.#timer = undefined;
  }

  /**
   * How renewal goes: how many leases the last renewal kept, when, and whether it is on time (the
   * last one did not fail, and none is overdue by more than a third of the lease).
   */
  get status(): { readonly held: number; readonly renewedAt: number | undefined; readonly onTime: boolean } {
    const leaseMs = this.#core.settings.leaseMs;
    const overdue = this.#timer !== undefined && this.#renewedAt !== undefined && this.#core.clock.now() - this.#renewedAt > (leaseMs * 2) / 3;
    return { held: this.#renewed, renewedAt: this.#renewedAt, onTime: !this.#failing && !overdue };
  }

  async #renew(): Promise<void> {
    this.#timer = undefined;
    const core = this.#core;
    const runs = [...core.runs.values()].filter((run) => run.status === FlowStatus.RUNNING);
    if (runs.length === 0) {
      this.#renewed = 0;
      return;
    }
    this.start();
    try {
      const { lost } = await core.store.renewLeases(
        core.owner,
        runs.map((run) => ({ runId: run.runId, leaseToken: run.leaseToken })),
        this.#core.clock.now() + core.settings.leaseMs,
      );
      for (const runId of lost) {
        core.runs.get(runId)?.leaseLost(new FlowError(`run "${runId}": its lease was taken over by another context`, { code: ErrorCode.LEASE_LOST }));
      }
      this.#failing = false;
      this.#renewedAt = core.clock.now();
      this.#renewed = runs.length - lost.length;
    } catch (error) {
      this.#failing = true;
      // The next renewal tries again; a run whose lease runs out meanwhile may be taken over, and its commits are then refused.
      process.emitWarning(`weir: renewing run leases failed: ${messageOf(error)}`, { code: WarningCode.LEASE_RENEWAL });
    }
  }
}
