/**
 * A run's waits for input while it goes on in this context: the asks of its steps, the answers
 * they got, deadlines, the person in the loop, and parking (when steps wait and nothing else can
 * go on, the run is committed as `waiting` and handed back to its context).
 */
import { ErrorCode, FlowError, WarningCode } from '../errors/errors.js';
import type { InputAnswer } from '../executors/executor.js';
import { validate } from '../executors/invoke.js';
import type { WeirEvent } from '../model/events.js';
import type { AnySchema } from '../model/processor.js';
import { FlowStatus } from '../model/status.js';
import type { InputEntry, WaitInfo } from '../model/waits.js';
import type { AttemptWaits } from '../run/attempt.js';
import type { RunState } from '../run/run-state.js';
import type { Scheduler } from '../run/scheduler.js';
import type { Wait } from '../run/step-state.js';
import { StepTimers } from '../run/step-timers.js';
import { clearRealTimer, setRealTimer, type TimerHandle } from '../util/clock.js';
import { validateAgainstJson, type InputAsk } from './ask.js';

const { PENDING, RUNNING, WAITING } = FlowStatus;

/** How often a run with steps waiting reads the answers other contexts stored, in ms. */
const INPUT_POLL_MS = 200;

/** What parking asks of the run's lifecycle. */
export interface ParkingHost {
  /** Stops the run's timers: it is about to be held by nobody. */
  stopTimers(): void;
  /** The run is committed as waiting, its lease released: it lets go of it here. */
  parked(): void;
  /** The wait could not be recorded: the run fails with `error`. */
  parkFailed(error: FlowError): void;
}

/** The answers of a run that has none: shared, never changed. */
const NO_ANSWERS: ReadonlyMap<string, InputEntry> = new Map();

/** The waits of one run going on here. */
export class RunWaits implements AttemptWaits {
  readonly #state: RunState;
  readonly #scheduler: Scheduler;
  readonly #host: ParkingHost;
  /** How the run's waits for input ended, by key: `NO_ANSWERS` until the first (most runs never ask). */
  #answers: ReadonlyMap<string, InputEntry> = NO_ANSWERS;
  /** Answers the asking step refused, by key (their time): not taken in again while the store still has them. Made with the first. */
  #refused: Map<string, number> | undefined;
  #humanInLoop: boolean;
  /** Steps that began to wait; cleaned as they leave `waiting` (see `#hasWaiting`), so a run without asks never scans its steps (nor makes the set). */
  #waitingSteps: Set<number> | undefined;
  /** Deadline timers of waiting steps. */
  readonly #timers: StepTimers;
  #poll: TimerHandle | undefined;
  #parking: Promise<void> | undefined;

  constructor(state: RunState, scheduler: Scheduler, host: ParkingHost, humanInLoop: boolean, answers: readonly InputEntry[]) {
    this.#state = state;
    this.#scheduler = scheduler;
    this.#host = host;
    this.#humanInLoop = humanInLoop;
    this.#timers = new StepTimers(state.clock);
    for (const entry of answers) this.#answerMap().set(entry.key, entry);
  }

  get personInLoop(): boolean {
    return this.#humanInLoop;
  }

  /** Resolves once a run that began to park is committed as waiting (at once if it is not parking). */
  parked(): Promise<void> {
    return this.#parking ?? Promise.resolve();
  }

  answer(key: string): InputEntry | undefined {
    return this.#answers.get(key);
  }

