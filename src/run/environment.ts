/**
 * What a run is given by the context that owns it (its settings, the store, the executors, the
 * queue, the event bus), and the one narrow way it reports back: `RunKeeper`.
 */
import type { Slots } from '../util/slots.js';
import type { FlowError } from '../errors/errors.js';
import type { Executor } from '../executors/executor.js';
import type { WeirEvent } from '../model/events.js';
import type { FlowResult } from '../model/result.js';
import type { RunMode } from '../model/status.js';
import type { RunOwner, RunStore } from '../storage/journal/run-store.js';
import type { Step } from '../model/processor.js';
import type { Clock } from '../util/clock.js';
import type { RestoredRun } from './restored.js';
import type { Run } from './run.js';

/** The settings of one run, already validated. */
export interface RunSettings {
  readonly runId: string;
  readonly mode: RunMode;
  /** Whether an unanswered ask waits for a person (interactive, or hybrid with a person in the loop). */
  readonly humanInLoop: boolean;
  readonly timeout: number | undefined;
  readonly signal: AbortSignal | undefined;
  /** The most steps of this run that run at once, inside the context's limit (`Infinity` for none). */
  readonly concurrency: number;
  /** The run this one retries. */
  readonly retryOf?: string | undefined;
  readonly restore?: RestoredRun | undefined;
}

/** What a run borrows from its context: its tools. The one thing it sends up is its events, to the bus. */
export interface RunEnvironment {
  /** The journal's store: the run reads from it; it writes only through its `RunJournal`. */
  readonly store: RunStore;
  /** Who holds the run's lease. */
  readonly owner: RunOwner;
  /** How long a lease lasts without renewal, in milliseconds. */
  readonly leaseMs: number;
  readonly executors: ReadonlyMap<string, Executor>;
  /** The context-wide concurrency limit. */
  readonly queue: Slots;
  /** This process, as `host:pid`: `FlowResult.processId`. */
  readonly processId: string;
  /** Publishes an event to the context's listeners. */
  readonly publish: (event: WeirEvent) => void;
  /** The time the run runs on: its timestamps, and the timers of its backoffs, timeouts, heartbeats and waits. */
  readonly clock: Clock;
  /** What runs instead of some steps' processors in this context (`weir/testing`). */
  readonly doubles: StepDoubles | undefined;
  /**
   * Whether to count the attempts whose worker has not started their processor yet (`RunState.starting`),
   * for a virtual clock that must not jump while a worker starts (`weir/testing`); it costs a message per remote attempt.
   */
  readonly trackStarts: boolean;
  /** What the context's journals saw of their store's commits (`ctx.health()`). */
  readonly commits: CommitStats;
}

/** The latency of a context's last commit, kept by its journals. */
export interface CommitStats {
  /** How long the last commit took, in ms; `undefined` before the first. */
  lastMs: number | undefined;
  /** When it ended (ms since the epoch, by the host's clock). */
  lastAt: number | undefined;
}

/** A stand-in for a processor's `process`, given the validated input and the step. */
export type ProcessDouble = (input: unknown, step: Step) => unknown;

/** Test doubles (`weir/testing`): what runs instead of a step's processor, in one context only. */
export interface StepDoubles {
  /** What runs instead of attempt `attempt` of step `name`, or `undefined` to run its processor. */
  take(name: string, attempt: number): ProcessDouble | undefined;
}

/** The run's one way back to the context that owns it. */
export interface RunKeeper {
  /**
   * The run no longer runs here: it ended, it parked to wait for input (its status is then
   * `waiting`), or it gave way to a stored run of the same id.
   */
  released(run: Run): void;
  /** The store already has a run with this id: how this one settles (an idempotent start). */
  adopt(run: Run, error: FlowError): Promise<FlowResult>;
}
