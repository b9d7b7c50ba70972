/** `ctx.health()`: whether a context can do its work, and what it holds, for a probe or an operator. */
import { FlowStatus } from '../model/status.js';
import type { LeaseRenewal } from '../durability/leases.js';
import type { ContextCore, ContextState } from './context-core.js';

/** What `ctx.health()` reports. */
export interface ContextHealth {
  /** The context is open, its store answered, and its leases are renewed on time. */
  readonly ok: boolean;
  readonly state: ContextState;
  readonly store: {
    readonly kind: string;
    /** Whether a read of the store succeeded just now. */
    readonly reachable: boolean;
    /** How long that read took, in ms. */
    readonly readMs: number;
    /** Why it failed, when it did (the error's code). */
    readonly error?: string;
    /** How long the context's last commit took, in ms, and when it ended (ms since the epoch); absent before the first. */
    readonly lastCommitMs?: number;
    readonly lastCommitAt?: number;
  };
  /** How many worker threads and child processes the pools hold. */
  readonly workers: { readonly threads: number; readonly processes: number };
  readonly leases: {
    /** How many leases the last renewal kept. */
    readonly held: number;
    /** When they were last renewed (ms since the epoch), if ever. */
    readonly renewedAt?: number;
    /** The last renewal did not fail, and none is overdue. */
    readonly onTime: boolean;
  };
  readonly runs: {
    /** Runs this context runs now. */
    readonly active: number;
    /** Runs in the store waiting for input (counted up to 1,000). */
    readonly waiting: number;
    /** The waiting run (of those counted) that has waited longest, and since when (ms since the epoch). */
    readonly oldestWaiting?: { readonly runId: string; readonly since: number };
  };
}

/** How many waiting runs `health` reads at most. */
const WAITING_READ = 1000;

/** Reads the store once (the waiting runs), and reports with what the context knows. */
export async function healthOf(core: ContextCore, leases: LeaseRenewal, workers: { readonly threads: number; readonly processes: number }): Promise<ContextHealth> {
  const begun = performance.now();
  let reachable = true;
  let error: string | undefined;
  let waiting: readonly { runId: string; updatedAt: number }[] = [];
  try {
    waiting = (await core.store.listRuns({ status: FlowStatus.WAITING, limit: WAITING_READ, now: core.clock.now() })).runs;
  } catch (thrown) {
    reachable = false;
    error = (thrown as { code?: unknown }).code === undefined ? 'WEIR_STORE' : String((thrown as { code?: unknown }).code);
  }
  const readMs = performance.now() - begun;
  const oldest = waiting.reduce<{ runId: string; updatedAt: number } | undefined>((min, run) => (min === undefined || run.updatedAt < min.updatedAt ? run : min), undefined);
  const lease = leases.status;
  const commits = core.env.commits;
  return {
    ok: core.state === 'open' && reachable && lease.onTime,
    state: core.state,
    store: {
      kind: core.store.kind,
      reachable,
      readMs,
      ...(error === undefined ? {} : { error }),
      ...(commits.lastMs === undefined || commits.lastAt === undefined ? {} : { lastCommitMs: commits.lastMs, lastCommitAt: commits.lastAt }),
    },
    workers,
    leases: { held: lease.held, ...(lease.renewedAt === undefined ? {} : { renewedAt: lease.renewedAt }), onTime: lease.onTime },
    runs: {
      active: core.runs.size,
      waiting: waiting.length,
      ...(oldest === undefined ? {} : { oldestWaiting: { runId: oldest.runId, since: oldest.updatedAt } }),
    },
  };
}