  answers(): Readonly<Record<string, InputAnswer>> | undefined {
    if (this.#answers.size === 0) return undefined;
    const answers: Record<string, InputAnswer> = {};
    for (const [key, entry] of this.#answers) answers[key] = entry.outcome === 'answered' ? { outcome: entry.outcome, value: entry.value } : { outcome: entry.outcome };
    return answers;
  }

  /**
   * Answers a wait of this running run: validated by the ask's own schema where it is at hand
   * (an inline ask), else by its JSON Schema; stored first come first served; the asking step then
   * runs again once all its waits are answered.
   * @throws FlowError `WEIR_INPUT_NOT_AWAITED` when no step waits on `key`; `WEIR_INPUT_ANSWERED` when it was answered.
   * @throws ValidationError `WEIR_VALIDATION` when `value` does not pass the ask's schema (the step keeps waiting).
   */
  async submit(key: string, value: unknown): Promise<void> {
    const runId = this.#state.runId;
    const wait = this.#waitFor(key);
    if (this.#answers.has(key)) throw answeredAlready(runId, key);
    if (wait === undefined) throw notAwaited(runId, key, this.waitingFor().map((w) => w.key));
    const what = `the value submitted for input "${key}" of run "${runId}"`;
    if (wait.zod !== undefined) validate(wait.zod, value, what);
    else validateAgainstJson(wait.schema, value, what);
    const entry: InputEntry = { key, outcome: 'answered', value, at: this.#state.clock.now() };
    if (!(await this.#state.journal.putInput(entry))) {
      await this.#readInputs();
      throw answeredAlready(runId, key);
    }
    this.#consume([entry]);
  }

  /**
   * Turns the person in the loop of a hybrid run on or off, recorded with the run. Off: steps
   * waiting now run again and take their default (or fail), and later asks do not wait.
   * Resolves once the change is stored.
   */
  async setHumanInLoop(on: boolean): Promise<void> {
    const state = this.#state;
    if (!state.live) throw new FlowError(`cannot change run "${state.runId}": it is ${state.status}`, { code: ErrorCode.RUN_STATE });
    if (this.#humanInLoop !== on) {
      this.#humanInLoop = on;
      state.journal.patchRun({ humanInLoop: on, updatedAt: this.#state.clock.now() });
      if (!on) for (let i = 0; i < state.steps.length; i++) if (state.steps[i]!.status === WAITING) this.#rerun(i);
    }
    await state.journal.settled();
  }

  /** What the run's steps wait on now. */
  waitingFor(): WaitInfo[] {
    const waits: WaitInfo[] = [];
    for (const step of this.#state.steps) {
      if (step.status !== WAITING && step.status !== RUNNING) continue;
      for (const wait of step.waits ?? []) if (!this.#answers.has(wait.key)) waits.push(waitInfo(step.node.name, wait));
    }
    return waits;
  }

  /** Records an ask of a step's current attempt that waits (an inline ask, or one a worker sent). */
  ask(index: number, attempt: number, ask: InputAsk, schema: AnySchema | undefined): void {
    const state = this.#state;
    if (!state.isCurrent(index, attempt)) return;
    const step = state.steps[index]!;
    const waits = (step.waits ??= []);
    if (waits.some((w) => w.key === ask.key)) return;
    if (ask.rejected !== undefined) this.#dropAnswer(ask.key);
    const askedAt = this.#state.clock.now();
    const wait: Wait = {
      key: ask.key,
      schema: ask.schema,
      askedAt,
      hasDefault: ask.hasDefault,
      ...(ask.timeout === undefined ? {} : { deadline: askedAt + ask.timeout }),
      ...(schema === undefined ? {} : { zod: schema }),
    };
    waits.push(wait);
    state.emit({
      type: 'input_required',
      step: step.node.name,
      attempt,
      key: ask.key,
      schema: ask.schema,
      hasDefault: ask.hasDefault,
      ...(wait.deadline === undefined ? {} : { deadline: wait.deadline }),
      ...(ask.rejected === undefined ? {} : { rejected: ask.rejected }),
    });
    // Recorded with the ask, so another process that reads the event finds the wait in the store.
    state.touch(index);
  }

  /** A step's attempt ended to wait: it holds no slot, and runs again once its waits end. */
  enterWaiting(index: number, attempt: number, started: number): void {
    const state = this.#state;
    const step = state.steps[index]!;
    const ended = this.#state.clock.now();
    step.attempts.push({ attempt, startTime: started, endTime: ended, duration: ended - started, waitedFor: step.waits!.map((w) => w.key) });
    // Not counted by the retry policy: waiting is not failing.
    step.attemptBase++;
    step.status = WAITING;
    (this.#waitingSteps ??= new Set()).add(index);
    state.touch(index);
    this.#hold(index);
  }

  /** A restored step that waited became ready: it waits again, or runs again if its waits ended meanwhile. */
  waitAgain(index: number): void {
    this.#state.steps[index]!.status = WAITING;
    (this.#waitingSteps ??= new Set()).add(index);
    this.#hold(index);
  }

  /** Forgets a step's wait (the step was skipped): its deadline no longer fires. */
  drop(index: number): void {
    this.#timers.delete(index);
  }

  /** Stops the deadline timers and the poll: the run has stopped here. */
  clear(): void {
    this.#timers.clear();
    clearRealTimer(this.#poll);
    this.#poll = undefined;
  }

  /** Parks the run when steps wait and nothing else can go on: committed as `waiting`, its lease released. */
  maybePark(): void {
    const state = this.#state;
    if (!state.live || !this.#scheduler.idle) return;
    if (state.running.size > 0 || state.committingCount > 0 || this.#scheduler.timing || !this.#hasWaiting()) return;
    state.status = WAITING;
    const waits = this.waitingFor();
    this.#host.stopTimers();
    const at = this.#state.clock.now();
    const event: WeirEvent = {
      type: 'run_waiting',
      runId: state.runId,
      seq: state.journal.nextSeq(),
      time: at,
      waitingFor: waits.map((w) => (w.deadline === undefined ? { step: w.step, key: w.key } : { step: w.step, key: w.key, deadline: w.deadline })),
    };
    // The store releases the lease with this commit: a run that waits is held by nobody.
    this.#parking = state.journal.finish({ status: WAITING, updatedAt: at }, event).then(
      () => {
        state.journal.stop(new FlowError(`run "${state.runId}" waits for input`, { code: ErrorCode.RUN_STATE }));
        // What a parked run kept in memory is in the store: only its id and how to follow it stay.
        for (const step of state.steps) {
          step.output = undefined;
          step.input = undefined;
          step.waits = undefined;
        }
        this.#answers = NO_ANSWERS;
        this.#host.parked();
      },
      (thrown: FlowError) => {
        // Not recorded as waiting: in the store it stays running until its lease runs out and recover() goes on with it.
        state.status = RUNNING;
        this.#host.parkFailed(new FlowError(`run "${state.runId}": its wait for input could not be recorded: ${thrown.message}`, { code: thrown.code, cause: thrown }));
      },
    );
  }

  /** The wait on `key` of a waiting step, or of a running attempt that asked it. */
  #waitFor(key: string): Wait | undefined {
    for (const step of this.#state.steps) {
      if (step.status !== WAITING && step.status !== RUNNING) continue;
      const wait = step.waits?.find((w) => w.key === key);
      if (wait !== undefined) return wait;
    }
    return undefined;
  }

  /**
   * An answer the asking step refused (it failed the ask's own schema): forgotten here and in the
   * store, so the key can be answered again; a read of the store before that lands skips it.
   */
  #dropAnswer(key: string): void {
    const entry = this.#answers.get(key);
    if (entry === undefined) return;
    this.#answerMap().delete(key);
    (this.#refused ??= new Map()).set(key, entry.at);
    const runId = this.#state.runId;
    this.#state.journal.clearInputs([key]).catch((error: unknown) => {
      process.emitWarning(`weir: run "${runId}": a refused answer to "${key}" could not be cleared: ${String(error)}`, { code: WarningCode.INPUT });
    });
  }

  /** Takes in how waits ended: a step whose waits all ended runs again. */
  #consume(entries: readonly InputEntry[]): void {
    const state = this.#state;
    if (!state.live) return;
    for (const entry of entries) {
      if (this.#answers.has(entry.key) || this.#refused?.get(entry.key) === entry.at) continue;
      this.#answerMap().set(entry.key, entry);
      for (let i = 0; i < state.steps.length; i++) {
        const step = state.steps[i]!;
        if (step.status === WAITING && step.waits?.some((w) => w.key === entry.key) === true && this.#waitsEnded(i)) this.#rerun(i);
      }
    }
  }

  async #readInputs(): Promise<void> {
    this.#consume(await this.#state.env.store.readInputs(this.#state.runId));
  }

  #waitsEnded(index: number): boolean {
    return !this.#humanInLoop || (this.#state.steps[index]!.waits ?? []).every((w) => this.#answers.has(w.key));
  }

  /**
   * A waiting step whose waits ended goes back to the queue: it runs again and its asks are
   * answered at once. Its answers are announced now, once each (`input_received`).
   */
  #rerun(index: number): void {
    const state = this.#state;
    const step = state.steps[index]!;
    for (const wait of step.waits ?? []) {
      const entry = this.#answers.get(wait.key);
      if (entry !== undefined) state.emit({ type: 'input_received', step: step.node.name, key: wait.key, outcome: entry.outcome });
    }
    this.drop(index);
    step.status = PENDING;
    state.touch(index);
    this.#scheduler.schedule(index);
  }

  /** Keeps a step waiting: it runs again at once if its waits ended, else at its first deadline, or when an answer comes. */
  #hold(index: number): void {
    if (this.#waitsEnded(index)) {
      this.#rerun(index);
      return;
    }
    const open = this.#state.steps[index]!.waits!.filter((w) => !this.#answers.has(w.key) && w.deadline !== undefined);
    if (open.length > 0) {
      const due = Math.min(...open.map((w) => w.deadline!));
      this.#timers.set(index, Math.max(0, due - this.#state.clock.now()), () => void this.#expire(index));
    }
    this.#pollInputs();
  }

  /** A wait's deadline passed: it expires (unless an answer was stored first), and the step takes its default or fails. */
  async #expire(index: number): Promise<void> {
    const state = this.#state;
    const step = state.steps[index]!;
    if (!state.live || step.status !== WAITING) return;
    const at = this.#state.clock.now();
    const due = step.waits!.filter((w) => !this.#answers.has(w.key) && w.deadline !== undefined && w.deadline <= at);
    try {
      const entries: InputEntry[] = [];
      for (const wait of due) {
        const entry: InputEntry = { key: wait.key, outcome: 'expired', at };
        if (await state.journal.putInput(entry)) entries.push(entry);
      }
      this.#consume(entries);
      await this.#readInputs();
    } catch (error) {
      process.emitWarning(`weir: run "${state.runId}": an expired wait could not be recorded: ${String(error)}`, { code: WarningCode.INPUT_EXPIRY });
    }
    if (state.live && step.status === WAITING && !this.#timers.has(index)) this.#hold(index);
  }

  /** While steps wait and the run goes on here, reads the answers other contexts store (on the real clock). */
  #pollInputs(): void {
    if (this.#poll !== undefined) return;
    this.#poll = setRealTimer(
      () => {
        this.#poll = undefined;
        if (!this.#state.live || !this.#hasWaiting()) return;
        this.#readInputs().then(
          () => this.#pollInputs(),
          () => this.#pollInputs(),
        );
      },
      INPUT_POLL_MS,
      { unref: true },
    );
  }

  /** The answers, to change: the run's own map, made on the first. */
  #answerMap(): Map<string, InputEntry> {
    if (this.#answers === NO_ANSWERS) this.#answers = new Map();
    return this.#answers as Map<string, InputEntry>;
  }

  /** Whether a step waits now. */
  #hasWaiting(): boolean {
    if (this.#waitingSteps === undefined) return false;
    for (const index of this.#waitingSteps) {
      if (this.#state.steps[index]!.status === WAITING) return true;
      this.#waitingSteps.delete(index);
    }
    return false;
  }
}

function waitInfo(step: string, wait: Wait): WaitInfo {
  const { zod: _, ...stored } = wait;
  return { step, ...stored };
}

/** `WEIR_INPUT_ANSWERED`: an input takes one answer. */
export function answeredAlready(runId: string, key: string): FlowError {
  return new FlowError(`input "${key}" of run "${runId}" was answered already; an input takes one answer`, { code: ErrorCode.INPUT_ANSWERED });
}

/** `WEIR_INPUT_NOT_AWAITED`, listing what the run waits on. */
export function notAwaited(runId: string, key: string, awaited: readonly string[]): FlowError {
  return new FlowError(
    `run "${runId}" does not wait on input "${key}" (${awaited.length === 0 ? 'it waits on none' : `it waits on ${awaited.map((k) => `"${k}"`).join(', ')}`})`,
    { code: ErrorCode.INPUT_NOT_AWAITED },
  );
}
