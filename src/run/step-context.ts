/** The `Step` object a processor receives, backed by its run. */
import { setRealImmediate } from '../util/clock.js';
import type { z } from 'zod';
import { DependencyError } from '../errors/errors.js';
import type { AbortWatch, InputAnswer } from '../executors/executor.js';
import { askForInput, inputWaitSignal, type InputAsk, type InputPort } from '../human/ask.js';
import { idempotencyKeyOf, type AnySchema, type flowOutput, type Step, type StepDeps, type TypedFlow, type WaitForInputOptions } from '../model/processor.js';
import type { InputEntry } from '../model/waits.js';

/** What a step context needs from its run. */
export interface StepHost {
  readonly runId: string;
  /** The output of dependency `index` of the step, or `undefined` if it did not complete. */
  dependencyOutput(index: number): unknown;
  progress(step: number, attempt: number, fraction: number, message: string | undefined): void;
  heartbeat(step: number, attempt: number, details: unknown): void;
  /** Whether an unanswered ask waits for a person now. */
  readonly personInLoop: boolean;
  /** How the wait for `key` ended, if it did. */
  inputAnswer(key: string): InputEntry | undefined;
  /** Every wait that ended so far, by key, to ship to a worker; `undefined` when none did. */
  inputAnswers(): Readonly<Record<string, InputAnswer>> | undefined;
  /** Records an ask of the step's current attempt that waits. */
  inputWait(step: number, attempt: number, ask: InputAsk, schema: AnySchema | undefined): void;
}

/** One attempt's view of its run. */
export class StepContext implements Step, StepDeps, AbortWatch, InputPort {
  readonly name: string;
  readonly runId: string;
  readonly attempt: number;
  readonly #host: StepHost;
  #controller: AbortController | undefined;
  #aborted = false;
  #abortReason: unknown;
  /**
   * The abort listener added first (a remote attempt's, usually the only one), while it is the
   * first still there; those added after it go to `#laterListeners`, called after it, in order.
   */
  #firstListener: ((reason: unknown) => void) | undefined;
  #laterListeners: ((reason: unknown) => void)[] | undefined;
  /** Set once an inline ask waits: the attempt ends on the next turn, so asks made together wait together. */
  #endingToWait = false;
  /** Rejects the promise `race` returned. */
  #raceReject: ((reason: unknown) => void) | undefined;
  readonly #index: number;
  readonly #dependencies: ReadonlyMap<string, number>;

  constructor(host: StepHost, index: number, name: string, attempt: number, dependencies: ReadonlyMap<string, number>) {
    this.#host = host;
    this.#index = index;
    this.name = name;
    this.runId = host.runId;
    this.attempt = attempt;
    this.#dependencies = dependencies;
  }

  /** Made on first use: most steps never read it, and an AbortController per step is not free. */
  get signal(): AbortSignal {
    if (this.#controller === undefined) {
      this.#controller = new AbortController();
      if (this.#aborted) this.#controller.abort(this.#abortReason);
    }
    return this.#controller.signal;
  }

  /** Aborts the step's signal (now, or as soon as it is read) with `reason`, and tells the abort listeners. */
  abort(reason: unknown): void {
    if (this.#aborted) return;
    this.#aborted = true;
    this.#abortReason = reason;
    this.#controller?.abort(reason);
    this.#raceReject?.(reason);
    const first = this.#firstListener;
    const listeners = this.#laterListeners;
    this.#firstListener = undefined;
    this.#laterListeners = undefined;
    first?.(reason);
    if (listeners !== undefined) for (const listener of listeners) listener(reason);
  }

  /**
   * `pending`'s outcome, or the abort's reason as a rejection if the step is aborted first: a
   * timeout or a cancel ends the attempt's wait even when the processor ignores its signal.
   */
  race(pending: Promise<unknown>): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.#raceReject = reject;
      pending.then(resolve, reject);
      if (this.#aborted) this.#raceReject(this.#abortReason);
    });
  }

  get aborted(): boolean {
    return this.#aborted;
  }

  get abortReason(): unknown {
    return this.#abortReason;
  }

  /** Calls `listener` with the reason when the step is aborted (at once if it was): cheaper than `signal`. */
  onAbort(listener: (reason: unknown) => void): void {
    if (this.#aborted) {
      listener(this.#abortReason);
      return;
    }
    // One listener needs no array.
    if (this.#firstListener === undefined && this.#laterListeners === undefined) this.#firstListener = listener;
    else (this.#laterListeners ??= []).push(listener);
  }

  offAbort(listener: (reason: unknown) => void): void {
    if (this.#firstListener === listener) {
      this.#firstListener = undefined;
      return;
    }
    const listeners = this.#laterListeners;
    const at = listeners?.indexOf(listener) ?? -1;
    if (at !== -1) listeners!.splice(at, 1);
  }

  get idempotencyKey(): string {
    return idempotencyKeyOf(this.runId, this.name);
  }

  get deps(): StepDeps {
    return this;
  }

  get<F extends TypedFlow>(flow: F): Promise<NonNullable<F[typeof flowOutput]> | undefined>;
  get<T = unknown>(name: string): Promise<T | undefined>;
  async get(dependency: string | { readonly name: string }): Promise<unknown> {
    const name = typeof dependency === 'string' ? dependency : dependency.name;
    const index = this.#dependencies.get(name);
    if (index === undefined) {
      const known = [...this.#dependencies.keys()].map((n) => `"${n}"`).join(', ') || 'none';
      throw new DependencyError(`flow "${this.name}": "${name}" is not one of its dependencies (it has ${known})`, { dependency: name });
    }
    return index === -1 ? undefined : this.#host.dependencyOutput(index);
  }

  async getAll(): Promise<Readonly<Record<string, unknown>>> {
    return this.dependencyOutputs();
  }

  /** What `getAll()` resolves to, at once: the outputs are in the run's memory. */
  dependencyOutputs(): Readonly<Record<string, unknown>> {
    const all: Record<string, unknown> = {};
    for (const [name, index] of this.#dependencies) {
      if (index === -1) continue;
      const output = this.#host.dependencyOutput(index);
      if (output !== undefined) all[name] = output;
    }
    return all;
  }

  progress(fraction: number, message?: string): void {
    const clamped = Number.isFinite(fraction) ? Math.min(1, Math.max(0, fraction)) : 0;
    this.#host.progress(this.#index, this.attempt, clamped, message);
  }

  heartbeat(details?: unknown): void {
    this.#host.heartbeat(this.#index, this.attempt, details);
  }

  get waits(): boolean {
    return this.#host.personInLoop;
  }

  answer(key: string): InputEntry | undefined {
    return this.#host.inputAnswer(key);
  }

  get answers(): Readonly<Record<string, InputAnswer>> | undefined {
    return this.#host.inputAnswers();
  }

  /** Records a wait (an inline ask, or one a worker sent). */
  wait(ask: InputAsk, schema?: AnySchema): void {
    this.#host.inputWait(this.#index, this.attempt, ask, schema);
  }

  waitForInput<S extends AnySchema>(key: string, schema: S, options?: WaitForInputOptions<z.output<S>>): Promise<z.output<S>> {
    return askForInput(this.name, key, schema, options, {
      waits: this.waits,
      answer: (k) => this.answer(k),
      wait: (ask, zod) => {
        this.wait(ask, zod);
        if (this.#endingToWait) return;
        this.#endingToWait = true;
        // A real timer: the attempt must end even under fake timers.
        setRealImmediate(() => this.abort(inputWaitSignal(this.name)));
      },
    });
  }
}
