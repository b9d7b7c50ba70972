/**
 * A run read back from the journal, to go on with (recovered, resumed, or going on after a wait),
 * and how its stored step records become the run's step states: what ended is kept, the rest runs.
 */
import { toErrorData } from '../errors/error-data.js';
import { ErrorCode, FlowError, type CancelledError } from '../errors/errors.js';
import type { CompiledGraph } from '../graph/compile.js';
import { FlowStatus } from '../model/status.js';
import type { InputEntry } from '../model/waits.js';
import type { RunRecord, StepRecord } from '../storage/journal/run-store.js';
import type { RunState } from './run-state.js';

const { PENDING, RUNNING, WAITING, COMPLETED, FAILED, SKIPPED } = FlowStatus;

/** Why a stored run goes on; `queued` is a run taken from the queue, which starts here. */
export type ResumeReason = 'recovered' | 'resumed' | 'input' | 'orphaned' | 'human_in_loop' | 'queued';

/** A run read back from the journal, to go on with. */
export interface RestoredRun {
  readonly record: RunRecord;
  /** The lease token the context holds for it. */
  readonly leaseToken: number;
  readonly steps: ReadonlyMap<string, StepRecord>;
  /** The stored outputs of completed leaves. */
  readonly outputs: ReadonlyMap<string, unknown>;
  readonly reason: ResumeReason;
  /** For `orphaned`: the fallback taken. */
  readonly fallback?: 'fail' | 'default' | 'batch' | undefined;
  /** How the run's waits for input ended so far. */
  readonly inputs: readonly InputEntry[];
  /** Re-run this step and everything downstream of it. */
  readonly from?: string | undefined;
  /**
   * Steps that failed or were skipped run again (`ctx.resume`). Every other way a run goes on (a
   * recovery, an answer, a skip, a fallback, a cancel) keeps them as they ended.
   */
  readonly rerunEnded?: boolean | undefined;
  /** Fail the run at once with this error (a poison run, a changed graph). */
  readonly failWith?: FlowError | undefined;
  /** Cancel the run at once (a run cancelled while it waited for input). */
  readonly cancelWith?: CancelledError | undefined;
}

/** Applies what the journal says to a run's steps: completed steps are kept, the rest run (again). */
export function applyRestore(state: RunState, restore: RestoredRun): void {
  const graph = state.graph;
  const redo = restore.from === undefined ? new Set<number>() : downstreamOf(graph, graph.byName.get(restore.from)!.index);
  const at = state.clock.now();
  for (const node of graph.nodes) {
    const i = node.index;
    const record = restore.steps.get(node.name);
    if (record === undefined) continue;
    const step = state.steps[i]!;
    const attempts = [...record.attempts];
    step.startTime = record.startTime;
    if (record.status === COMPLETED && !redo.has(i) && (node.processor === undefined || restore.outputs.has(node.name))) {
      step.kept = COMPLETED;
      step.attempts = attempts;
      step.endTime = record.endTime;
      step.output = restore.outputs.get(node.name);
      continue;
    }
    if (restore.rerunEnded !== true && (record.status === FAILED || record.status === SKIPPED)) {
      // A run goes on where it was: a step that failed for good stays failed (no fresh retry
      // budget), one skipped stays skipped, and neither is announced again. Only a resume reruns them.
      step.kept = record.status;
      if (node.processor === undefined) step.announced = true;
      step.attempts = attempts;
      step.endTime = record.endTime;
      step.error = record.error;
      continue;
    }
    // Attempts the policy does not count so far. A record from before the base was stored: the waited and lost ones.
    const uncounted = record.attemptBase ?? attempts.filter((a) => a.waitedFor !== undefined || a.error?.code === ErrorCode.OWNER_LOST).length;
    const lost = record.status === RUNNING && node.processor !== undefined && !redo.has(i);
    if (lost) {
      // The attempt its lost owner was running: recorded, and not counted against the retry policy.
      const started = record.updatedAt;
      const error = new FlowError(`flow "${node.name}": attempt ${attempts.length + 1} was lost with the process running it`, { code: ErrorCode.OWNER_LOST });
      attempts.push({ attempt: attempts.length + 1, startTime: started, endTime: at, duration: Math.max(0, at - started), error: toErrorData(error) });
    }
    if (record.status === RUNNING && node.processor === undefined && !redo.has(i)) step.announced = true;
    if (record.status === PENDING && record.retryAt !== undefined) step.retryAt = record.retryAt;
    // A step that waited waits again when its turn comes (unless its waits ended meanwhile).
    if (record.status === WAITING && record.waitingFor !== undefined && !redo.has(i)) step.waits = [...record.waitingFor];
    step.attempts = attempts;
    // The retry policy starts afresh after a resume (all attempts so far uncounted); a recovery goes on
    // counting where the run was, the attempt just lost aside.
    step.attemptBase = record.status === PENDING || record.status === WAITING ? uncounted : lost ? uncounted + 1 : attempts.length;
    state.touch(i);
  }
}

/** The step, everything under it, everything that depends on any of those, and the composites that hold them. */
function downstreamOf(graph: CompiledGraph, start: number): Set<number> {
  const redo = new Set<number>();
  const visit = (i: number, withChildren: boolean): void => {
    if (redo.has(i)) return;
    redo.add(i);
    const node = graph.nodes[i]!;
    if (withChildren) for (const child of node.children) visit(child, true);
    for (const edge of node.dependants) visit(edge.index, true);
    // Its composite's output changes with it, so the composite's dependants run again too; the
    // composite itself only re-assembles, and its other children stay kept.
    if (node.parent !== -1) visit(node.parent, false);
  };
  visit(start, true);
  return redo;
}
