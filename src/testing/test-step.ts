/**
 * `t.step()`: a `Step` for calling a processor's `process()` directly, with dependency outputs,
 * answers and an attempt number given by the test, and what the processor reported kept for it.
 */
import type { z } from 'zod';
import { DependencyError, InputRequiredError } from '../errors/errors.js';
import { validate } from '../executors/invoke.js';
import { checkDeps, namesOf } from './run-step.js';
import type { AnyFlow } from '../model/flow.js';
import type { AnySchema, flowOutput, Step, StepDeps, TypedFlow, WaitForInputOptions } from '../model/processor.js';

/** Options of `t.step()`. */
export interface TestStepOptions {
  /**
   * The flow whose processor the step is for: the step takes its name, checks `deps` against its
   * dependencies (every required one given, no other), and reads `undefined` for an optional one not given.
   */
  readonly flow?: AnyFlow;
  /** The step's name. @default the flow's, else 'step' */
  readonly name?: string;
  /** The run it pretends to belong to. @default 'run-1' */
  readonly runId?: string;
  /** Which attempt this is (1 for the first). @default 1 */
  readonly attempt?: number;
  /** The outputs of its dependencies, by name; `step.deps.get` of any other name fails as in a run. @default {} */
  readonly deps?: Readonly<Record<string, unknown>>;
  /** Answers to `step.waitForInput`, by key, validated by the ask's schema as in a run. @default {} */
  readonly answers?: Readonly<Record<string, unknown>>;
}

/** One `step.progress` call. */
export interface ProgressReport {
  readonly fraction: number;
  readonly message: string | undefined;
}

/** One `step.waitForInput` call. */
export interface InputAskRecord {
  readonly key: string;
  /** Whether an answer (or a default) was given to it. */
  readonly answered: boolean;
}

/**
 * A `Step` made by a test: pass it to `processor.process(input, step)`. It keeps what the processor
 * reported (`progressReports`, `heartbeats`, `asks`); `abort(reason)` aborts its signal.
 */
export class TestStep implements Step, StepDeps {
  readonly name: string;
  readonly runId: string;
  readonly attempt: number;
  /** Every `progress` call, in order (the fraction clamped to 0..1 as in a run). */
  readonly progressReports: ProgressReport[] = [];
  /** The details of every `heartbeat` call, in order. */
  readonly heartbeats: unknown[] = [];
  /** Every `waitForInput` call, in order. */
  readonly asks: InputAskRecord[] = [];
  readonly #deps: Readonly<Record<string, unknown>>;
  /** The names `deps.get` takes: the flow's dependencies, or the names given. */
  readonly #known: readonly string[];
  readonly #answers: Readonly<Record<string, unknown>>;
  readonly #controller = new AbortController();

  /** @internal use `t.step()`. */
  constructor(options: TestStepOptions) {
    const { flow } = options;
    this.name = options.name ?? flow?.name ?? 'step';
    this.runId = options.runId ?? 'run-1';
    this.attempt = options.attempt ?? 1;
    this.#deps = options.deps ?? {};
    if (flow === undefined) {
      this.#known = Object.keys(this.#deps);
    } else {
      const { required, optional } = checkDeps(flow, this.#deps, `t.step(flow "${flow.name}")`);
      this.#known = [...required, ...optional];
    }
    this.#answers = options.answers ?? {};
  }

  get idempotencyKey(): string {
    return `${this.runId}:${this.name}`;
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  get deps(): StepDeps {
    return this;
  }

  /** Aborts the step's signal with `reason`, as a timeout or a cancel of its run would. */
  abort(reason?: unknown): void {
    this.#controller.abort(reason);
  }

  get<F extends TypedFlow>(flow: F): Promise<NonNullable<F[typeof flowOutput]> | undefined>;
  get<T = unknown>(name: string): Promise<T | undefined>;
  async get(dependency: string | { readonly name: string }): Promise<unknown> {
    const name = typeof dependency === 'string' ? dependency : dependency.name;
    if (!this.#known.includes(name)) {
      const hint = this.#known.length === 0 ? '; give it in t.step({ deps })' : '';
      throw new DependencyError(`flow "${this.name}": "${name}" is not one of its dependencies (it has ${namesOf(this.#known)}${hint})`, { dependency: name });
    }
    return this.#deps[name];
  }

  async getAll(): Promise<Readonly<Record<string, unknown>>> {
    return Object.fromEntries(Object.entries(this.#deps).filter(([, value]) => value !== undefined));
  }

  progress(fraction: number, message?: string): void {
    const clamped = Number.isFinite(fraction) ? Math.min(1, Math.max(0, fraction)) : 0;
    this.progressReports.push({ fraction: clamped, message });
  }

  heartbeat(details?: unknown): void {
    this.heartbeats.push(details);
  }

  /**
   * The answer given for `key` in `t.step({ answers })`, validated by `schema`; else the ask's
   * default; else it fails as a batch run's ask does.
   * @throws ValidationError `WEIR_VALIDATION` for an answer the schema refuses.
   * @throws InputRequiredError `WEIR_INPUT_REQUIRED` when there is neither an answer nor a default.
   */
  async waitForInput<S extends AnySchema>(key: string, schema: S, options?: WaitForInputOptions<z.output<S>>): Promise<z.output<S>> {
    if (Object.hasOwn(this.#answers, key)) {
      this.asks.push({ key, answered: true });
      return validate(schema, this.#answers[key], `flow "${this.name}": the answer to "${key}"`) as z.output<S>;
    }
    this.asks.push({ key, answered: options?.default !== undefined });
    if (options?.default !== undefined) return options.default;
    throw new InputRequiredError(`flow "${this.name}": waits for input "${key}", and t.step() has no answer for it (give it in t.step({ answers }))`);
  }
}
