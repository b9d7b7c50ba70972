/**
 * `t.runStep()`: runs one flow of a tree alone, its dependencies' outputs given by the test. The
 * flow (with its subtree, for a composite) is copied into a parallel composite of its own, after
 * a stub step per dependency that returns the given output, so the engine runs it as it would in
 * its tree: the same processor, configuration, retries, timeouts and executor.
 */
import { z } from 'zod';
import { ErrorCode, FlowError } from '../errors/errors.js';
import { siblingEdges } from '../model/edges.js';
import { Flow, type AnyFlow, type CompositeConfig, type FlowConfig } from '../model/flow.js';
import { toPolicyInput, type RetryPolicyInput } from '../model/retry-policy.js';
import { Processor } from '../model/processor.js';
import type { FlowResult, StepResult } from '../model/result.js';
import { FlowType } from '../model/status.js';

/** Returns the output a test gave for a dependency, checked by the real dependency's output schema where there is one. */
class Stub extends Processor<z.ZodUnknown, z.ZodType> {
  readonly input = z.unknown();
  readonly output: z.ZodType;
  readonly #value: unknown;
  constructor(value: unknown, output: z.ZodType | undefined) {
    super();
    this.#value = value;
    this.output = output ?? z.unknown();
  }
  process(): unknown {
    return this.#value;
  }
}

/** The wrapper run of `t.runStep`, and what to take from its result. */
export interface StepHarness<I, O> {
  readonly flow: Flow<I, Record<string, unknown>>;
  /** The result of the flow under test, from the wrapper's: its output, and its steps without the stubs. */
  readonly resultOf: (result: FlowResult<Record<string, unknown>>) => FlowResult<O>;
}

/**
 * Builds the wrapper of `flow` with a stub per dependency. The wrapper carries what the flow would
 * inherit from its ancestors (retry, timeout, heartbeat timeout); in a sequential composite, the
 * flow's predecessor is a dependency too, whose output is the flow's input unless `deps` gives it.
 * @throws FlowError `WEIR_INVALID_OPTIONS` for a missing required dependency, or a dependency the flow does not have.
 */
export function stepHarness<I, O>(flow: Flow<I, O>, input: I, given: Readonly<Record<string, unknown>>): StepHarness<I, O> {
  const before = predecessorOf(flow);
  const deps = before === undefined || Object.hasOwn(given, before) ? given : { ...given, [before]: input };
  const { required, optional } = checkDeps(flow, deps, `t.runStep(flow "${flow.name}")`);
  const wrapper = Flow.parallel<I>(`t.runStep(${flow.name})`, inherited(flow));
  for (const [name, value] of Object.entries(deps)) {
    const sibling = flow.parent?.children.find((c) => c.name === name);
    new Flow(new Stub(value, sibling?.processor?.output), { name }).registerTo(wrapper);
  }
  // An optional dependency without a stub is never registered: the step reads `undefined`, as for one that failed.
  copyOf(flow).registerTo(wrapper, { required, optional });
  const stubs = new Set(Object.keys(deps));
  return {
    flow: wrapper,
    resultOf: (result) => {
      const steps: Record<string, StepResult> = {};
      for (const [name, step] of Object.entries(result.steps)) if (!stubs.has(name) && !(flow.isComposite && name === flow.name)) steps[name] = step;
      const own = result.steps[flow.name];
      // The flow's own outcome: with `allowFailure`, a failed step does not fail the wrapper's run.
      const status = own === undefined || result.status !== 'completed' ? result.status : own.status;
      // A failed run's error is its first failing step's (a stub refused by its schema, say).
      const error = result.status === 'completed' ? own?.error : (result.error ?? own?.error);
      return { ...result, name: flow.name, status, error, output: own?.output as O | undefined, attempts: own?.attempts ?? [], steps };
    },
  };
}

/** The name of the sibling a child of a sequential composite follows, if any: its implicit dependency. */
function predecessorOf(flow: AnyFlow): string | undefined {
  const parent = flow.parent;
  return parent === undefined ? undefined : siblingEdges(parent).find((edge) => edge.to === flow && edge.kind === 'order')?.from.name;
}

/** What `flow` inherits from its ancestors: retry fields merged from the root down, the nearest timeout and heartbeat timeout. */
function inherited(flow: AnyFlow): CompositeConfig {
  const ancestors: AnyFlow[] = [];
  for (let at = flow.parent; at !== undefined; at = at.parent) ancestors.unshift(at);
  const retries = ancestors.flatMap((a) => (a.config.retry === undefined ? [] : [toPolicyInput(a.config.retry)]));
  const nearest = <K extends 'timeout' | 'heartbeatTimeout'>(key: K): FlowConfig[K] => ancestors.findLast((a) => a.config[key] !== undefined)?.config[key];
  const timeout = nearest('timeout');
  const heartbeatTimeout = nearest('heartbeatTimeout');
  return {
    ...(retries.length === 0 ? {} : { retry: Object.assign({}, ...retries) as RetryPolicyInput }),
    ...(timeout === undefined ? {} : { timeout }),
    ...(heartbeatTimeout === undefined ? {} : { heartbeatTimeout }),
  };
}

/** A copy of `flow` and its subtree, registered nowhere, with the same processors, configurations and dependencies. */
function copyOf(flow: AnyFlow): AnyFlow {
  if (!flow.isComposite) return new Flow(flow.processor!, { ...flow.config });
  const { name, ...config } = flow.config;
  const copy = flow.type === FlowType.SEQUENTIAL ? Flow.sequential(name, config) : Flow.parallel(name, config);
  for (const child of flow.children) copyOf(child).registerTo(copy, child.dependencies);
  return copy;
}

/**
 * The flow's dependencies, once the outputs given for them are checked: every required one is
 * given, and nothing else is.
 * @throws FlowError `WEIR_INVALID_OPTIONS` naming `where` for a missing required dependency, or one the flow does not have.
 */
export function checkDeps(flow: AnyFlow, deps: Readonly<Record<string, unknown>>, where: string): { readonly required: readonly string[]; readonly optional: readonly string[] } {
  const declared = flow.dependencies;
  const before = predecessorOf(flow);
  const required = before === undefined || declared.required.includes(before) ? declared.required : [before, ...declared.required];
  const optional = declared.optional.filter((name) => name !== before);
  const missing = required.filter((name) => !Object.hasOwn(deps, name));
  if (missing.length > 0) {
    throw new FlowError(`${where}: give the output of its required ${plural(missing)} in { deps: { ${missing.map((n) => `${n}: ...`).join(', ')} } }`, {
      code: ErrorCode.INVALID_OPTIONS,
    });
  }
  const unknown = Object.keys(deps).filter((name) => !required.includes(name) && !optional.includes(name));
  if (unknown.length > 0) {
    throw new FlowError(`${where}: ${unknown.map((n) => `"${n}"`).join(', ')} ${unknown.length === 1 ? 'is not one of its dependencies' : 'are not its dependencies'} (it has ${namesOf([...required, ...optional])})`, {
      code: ErrorCode.INVALID_OPTIONS,
    });
  }
  return { required, optional };
}

/** `"a", "b"`, or `none`. */
export function namesOf(names: readonly string[]): string {
  return names.map((n) => `"${n}"`).join(', ') || 'none';
}

function plural(names: readonly string[]): string {
  return `${names.length === 1 ? 'dependency' : 'dependencies'} ${names.map((n) => `"${n}"`).join(', ')}`;
}
