/**
 * `t.step()`: a `Step` for calling a processor's `process()` directly, with dependency outputs,
 * answers and an attempt number given by the test, and what the processor reported kept for it.
 */
import { z } from 'zod';
import { DependencyError, ErrorCode, FlowError, InputRequiredError } from '../errors/errors.js';
import { askForInput } from '../human/ask.js';
import { parseOptions } from '../util/parse.js';
import { checkDeps, namesOf } from './run-step.js';
import { Flow, type AnyFlow } from '../model/flow.js';
import { idempotencyKeyOf, type AnySchema, type flowOutput, type Step, type StepDeps, type TypedFlow, type WaitForInputOptions } from '../model/processor.js';

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

const outputs = z.record(z.string(), z.unknown()).optional();
const testStepSchema = z.strictObject({
  flow: z.custom<AnyFlow>((v) => v instanceof Flow, 'a Flow').optional(),
  name: z.string().min(1).optional(),
  runId: z.string().min(1).optional(),
  attempt: z.number().int().min(1).optional(),
  deps: outputs,
  answers: outputs,
});

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

  /**
   * @internal use `t.step()`.
   * @throws ValidationError `WEIR_INVALID_OPTIONS` for a bad option; FlowError `WEIR_INVALID_OPTIONS` for `deps` the flow does not take.
   */
  constructor(given: TestStepOptions) {
    const options = parseOptions(testStepSchema, given, 't.step()');
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
    return idempotencyKeyOf(this.runId, this.name);
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
    // Own outputs only: an optional dependency named `toString` that was not given reads `undefined`, not Object's method.
    return Object.hasOwn(this.#deps, name) ? this.#deps[name] : undefined;
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
   * As in a batch run, with the answers of `t.step({ answers })`: the answer given for `key`,
   * validated by `schema`; else the ask's default; else it fails. A bad key, schema or option fails
   * as in a run.
   * @throws ValidationError `WEIR_VALIDATION` for an answer (or a default) the schema refuses.
   * @throws InputRequiredError `WEIR_INPUT_REQUIRED` when there is neither an answer nor a default.
   * @throws FatalError `WEIR_INVALID_OPTIONS` for a bad key, schema or option.
   */
  async waitForInput<S extends AnySchema>(key: string, schema: S, options?: WaitForInputOptions<z.output<S>>): Promise<z.output<S>> {
    const answered = typeof key === 'string' && Object.hasOwn(this.#answers, key);
    try {
      return await askForInput(this.name, key, schema, options, {
        waits: false,
        answer: (k) => (Object.hasOwn(this.#answers, k) ? { outcome: 'answered', value: this.#answers[k] } : undefined),
        wait: () => undefined,
      });
    } catch (error) {
      if (error instanceof FlowError && error.code === ErrorCode.INPUT_REQUIRED) {
        throw new InputRequiredError(`${error.message} (give an answer in t.step({ answers }))`);
      }
      throw error;
    } finally {
      if (typeof key === 'string') this.asks.push({ key, answered: answered || options?.default !== undefined });
    }
  }
}
