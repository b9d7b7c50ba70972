/**
 * A run's scheduling: readiness counting over the compiled graph, handing ready leaves to the
 * context's queue within the run's window, and propagating each step's end to its dependants (a
 * failed required dependency skips them) and its composite (which ends once its children have).
 */
import { toErrorData, type ErrorData } from '../errors/error-data.js';
import { UpstreamFailedError } from '../errors/errors.js';
import type { GraphNode } from '../graph/compile.js';
import { FlowStatus } from '../model/status.js';
import { DrainQueue } from '../util/drain-queue.js';
import type { SlotOwner } from '../util/slots.js';
import type { RunState } from './run-state.js';
import { StepTimers } from './step-timers.js';

const { PENDING, RUNNING, COMPLETED, FAILED, SKIPPED } = FlowStatus;

/** What the scheduler asks of the rest of its run. */
export interface SchedulerHost {
  /** Runs one attempt of leaf `index`; called in a slot of the context's queue. */
  attempt(index: number): Promise<void>;
  /** A restored step that was waiting for input became ready: it waits again, or runs if its waits ended. */
  waitAgain(index: number): void;
  /** The run's root ended: the run ends so. */
  rootEnded(status: FlowStatus): void;
  /** A slot of the queue was freed: the run may be able to park now. */
  slotFreed(): void;
}

