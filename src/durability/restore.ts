/**
 * Going on with a stored run in this context: its completed outputs and its answers are read, and
 * it is launched again from its journal under the lease just taken (given back if that fails).
 */
import { ErrorCode, FlowError } from '../errors/errors.js';
import type { CompiledGraph } from '../graph/compile.js';
import type { RestoredRun } from '../run/restored.js';
import type { Run } from '../run/run.js';
import type { LoadedRun, RunRecord } from '../storage/journal/run-store.js';
import type { ContextCore } from '../context/context-core.js';
import { outputsOf } from '../run/stored-run.js';
import { underLease } from './leases.js';

/** How a stored run goes on: why, and what is done to it first. */
export type RestoreHow = Pick<RestoredRun, 'reason' | 'from' | 'rerunEnded' | 'failWith' | 'fallback' | 'cancelWith'>;

/**
 * Rebuilds a run from the journal and goes on with it here.
 * @param read its outputs, when the caller read them already.
 * @throws what reading the store throws; FlowError `WEIR_CONTEXT_CLOSED` once the context closes
 * (a closing context still cancels a run that waits). The lease is given back either way.
 */
export async function restoreRun(core: ContextCore, graph: CompiledGraph, loaded: LoadedRun, leaseToken: number, how: RestoreHow, read?: ReadonlyMap<string, unknown>): Promise<Run> {
  const { run: record } = loaded;
  // The lease goes back if anything fails, so another context can take the run at once.
  const [outputs, inputs] = await underLease(core, record.runId, leaseToken, async () => {
    // A run taken from the queue never started: it has no outputs, and nothing can have answered it.
    const found = how.reason === 'queued' ? ([new Map(), []] as const) : await Promise.all([read ?? outputsOf(core.store, loaded), core.store.readInputs(record.runId)]);
    if (core.state !== 'open' && !(core.state === 'closing' && how.cancelWith !== undefined)) {
      throw new FlowError(`cannot go on with run "${record.runId}": the FlowContext is ${core.state}`, { code: ErrorCode.CONTEXT_CLOSED });
    }
    return found;
  });
  const restore: RestoredRun = { record, leaseToken, steps: new Map(loaded.steps.map((s) => [s.step, s])), outputs, inputs, ...how };
  return core.runs.launch(graph, record.input, { runId: record.runId, mode: record.mode, humanInLoop: record.humanInLoop, timeout: undefined, signal: undefined, concurrency: Infinity, restore });
}

/** `WEIR_FLOW_CHANGED`: the run's graph changed since it started. */
export function flowChanged(run: RunRecord): FlowError {
  return new FlowError(
    `run "${run.runId}": the graph of flow "${run.flow}" changed since the run started (names, types or edges); pass onFlowChange: 'continue' to go on with the new graph`,
    { code: ErrorCode.FLOW_CHANGED },
  );
}

/** The error to fail a restored run with at once when its graph changed and the context says fail. */
export function changedGraph(core: ContextCore, graph: CompiledGraph, run: RunRecord): FlowError | undefined {
  return graph.fingerprint !== run.fingerprint && core.settings.onFlowChange === 'fail' ? flowChanged(run) : undefined;
}
