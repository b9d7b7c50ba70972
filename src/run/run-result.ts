/** What a run records of itself: its first record and event, its last patch and event, and its `FlowResult`. */
import type { ErrorData } from '../errors/error-data.js';
import type { WeirEvent } from '../model/events.js';
import type { NewRunRecord, RunPatch } from '../storage/journal/run-store.js';
import type { FlowResult, StepResult } from '../model/result.js';
import { FlowStatus } from '../model/status.js';
import type { Mutable } from '../util/types.js';
import type { RunState } from './run-state.js';

/** The result of a run that ended (or stopped here) with `status` at `ended`. */
export function resultOf(state: RunState, status: FlowStatus, error: ErrorData | undefined, ended: number): FlowResult {
  const root = state.graph.root;
  const steps: Record<string, StepResult> = {};
  for (const step of state.steps) {
    if (step.node.index === 0 && root.processor === undefined) continue;
    steps[step.node.name] = step.result();
  }
  const rootStep = state.steps[0]!;
  return {
    runId: state.runId,
    processId: state.env.processId,
    name: root.name,
    status,
    startTime: state.startTime,
    endTime: ended,
    output: root.processor === undefined ? (rootStep.output ?? state.partialOutput(0)) : status === FlowStatus.COMPLETED ? rootStep.output : undefined,
    error,
    attempts: rootStep.attempts,
    steps,
  };
}

/** A new run's record and its `run_start` event, numbered by the journal. */
export function startOf(state: RunState, humanInLoop: boolean): { record: NewRunRecord; event: WeirEvent } {
  const { settings, graph } = state;
  const created = state.startTime;
  const event: WeirEvent = { type: 'run_start', runId: state.runId, seq: state.journal.nextSeq(), time: created, flow: graph.root.name, mode: settings.mode };
  const record: Mutable<NewRunRecord> = {
    runId: state.runId,
    flow: graph.root.name,
    fingerprint: graph.fingerprint,
    version: graph.version,
    input: state.input,
    mode: settings.mode,
    humanInLoop,
    status: FlowStatus.RUNNING,
    createdAt: created,
    updatedAt: created,
    owner: state.env.owner,
    leaseExpiresAt: created + state.env.leaseMs,
  };
  // Set after, not spread in: a literal with a spread in it is built property by property.
  if (settings.retryOf !== undefined) record.retryOf = settings.retryOf;
  return { record, event };
}

/** The patch and the last event of a run that ends with `status` at `ended`, numbered by the journal. */
export function endOf(state: RunState, status: FlowStatus, error: ErrorData | undefined, ended: number): { patch: RunPatch; event: WeirEvent } {
  const { runId } = state;
  const duration = ended - state.startTime;
  const seq = state.journal.nextSeq();
  const event: WeirEvent =
    status === FlowStatus.COMPLETED
      ? { type: 'run_complete', runId, seq, time: ended, duration }
      : status === FlowStatus.CANCELLED
        ? { type: 'run_cancelled', runId, seq, time: ended, duration, error: error! }
        : { type: 'run_failed', runId, seq, time: ended, duration, error: error! };
  const patch: RunPatch = {
    status,
    updatedAt: ended,
    endedAt: ended,
    ranBy: state.env.processId,
    error,
    // A composite's output is its children's, already stored with them.
    output: state.graph.root.processor !== undefined && status === FlowStatus.COMPLETED ? state.steps[0]!.output : undefined,
  };
  return { patch, event };
}
