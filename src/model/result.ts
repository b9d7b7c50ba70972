/** The plain-data records a run produces: per step and for the whole run. */
import type { ErrorData } from '../errors/error-data.js';
import type { FlowStatus } from './status.js';

/** One attempt of a step: when it ran and, if it failed, why. Times in ms since the epoch. */
export interface AttemptRecord {
  /** 1 for the first attempt. */
  readonly attempt: number;
  readonly startTime: number;
  readonly endTime: number;
  /** `endTime - startTime`, in milliseconds. */
  readonly duration: number;
  readonly error?: ErrorData;
  /** Set when the attempt ended to wait for these inputs (it is not counted by the retry policy). */
  readonly waitedFor?: readonly string[];
}

/** What happened to one step of a run. */
export interface StepResult<O = unknown> {
  readonly name: string;
  readonly status: FlowStatus;
  /** When the first attempt started (ms since the epoch), if one did. */
  readonly startTime: number | undefined;
  readonly endTime: number | undefined;
  readonly output: O | undefined;
  readonly error: ErrorData | undefined;
  readonly attempts: readonly AttemptRecord[];
}

/**
 * The outcome of a run. A composite's `output` holds its children's outputs by name; a failed
 * run's `error` is the first failing step's error, with `step` naming that step.
 */
export interface FlowResult<O = unknown> extends StepResult<O> {
  readonly runId: string;
  /** The process that ran it, as `host:pid`. */
  readonly processId: string;
  readonly startTime: number;
  readonly endTime: number;
  /** Every step of the run by name (composites included, the run's own flow excluded unless it is a single step). */
  readonly steps: Readonly<Record<string, StepResult>>;
}
