/** One step of a run as the run keeps it: one record per node of the compiled graph. */
import type { ErrorData } from '../errors/error-data.js';
import type { GraphNode } from '../graph/compile.js';
import type { AnySchema } from '../model/processor.js';
import type { AttemptRecord, StepResult } from '../model/result.js';
import { FlowStatus } from '../model/status.js';
import type { InputWait, StepProgress } from '../model/waits.js';
import type { StepRecord } from '../storage/journal/run-store.js';
import type { Mutable } from '../util/types.js';

const { PENDING, RUNNING, WAITING, COMPLETED } = FlowStatus;

/** An ask a step waits on, with its zod schema where it is at hand (an inline ask of this process). */
export interface Wait extends InputWait {
  readonly zod?: AnySchema | undefined;
}

/** The state of one step (a leaf or a composite) in a run. */
export class StepState {
  readonly node: GraphNode;
  status: FlowStatus = PENDING;
  /** Dependencies not ended yet: the step is ready once it is 0 (and its composite runs). */
  waitingOn: number;
  /** For a running composite: children not ended yet. */
  childrenLeft = 0;
  input: unknown = undefined;
  output: unknown = undefined;
  attempts: AttemptRecord[] = [];
  /** Attempts made before this run (re)started, or that ended to wait: the retry policy counts only the others. */
  attemptBase = 0;
  /** When the first attempt started. */
  startTime: number | undefined = undefined;
  /** When the current attempt started. */
  attemptStarted = 0;
  /** Set once the step became ready, so it is never readied (and queued) twice. */
  readied = false;
  endTime: number | undefined = undefined;
  error: ErrorData | undefined = undefined;
  progress: StepProgress | undefined = undefined;
  /** When a restored step's next attempt is due (a backoff that outlived its process). */
  retryAt: number | undefined = undefined;
  /**
   * How a restored step ended before, kept: `completed` (any restored run), or `failed` / `skipped`
   * for good (unless a resume runs them again). It ends so again, silently, when its turn comes.
   */
  kept: FlowStatus | undefined = undefined;
  /** A restored composite whose `step_start` is already in the log. */
  announced = false;
  /** The flow whose failure this failed or skipped step traces back to. */
  culprit: string | undefined = undefined;
  /** The asks of the current attempt, or the waits of a waiting step. */
  waits: Wait[] | undefined = undefined;
  /** Its record changed since the run's last commit (see `RunState.touch`). */
  changed = false;
  /** Its completion is being committed (see `RunState.commitBegan`). */
  committing = false;

  constructor(node: GraphNode) {
    this.node = node;
    this.waitingOn = node.dependencies.length;
  }

  /** The step's durable state now, as the journal stores it. */
  record(runId: string, at: number): StepRecord {
    const node = this.node;
    const status = this.status;
    const record: Mutable<StepRecord> = { runId, step: node.name, status, attempts: this.attempts.slice(), hasOutput: false, updatedAt: at };
    if (node.processor === undefined) {
      record.composite = true;
      record.children = node.childNames;
    }
    if (this.startTime !== undefined) record.startTime = this.startTime;
    if (this.endTime !== undefined && status !== RUNNING && status !== PENDING) record.endTime = this.endTime;
    if (this.error !== undefined && status !== COMPLETED) record.error = this.error;
    if (this.progress !== undefined) record.progress = this.progress;
    if (this.retryAt !== undefined && status === PENDING) record.retryAt = this.retryAt;
    if (this.attemptBase > 0) record.attemptBase = this.attemptBase;
    if (status === RUNNING && node.processor !== undefined) record.updatedAt = this.attemptStarted;
    const waits = this.waits;
    if (waits !== undefined && (status === WAITING || status === RUNNING)) record.waitingFor = waits.map(({ zod: _, ...wait }) => wait);
    return record;
  }

  /** What `FlowResult.steps` shows of it. */
  result(): StepResult {
    return {
      name: this.node.name,
      status: this.status,
      startTime: this.startTime,
      endTime: this.endTime,
      output: this.status === COMPLETED ? this.output : undefined,
      error: this.error,
      attempts: this.attempts,
    };
  }
}
