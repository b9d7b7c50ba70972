/**
 * How a run's steps end when the run ends early: stopped (a cancel, a run timeout), failed before
 * any (more) step runs (a poison run, a changed graph, a record that could not be stored), or
 * refused its input. Marks the steps; the run then commits its end.
 */
import { toErrorData, type ErrorData } from '../errors/error-data.js';
import { UpstreamFailedError } from '../errors/errors.js';
import type { GraphNode } from '../graph/compile.js';
import { FlowStatus } from '../model/status.js';
import type { RunState } from './run-state.js';
import type { StepContext } from './step-context.js';

const { PENDING, RUNNING, WAITING, COMPLETED, FAILED, CANCELLED, SKIPPED } = FlowStatus;

/** Takes the running attempts out, to stop them; a step whose output is being committed is left be: it completes once that commit lands. */
export function takeRunning(state: RunState): [index: number, step: StepContext][] {
  const running = [...state.running].filter(([index]) => !state.isCommitting(index));
  for (const [index] of running) state.running.delete(index);
  return running;
}

/**
 * Stops every step that has not ended: running ones and those between attempts are `cancelled` with
 * a `step_cancelled` event, the others just `cancelled`. Returns the attempts to abort once the
 * statuses changed (so they see they are no longer current).
 */
export function stopSteps(state: RunState, data: ErrorData, ended: number): [index: number, step: StepContext][] {
  const running = takeRunning(state);
  for (const [index] of running) cancelStep(state, index, data, ended);
  state.steps.forEach((step, i) => {
    if (state.isCommitting(i)) return;
    if (step.status === PENDING && step.attempts.length > step.attemptBase) {
      // Between attempts (waiting on backoff or back in the queue): it did start, so it is reported.
      cancelStep(state, i, data, ended);
    } else if (step.status === PENDING || step.status === RUNNING || step.status === WAITING) {
      step.status = CANCELLED;
      step.endTime = ended;
      state.touch(i);
    }
  });
  return running;
}

function cancelStep(state: RunState, index: number, data: ErrorData, ended: number): void {
  const step = state.steps[index]!;
  const attempts = step.attempts;
  if (step.status === RUNNING) {
    attempts.push({ attempt: attempts.length + 1, startTime: step.attemptStarted, endTime: ended, duration: ended - step.attemptStarted, error: data });
  }
  step.status = CANCELLED;
  step.error = data;
  step.endTime = ended;
  state.emit({ type: 'step_cancelled', step: step.node.name, attempt: attempts.length, error: data });
  state.touch(index);
}

/** Before any (more) step runs: every step that is not kept as completed is skipped with `error`. */
export function skipUnfinished(state: RunState, error: ErrorData, ended: number): void {
  state.steps.forEach((step, i) => {
    if (step.kept === COMPLETED) {
      step.status = COMPLETED;
      return;
    }
    step.status = SKIPPED;
    step.error = error;
    step.endTime = ended;
    state.touch(i);
  });
}

/** The run's input fails an entry step's schema: that step failed, its composites with it, every other step skipped. */
export function refuseInput(state: RunState, entry: GraphNode, error: ErrorData, ended: number): void {
  const skipped = toErrorData(new UpstreamFailedError(`skipped because the run's input failed validation for flow "${entry.name}"`, { upstream: entry.name }));
  for (const step of state.steps) {
    step.status = SKIPPED;
    step.error = skipped;
    step.culprit = entry.name;
    step.endTime = ended;
  }
  for (let i = entry.index; i !== -1; i = state.graph.nodes[i]!.parent) {
    state.steps[i]!.status = FAILED;
    state.steps[i]!.error = error;
  }
  for (let i = 0; i < state.steps.length; i++) state.touch(i);
}
