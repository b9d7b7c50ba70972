/** What a step waits on and how its waits ended: human-in-the-loop data shared by every layer. */

/** A step's last reported progress. */
export interface StepProgress {
  /** From 0 to 1. */
  readonly fraction: number;
  readonly message?: string;
}

/** One input a step waits on (human in the loop). */
export interface InputWait {
  readonly key: string;
  /** The JSON Schema the submitted value must pass (of the schema's input side). */
  readonly schema: unknown;
  /** When the step asked, in ms since the epoch. */
  readonly askedAt: number;
  /** When the wait gives up, in ms since the epoch; none means forever. */
  readonly deadline?: number;
  /** Whether the ask has a default to fall back on. */
  readonly hasDefault: boolean;
}

/** One input a step of a run waits on, as `listRuns` and `getRun` show it. */
export interface WaitInfo extends InputWait {
  /** The asking step. */
  readonly step: string;
}

/**
 * How the wait for one input key of a run ended: stored once per key, first come first served.
 * `answered`: a person submitted `value`. `expired`: nobody answered in time (the ask's default
 * is used, or the step fails). `refused`: the step fails even if the ask has a default.
 */
export interface InputEntry {
  readonly key: string;
  readonly outcome: 'answered' | 'expired' | 'refused';
  /** The submitted value, for `answered`. */
  readonly value?: unknown;
  /** When it was stored, in ms since the epoch. */
  readonly at: number;
}
