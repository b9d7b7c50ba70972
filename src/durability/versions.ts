/**
 * Flow versions across contexts: the version a stored run needs, and whether a run is another
 * context's to take because a live worker on the store has its version and this context does not
 * (so during a rolling deploy, old runs stay with old code).
 */
import type { ContextCore } from '../context/context-core.js';
import { versionKey, type RunRecord } from '../storage/journal/run-store.js';

/** The version a run needs: its flow's `version` when it was started, else the graph's fingerprint. */
export function versionOf(run: RunRecord): string {
  return run.version ?? run.fingerprint;
}

/** Whether this context has the run's flow registered at the version the run needs. */
export function hasVersionOf(core: ContextCore, run: RunRecord): boolean {
  const flow = core.registry.registered(run.flow);
  return flow !== undefined && core.registry.graphOf(flow).version === versionOf(run);
}

/**
 * Whether a run is for another context: this one lacks its version, and a live worker on the store
 * has it. Without a register of workers (stores other than Postgres), or when no live worker has
 * the version, it is not: the context applies `onFlowChange` as it always did.
 * @param live the store's live versions, when the caller read them already.
 */
export async function othersRun(core: ContextCore, run: RunRecord, live?: ReadonlySet<string>): Promise<boolean> {
  const claims = core.store.claims;
  if (claims === undefined || hasVersionOf(core, run)) return false;
  const versions = live ?? (await claims.liveVersions(core.clock.now()));
  return versions.has(versionKey(run.flow, versionOf(run)));
}
