/** The typed events of a run: plain objects with a per-run, strictly increasing `seq`. */
import type { ErrorData } from '../errors/error-data.js';
import type { FlowStatus, RunMode } from './status.js';

/** Fields every event has. */
export interface EventBase {
  /** The run the event belongs to. */
  readonly runId: string;
  /** 1 for the run's first event, then one more for each event after it. */
  readonly seq: number;
  /** When it happened, in milliseconds since the epoch. */
  readonly time: number;
}

/** A run began. */
export interface RunStartEvent extends EventBase {
  readonly type: 'run_start';
  /** The name of the flow the run executes. */
  readonly flow: string;
  readonly mode: RunMode;
}
/** An attempt of a step began. */
export interface StepStartEvent extends EventBase {
  readonly type: 'step_start';
  readonly step: string;
  readonly attempt: number;
}
/** A step reported progress through `step.progress`. */
export interface StepProgressEvent extends EventBase {
  readonly type: 'step_progress';
  readonly step: string;
  readonly attempt: number;
  /** From 0 to 1. */
  readonly progress: number;
  readonly message?: string;
}
/** A step reported it is alive through `step.heartbeat`. */
export interface StepHeartbeatEvent extends EventBase {
  readonly type: 'step_heartbeat';
  readonly step: string;
  readonly attempt: number;
  readonly details?: unknown;
}
/** An attempt failed and the step will be tried again after `delay` ms. */
export interface StepRetryEvent extends EventBase {
  readonly type: 'step_retry';
  readonly step: string;
  /** The attempt that failed. */
  readonly attempt: number;
  /** The most attempts the policy allows. */
  readonly maxAttempts: number;
  /** The wait before the next attempt, in milliseconds. */
  readonly delay: number;
  readonly error: ErrorData;
  /** For people: `will retry in 200 ms (attempt 2 of 4)`. */
  readonly message: string;
}
/** A step finished with a valid output. */
export interface StepCompleteEvent extends EventBase {
  readonly type: 'step_complete';
  readonly step: string;
  readonly attempt: number;
  /** How long the successful attempt took, in milliseconds. */
  readonly duration: number;
  /** Set when `ctx.skip` gave the output, not the processor. */
  readonly skipped?: true;
}
/** A step failed for good (no attempt left, or an error that is not retried). */
export interface StepFailedEvent extends EventBase {
  readonly type: 'step_failed';
  readonly step: string;
  readonly attempt: number;
  readonly error: ErrorData;
}
/** A step will not run because a required upstream flow failed; `error.details.upstream` names it. */
export interface StepSkippedEvent extends EventBase {
  readonly type: 'step_skipped';
  readonly step: string;
  readonly status: Extract<FlowStatus, 'skipped'>;
  readonly error: ErrorData;
}
/** A started step (running, or waiting to retry) was stopped by a cancel or the run's timeout. */
export interface StepCancelledEvent extends EventBase {
  readonly type: 'step_cancelled';
  readonly step: string;
  /** The attempt that was stopped. */
  readonly attempt: number;
  readonly error: ErrorData;
}
/**
 * A step asks a person for a value (`step.waitForInput`) and waits: its attempt ends, and it runs
 * again once `ctx.submitInput(runId, key, value)` answers (or the wait expires).
 */
export interface InputRequiredEvent extends EventBase {
  readonly type: 'input_required';
  readonly step: string;
  /** The attempt that asked. */
  readonly attempt: number;
  readonly key: string;
  /** A JSON Schema of the value expected (the input side of the ask's zod schema). */
  readonly schema: unknown;
  /** When the wait expires, in ms since the epoch; absent when it waits forever. */
  readonly deadline?: number;
  /** Whether the ask has a default, used when the wait expires or nobody is in the loop. */
  readonly hasDefault: boolean;
  /**
   * Set when the step asks again because the answer given failed the ask's own schema, in a check
   * its JSON Schema could not express (a `refine`, a `z.custom`): why it was refused.
   */
  readonly rejected?: ErrorData;
}
/** A wait of a step ended: answered, or expired (`refused`: it fails even with a default). */
export interface InputReceivedEvent extends EventBase {
  readonly type: 'input_received';
  readonly step: string;
  readonly key: string;
  readonly outcome: 'answered' | 'expired' | 'refused';
}
/**
 * The run waits for input with nothing else to do: it is stored as `waiting`, holds no slot and no
 * lease, and goes on (in any context on the store) once an answer comes.
 */
export interface RunWaitingEvent extends EventBase {
  readonly type: 'run_waiting';
  readonly waitingFor: readonly { readonly step: string; readonly key: string; readonly deadline?: number }[];
}
/**
 * The run goes on after it had stopped: taken over from a lost owner (`recovered`), continued by
 * `ctx.resume` (`resumed`, with `from` when steps from there on run again), after a wait for input
 * ended (`input`), after nobody answered within the context's `inputTimeout` (`orphaned`, with the
 * `fallback` taken), or after `ctx.setHumanInLoop(runId, false)` (`human_in_loop`).
 */
export interface RunResumedEvent extends EventBase {
  readonly type: 'run_resumed';
  readonly reason: 'recovered' | 'resumed' | 'input' | 'orphaned' | 'human_in_loop';
  readonly from?: string;
  /** For `recovered`: how many times the run has been taken over, this time included. */
  readonly recoveries?: number;
  /** For `orphaned`: what the waits fell back to. */
  readonly fallback?: 'fail' | 'default' | 'batch';
}
/** The run completed. */
export interface RunCompleteEvent extends EventBase {
  readonly type: 'run_complete';
  readonly duration: number;
}
/** The run failed; `error.step` names the first step that failed. */
export interface RunFailedEvent extends EventBase {
  readonly type: 'run_failed';
  readonly duration: number;
  readonly error: ErrorData;
}
/** The run was cancelled. */
export interface RunCancelledEvent extends EventBase {
  readonly type: 'run_cancelled';
  readonly duration: number;
  readonly error: ErrorData;
}

/** Every event a run emits. */
export type WeirEvent =
  | RunStartEvent
  | StepStartEvent
  | StepProgressEvent
  | StepHeartbeatEvent
  | StepRetryEvent
  | StepCompleteEvent
  | StepFailedEvent
  | StepSkippedEvent
  | StepCancelledEvent
  | InputRequiredEvent
  | InputReceivedEvent
  | RunWaitingEvent
  | RunResumedEvent
  | RunCompleteEvent
  | RunFailedEvent
  | RunCancelledEvent;

/** An event's `type`. */
export type WeirEventType = WeirEvent['type'];

/** Events without the fields the run fills in. */
export type EventInput = WeirEvent extends infer E ? (E extends WeirEvent ? Omit<E, 'runId' | 'seq' | 'time'> : never) : never;

/** The listener map of `ctx.on`: one key per event type, and `event` for all of them. */
export type WeirEventMap = { [T in WeirEventType]: (event: Extract<WeirEvent, { type: T }>) => void } & {
  event: (event: WeirEvent) => void;
};
