/** A run's `FlowResult`, built from its step states. */
import type { ErrorData } from '../errors/error-data.js';
import type { FlowResult, StepResult } from '../model/result.js';
import { FlowStatus } from '../model/status.js';
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
