/** `ctx.skip` of a step of a run live here: its attempt stopped, its output committed, its dependants go on. */
import { toErrorData } from '../errors/error-data.js';
import { CancelledError, ErrorCode, FlowError } from '../errors/errors.js';
import { validate } from '../executors/invoke.js';
import type { GraphNode } from '../graph/compile.js';
import type { RunWaits } from '../human/waits.js';
import { FlowStatus } from '../model/status.js';
import type { RunState } from './run-state.js';
import type { Scheduler } from './scheduler.js';

const { PENDING, RUNNING, WAITING, COMPLETED, CANCELLED } = FlowStatus;

/**
 * Checks that `ctx.skip` may mark this step done with `output`: a leaf that has not completed, and
 * an output its processor's schema accepts.
 * @returns the output as the schema parsed it.
 * @throws FlowError `WEIR_RUN_STATE` for a composite or a completed step; ValidationError `WEIR_VALIDATION` for a bad output.
 */
export function checkSkip(node: GraphNode, runId: string, status: FlowStatus | undefined, output: unknown): unknown {
  if (node.processor === undefined) {
    throw new FlowError(`cannot skip "${node.name}" in run "${runId}": it is a composite; skip the steps in it`, { code: ErrorCode.RUN_STATE });
  }
  if (status === COMPLETED) throw new FlowError(`cannot skip "${node.name}" in run "${runId}": it completed`, { code: ErrorCode.RUN_STATE });
  return validate(node.processor.output, output, `ctx.skip: the output given for flow "${node.name}"`);
}

/**
 * Marks a step of a running run done with `output`: a running attempt is stopped, and the
 * dependants go on once the output is durable.
 * @throws as `checkSkip` does; FlowError `WEIR_RUN_STATE` for a step that ended or whose output is being recorded.
 */
export async function skipStep(state: RunState, scheduler: Scheduler, waits: RunWaits, name: string, output: unknown): Promise<void> {
  const runId = state.runId;
  const node = state.graph.byName.get(name);
  if (node === undefined || (node.index === 0 && node.processor === undefined)) {
    throw new FlowError(`run "${runId}" has no step "${name}"`, { code: ErrorCode.INVALID_OPTIONS });
  }
  const index = node.index;
  const s = state.steps[index]!;
  const value = checkSkip(node, runId, s.status, output);
  if (!state.live) throw new FlowError(`cannot skip "${name}": run "${runId}" has ended`, { code: ErrorCode.RUN_STATE });
  const before = s.status;
  if (before !== PENDING && before !== RUNNING && before !== WAITING) {
    throw new FlowError(`cannot skip "${name}" in run "${runId}": it has ended (${before}) and its end was passed on; skip it once the run has ended, then resume the run`, {
      code: ErrorCode.RUN_STATE,
    });
  }
  if (state.isCommitting(index)) {
    throw new FlowError(`cannot skip "${name}" in run "${runId}": its output is being recorded`, { code: ErrorCode.RUN_STATE });
  }
  const wasReadied = s.readied;
  const ended = state.clock.now();
  const step = state.running.get(index);
  state.running.delete(index);
  if (step !== undefined) {
    const reason = new CancelledError(`flow "${name}" was skipped by ctx.skip`);
    s.attempts.push({ attempt: s.attempts.length + 1, startTime: s.attemptStarted, endTime: ended, duration: ended - s.attemptStarted, error: toErrorData(reason) });
    s.status = CANCELLED;
    step.abort(reason);
  }
  scheduler.cancelTimer(index);
  waits.drop(index);
  s.status = RUNNING;
  // Not current for any attempt: a late result of the stopped attempt is ignored.
  s.readied = true;
  state.untouch(index);
  state.commitBegan(index);
  try {
    await state.journal.complete(
      { runId, step: name, status: COMPLETED, attempts: s.attempts.slice(), ...(s.startTime === undefined ? {} : { startTime: s.startTime }), endTime: ended, hasOutput: true, updatedAt: ended },
      value,
      { type: 'step_complete', runId, seq: state.journal.nextSeq(), time: ended, step: name, attempt: s.attempts.length, duration: 0, skipped: true },
    );
  } catch (error) {
    // Not recorded: the step goes back to waiting for its turn (a stopped attempt counts as a cancelled one).
    if (state.live && s.status === RUNNING) {
      s.status = PENDING;
      s.readied = wasReadied;
      state.touch(index);
      if (wasReadied) scheduler.schedule(index);
    }
    throw error;
  } finally {
    state.commitEnded(index);
  }
  if (s.status !== RUNNING) return;
  s.output = value;
  scheduler.finish(index, COMPLETED, ended);
}