/** Readiness, the queue window, backoff timers and the propagation of ends. */
export class Scheduler implements SlotOwner {
  readonly #state: RunState;
  readonly #host: SchedulerHost;
  /** Leaves ready to run, not yet handed to the context's queue (from `#head` on). */
  readonly #ready: number[] = [];
  #head = 0;
  /** This run's tasks in the context's queue, waiting or running. */
  #inQueue = 0;
  readonly #window: number;
  /** Steps waiting for their next attempt (a backoff, or a restored one's time left), by index. */
  readonly #timers: StepTimers;
  /** Steps that ended and whose dependants and composite are still to be told: a loop, so a long cascade cannot overflow the stack. */
  readonly #settled = new DrainQueue<number>((index) => this.#propagate(index));
  readonly #slotFreed = (): void => {
    this.#inQueue--;
    this.#pump();
    this.#host.slotFreed();
  };

  constructor(state: RunState, host: SchedulerHost) {
    this.#state = state;
    this.#timers = new StepTimers(state.clock);
    this.#host = host;
    this.#window = Math.min(state.settings.concurrency, state.env.queue.concurrency);
  }

  /** Whether nothing of this run is queued or ready to be. */
  get idle(): boolean {
    return this.#inQueue === 0 && this.#head >= this.#ready.length;
  }

  /** How many of this run's leaves are in the context's queue, waiting for a slot or running. */
  get inQueue(): number {
    return this.#inQueue;
  }

  /** Whether a ready leaf has room in the run's window and is about to go to the queue. */
  get pumpable(): boolean {
    return this.#head < this.#ready.length && this.#inQueue < this.#window;
  }

  /** Whether a step waits on a timer for its next attempt. */
  get timing(): boolean {
    return this.#timers.size > 0;
  }

  /** Makes a step ready: a leaf is queued (or ends at once, as restored), a composite readies its children. */
  ready(index: number): void {
    const steps = this.#state.steps;
    const step = steps[index]!;
    if (step.readied) return;
    step.readied = true;
    const node = step.node;
    step.input = node.parent === -1 ? this.#state.input : node.previous === -1 ? steps[node.parent]!.input : steps[node.previous]!.output;
    if (node.processor !== undefined) {
      if (step.kept === COMPLETED) {
        this.finish(index, COMPLETED, step.endTime ?? this.#state.clock.now());
        return;
      }
      if (step.kept === FAILED) {
        step.culprit = node.name;
        this.noteFailure(node, step.error!);
        this.finish(index, FAILED, step.endTime ?? this.#state.clock.now());
        return;
      }
      if (step.waits !== undefined) {
        this.#host.waitAgain(index);
        return;
      }
      const due = step.retryAt;
      if (due !== undefined && due > this.#state.clock.now()) {
        this.after(index, due - this.#state.clock.now());
        return;
      }
      this.schedule(index);
      return;
    }
    step.status = RUNNING;
    if (step.kept !== COMPLETED && !step.announced) {
      step.startTime = this.#state.clock.now();
      if (index !== 0) this.#state.emit({ type: 'step_start', step: node.name, attempt: 1 });
      this.#state.touch(index);
    }
    // A child may have ended already (ctx.skip before its composite started).
    let left = 0;
    for (const child of node.children) if (steps[child]!.status === PENDING || steps[child]!.status === RUNNING) left++;
    step.childrenLeft = left;
    if (left === 0) {
      this.#finishComposite(index);
      return;
    }
    for (const child of node.children) {
      if (steps[child]!.waitingOn === 0 && steps[child]!.status === PENDING) this.ready(child);
    }
  }

  /**
   * Queues a leaf's attempt. A run hands the context's queue at most its window of tasks at a time
   * and keeps the rest as indices: a wide graph then holds numbers, not thousands of queued closures,
   * and the same window is the run's own concurrency limit.
   */
  schedule(index: number): void {
    this.#ready.push(index);
    this.#pump();
  }

  /** Queues a leaf's next attempt after `ms` milliseconds (a backoff). */
  after(index: number, ms: number): void {
    this.#timers.set(index, ms, () => this.schedule(index));
  }

  /** Drops a step's pending backoff (it was skipped). */
  cancelTimer(index: number): void {
    this.#timers.delete(index);
  }

  /** Drops everything not started: the run has stopped here. */
  clear(): void {
    this.#ready.length = 0;
    this.#head = 0;
    this.#timers.clear();
  }

  #pump(): void {
    const ready = this.#ready;
    const queue = this.#state.env.queue;
    while (this.#inQueue < this.#window && this.#head < ready.length) {
      const index = ready[this.#head++]!;
      this.#inQueue++;
      queue.add(this, index);
    }
    if (this.#head === ready.length) {
      ready.length = 0;
      this.#head = 0;
    }
  }

  /** Runs leaf `index`'s attempt in the slot of the context's queue it was given; the slot is freed once it is over. */
  runSlot(index: number): Promise<void> {
    return this.#host.attempt(index).finally(this.#slotFreed);
  }

  /** Records the run's first failing step whose failure is not tolerated (`allowFailure`) on the way up. */
  noteFailure(node: GraphNode, data: ErrorData): void {
    if (this.#state.runError === undefined && !node.failureTolerated) this.#state.runError = { ...data, step: node.name };
  }

  /**
   * Whether leaf `index` completing ends the run at once: it is the last child left of each
   * composite up to the root, so its end ends them all, and nothing else of the run is left to start.
   */
  completionEndsRun(index: number): boolean {
    const steps = this.#state.steps;
    for (let at = index; at !== 0; ) {
      const parent = steps[steps[at]!.node.parent]!;
      if (parent.status !== RUNNING || parent.childrenLeft !== 1) return false;
      at = parent.node.index;
    }
    return this.#state.live;
  }

  /** Records a step's end and propagates it, in a loop. */
  finish(index: number, status: FlowStatus, ended: number): void {
    const step = this.#state.steps[index]!;
    step.status = status;
    step.endTime = ended;
    this.#settled.push(index);
  }

  #propagate(index: number): void {
    const state = this.#state;
    const steps = state.steps;
    const step = steps[index]!;
    if (index === 0) {
      this.#host.rootEnded(step.status);
      return;
    }
    if (!state.live) return;
    const node = step.node;
    const ok = step.status === COMPLETED;
    const ended = step.endTime!;
    // Siblings wait for their composite to start: one it readies itself once their dependencies are done.
    const parentRunning = steps[node.parent]!.status === RUNNING;
    for (const edge of node.dependants) {
      const dependant = steps[edge.index]!;
      if (dependant.status !== PENDING) continue;
      if (!ok && edge.required) {
        this.#skip(edge.index, step.culprit!, ended);
      } else if (--dependant.waitingOn === 0 && parentRunning) {
        this.ready(edge.index);
      }
    }
    if (!state.live) return;
    const parent = steps[node.parent]!;
    if (parent.status === RUNNING && --parent.childrenLeft === 0) this.#finishComposite(node.parent);
  }

  #skip(index: number, culprit: string, ended: number): void {
    const state = this.#state;
    const step = state.steps[index]!;
    const data = toErrorData(new UpstreamFailedError(`flow "${step.node.name}" was skipped because "${culprit}" failed`, { upstream: culprit }));
    const markSkipped = (i: number): void => {
      const s = state.steps[i]!;
      // A child already completed (a skip by hand) keeps its result: history is only appended to.
      if (s.status === COMPLETED) return;
      this.#markSkipped(i, data, culprit, ended);
      for (const child of s.node.children) markSkipped(child);
    };
    for (const child of step.node.children) markSkipped(child);
    this.#markSkipped(index, data, culprit, ended);
    this.finish(index, SKIPPED, ended);
  }

  #markSkipped(index: number, data: ErrorData, culprit: string, ended: number): void {
    const step = this.#state.steps[index]!;
    step.status = SKIPPED;
    step.error = data;
    step.culprit = culprit;
    step.endTime = ended;
    if (step.kept !== SKIPPED) {
      this.#state.emit({ type: 'step_skipped', step: step.node.name, status: SKIPPED, error: data });
      this.#state.touch(index);
    }
  }

  /**
   * Whether a child's end fails its composite: a failure not allowed (`allowFailure`), or a cancel.
   * A skipped child fails nothing by itself: the sibling whose failure skipped it decides.
   */
  #failsParent(index: number): boolean {
    const step = this.#state.steps[index]!;
    if (step.status === COMPLETED || step.status === SKIPPED) return false;
    return !(step.status === FAILED && step.node.allowFailure);
  }

  #finishComposite(index: number): void {
    const state = this.#state;
    const step = state.steps[index]!;
    const node = step.node;
    const failedChild = node.children.find((child) => this.#failsParent(child));
    const ended = this.#state.clock.now();
    step.output = state.partialOutput(index);
    if (failedChild === undefined) {
      if (step.kept === COMPLETED) {
        this.finish(index, COMPLETED, step.endTime ?? ended);
        return;
      }
      step.status = COMPLETED;
      step.endTime = ended;
      if (index !== 0) state.emit({ type: 'step_complete', step: node.name, attempt: 1, duration: ended - step.startTime! });
      state.touch(index);
      this.finish(index, COMPLETED, ended);
      return;
    }
    const culprit = state.steps[failedChild]!.culprit ?? state.graph.nodes[failedChild]!.name;
    step.culprit = culprit;
    step.error = state.steps[state.graph.byName.get(culprit)!.index]!.error;
    step.status = FAILED;
    step.endTime = ended;
    if (step.kept !== FAILED) {
      if (index !== 0) state.emit({ type: 'step_failed', step: node.name, attempt: 1, error: step.error! });
      state.touch(index);
    }
    this.finish(index, FAILED, ended);
  }
}
