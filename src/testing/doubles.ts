/**
 * What runs instead of a step's processor in a test context: a mock, a failure to throw first, or
 * a crash of the context just before the step's processor would run.
 */
import { ErrorCode, FlowError } from '../errors/errors.js';
import { Flow, type AnyFlow } from '../model/flow.js';
import type { Step } from '../model/processor.js';
import type { ProcessDouble, StepDoubles } from '../run/environment.js';
import { describeValue } from '../util/parse.js';

/** A flow, or the name of a step. */
export type StepRef = AnyFlow | string;

/** The doubles of one step. */
interface Entry {
  mock: ProcessDouble | undefined;
  readonly failures: { readonly error: unknown; left: number }[];
  /** Set by `crashBefore`: the context stops when the step's next attempt is about to run. */
  crashBefore: boolean;
}

/** A double that never returns: what a step gets once its context stopped under it. */
const never: ProcessDouble = () => new Promise<never>(() => {});

/** The step doubles of a test context; `take` is what the engine asks. */
export class StepDoubleRegistry implements StepDoubles {
  readonly #entries = new Map<string, Entry>();
  readonly #crash: (step: string) => void;

  /** `crash` stops the context at once, as a kill -9 would. */
  constructor(crash: (step: string) => void) {
    this.#crash = crash;
  }

  mock(step: unknown, double: ProcessDouble, where: string): void {
    this.#entry(step, where).mock = double;
  }

  fail(step: unknown, error: unknown, times: number, where: string): void {
    this.#entry(step, where).failures.push({ error, left: times });
  }

  crashBefore(step: unknown, where: string): void {
    this.#entry(step, where).crashBefore = true;
  }

  take(name: string): ProcessDouble | undefined {
    const entry = this.#entries.get(name);
    if (entry === undefined) return undefined;
    if (entry.crashBefore) {
      entry.crashBefore = false;
      this.#crash(name);
      return never;
    }
    const failure = entry.failures[0];
    if (failure !== undefined) {
      if (--failure.left === 0) entry.failures.shift();
      return () => {
        throw failure.error;
      };
    }
    return entry.mock;
  }

  #entry(step: unknown, where: string): Entry {
    const name = nameOf(step, where);
    let entry = this.#entries.get(name);
    if (entry === undefined) this.#entries.set(name, (entry = { mock: undefined, failures: [], crashBefore: false }));
    return entry;
  }
}

/**
 * The step name a `StepRef` stands for.
 * @throws FlowError `WEIR_INVALID_OPTIONS` naming `where` for anything but a Flow or a non-empty string.
 */
export function nameOf(step: unknown, where: string): string {
  const name = step instanceof Flow ? step.name : step;
  if (typeof name !== 'string' || name.length === 0) {
    throw new FlowError(`${where}: expected a Flow or a step name, got ${describeValue(step)}`, { code: ErrorCode.INVALID_OPTIONS });
  }
  return name;
}

/** A mock's output as a double: a function is called with the validated input and the step; anything else is returned as is. */
export function toDouble(output: unknown): ProcessDouble {
  return typeof output === 'function' ? (input: unknown, step: Step) => (output as (input: unknown, step: Step) => unknown)(input, step) : () => output;
}
