/**
 * What the parts of one run share (its lifecycle, its scheduler, its attempts, its waits): the
 * graph, one `StepState` per node, the run's status and first error, and the journal every record
 * and event goes through.
 */
import type { ErrorData } from '../errors/error-data.js';
import type { CompiledGraph } from '../graph/compile.js';
import type { EventInput } from '../model/events.js';
import { FlowStatus } from '../model/status.js';
import type { StepRecord } from '../storage/journal/run-store.js';
import type { Clock } from '../util/clock.js';
import type { RunEnvironment, RunSettings } from './environment.js';
import { EventLog } from './event-log.js';
import { RunJournal, type JournalSink } from './journal.js';
import type { StepContext } from './step-context.js';
import { StepState } from './step-state.js';

const { PENDING, RUNNING, COMPLETED } = FlowStatus;

/** One run's shared state. Its parts read and change it; only the journal writes to the store. */
export class RunState {
  readonly runId: string;
  readonly graph: CompiledGraph;
  readonly input: unknown;
  readonly settings: RunSettings;
  readonly env: RunEnvironment;
  readonly journal: RunJournal;
  readonly events: EventLog;
  readonly steps: readonly StepState[];
  readonly startTime: number;
  /** The time the run runs on. */
  readonly clock: Clock;
  /** The run's own status (its steps have theirs). */
  status: FlowStatus = PENDING;
  /** The first failing step's error whose failure is not tolerated on the way up: the run's error if it fails. */
  runError: ErrorData | undefined;
  /** Attempts running now, by step index. */
  readonly running = new Map<number, StepContext>();
  /** Attempts on a worker that has not started their processor yet (it is starting, or loading the module). */
  starting = 0;
  /**
   * How many leaves have their completion (output and record) being committed: a cancel or a skip
   * leaves them be (`StepState.committing`). A flag and a count, not a Set: a Set emptied by
   * `delete` allocates a new table, once per step.
   */
  #committing = 0;
  /**
   * Steps whose record changed since the last commit, in the order first marked: the first
   * `#changedCount` entries, those whose step still has its `changed` flag. An array kept between
   * commits, not a Set cleared each time (a cleared Set allocates a new table).
   */
  readonly #changed: number[] = [];
  #changedCount = 0;

  constructor(graph: CompiledGraph, input: unknown, settings: RunSettings, env: RunEnvironment, sink: JournalSink) {
    this.runId = settings.runId;
    this.graph = graph;
    this.input = input;
    this.settings = settings;
    this.env = env;
    this.clock = env.clock;
    const restore = settings.restore;
    const lastSeq = restore?.record.lastSeq ?? 0;
    this.startTime = restore?.record.createdAt ?? this.clock.now();
    this.events = new EventLog(lastSeq);
    this.journal = new RunJournal(this.runId, env.store, sink, restore?.leaseToken ?? 1, lastSeq, env.commits);
    this.steps = graph.nodes.map((node) => new StepState(node));
  }

  /** Whether the run goes on here now. */
  get live(): boolean {
    return this.status === RUNNING;
  }

  /** Whether `attempt` is the current attempt of step `index`, still running. */
  isCurrent(index: number, attempt: number): boolean {
    const step = this.steps[index]!;
    return step.status === RUNNING && step.attempts.length === attempt - 1;
  }

  /** Numbers an event and records it. */
  emit(event: EventInput): void {
    // Assigned onto a literal whose keys set the order (`type` first, as every event is written), then
    // numbered: a spread that adds keys is V8's slow path.
    const numbered = Object.assign({ type: event.type, runId: '', seq: 0, time: 0 }, event);
    numbered.runId = this.runId;
    numbered.seq = this.journal.nextSeq();
    numbered.time = this.clock.now();
    this.journal.append(numbered);
  }

  /** Leaf `index`'s completion is being committed from now on. */
  commitBegan(index: number): void {
    const step = this.steps[index]!;
    if (step.committing) return;
    step.committing = true;
    this.#committing++;
  }

  /** Leaf `index`'s completion is no longer being committed (stored, or failed). */
  commitEnded(index: number): void {
    const step = this.steps[index]!;
    if (!step.committing) return;
    step.committing = false;
    this.#committing--;
  }

  /** Whether leaf `index`'s completion is being committed. */
  isCommitting(index: number): boolean {
    return this.steps[index]!.committing;
  }

  /** How many leaves have their completion being committed. */
  get committingCount(): number {
    return this.#committing;
  }

  /** Marks a step's record to be written with the run's next commit, in its state then. */
  touch(index: number): void {
    const step = this.steps[index]!;
    if (!step.changed) {
      step.changed = true;
      this.#changed[this.#changedCount++] = index;
    }
    this.journal.changed();
  }

  /** Takes a step out of the next commit's changes: its record goes with a checkpoint of its own. */
  untouch(index: number): void {
    this.steps[index]!.changed = false;
  }

  /** The records of the steps that changed since the last call. */
  changedSteps(): StepRecord[] {
    const records: StepRecord[] = [];
    const at = this.clock.now();
    for (let i = 0; i < this.#changedCount; i++) {
      const step = this.steps[this.#changed[i]!]!;
      // Taken out since (`untouch`), or already taken when it was marked twice.
      if (!step.changed) continue;
      step.changed = false;
      records.push(step.record(this.runId, at));
    }
    this.#changedCount = 0;
    return records;
  }

  /** A composite's completed children's outputs (all of them once it completed). */
  partialOutput(index: number): Record<string, unknown> {
    const output: Record<string, unknown> = {};
    for (const child of this.graph.nodes[index]!.children) {
      const step = this.steps[child]!;
      if (step.status === COMPLETED) output[step.node.name] = step.output;
    }
    return output;
  }
}
