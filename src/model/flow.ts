/**
 * `Flow`: one processor with a frozen, validated `FlowConfig`, or a composite (`parallel` or
 * `sequential`) that other flows register to.
 */
import { z } from 'zod';
import { CycleError, DependencyError, ErrorCode, FlowError } from '../errors/errors.js';
import { toMermaid, type MermaidOptions } from './mermaid.js';
import type { FlowResult } from './result.js';
import type { flowInput, flowOutput, Processor } from './processor.js';
import { retryOptionSchema } from './retry-policy.js';
import { FlowType } from './status.js';
import { describeValue, duration, expectedOf, expecting, parseOptions, type OptionsOf } from '../util/parse.js';
import { findCycle } from './cycle.js';
import type { RunOptions } from './run-options.js';
import { stripUndefined } from '../util/types.js';
import { workerLoading } from '../util/worker-loading.js';

const NAME = expecting(
  z
    .string()
    .min(1)
    .max(128)
    .regex(/^[^/\p{Cc}]+$/u),
  'a name of 1 to 128 characters without "/" or control characters',
);

const timeoutSchema = duration();

// The shape is a const of its own so its TSDoc reaches the published types.
const flowConfigShape = {
  /** Unique within the tree of flows it runs in; names the step, its result and its events. */
  name: NAME,
  /** For people reading the graph. */
  description: z.string().optional(),
  /** The most one attempt may take, in milliseconds; past it the attempt fails with `TimeoutError`. @default none */
  timeout: timeoutSchema.optional(),
  /** Attempts after the first, or a retry policy; overrides the composite's and the context's. @default the composite's, else the context's */
  retry: retryOptionSchema.optional(),
  /**
   * The longest an attempt may go without `step.heartbeat()` (counted from its start), in
   * milliseconds; past it the attempt fails with a retryable `TimeoutError`. @default none
   */
  heartbeatTimeout: timeoutSchema.optional(),
  /** Where the processor runs. @default 'inline' */
  type: z.enum([FlowType.INLINE, FlowType.THREAD, FlowType.PROCESS]).optional(),
  /**
   * Whether this flow may fail without failing its composite (and so the run): it is recorded as
   * failed with its error, dependants that require it are skipped (and those skips fail nothing
   * either), optional ones see `undefined`. For a composite, it is about the composite's own
   * failure, not a default for its children. No effect on the run's root flow. @default false
   */
  allowFailure: z.boolean().optional(),
  /**
   * The version of this flow's code, for a run's root flow: a run records it (or, without one, the
   * graph's fingerprint), and only a context that registered the flow at that version takes the run
   * over or from the queue, so during a rolling deploy old runs stay with old code. @default the graph's fingerprint
   */
  version: expecting(z.string().min(1).max(64).regex(/^[^\p{Cc}]+$/u), 'a version of 1 to 64 characters without control characters').optional(),
  /** For a run's root flow: the most runs of it taken from the queue (`ctx.enqueue`) that run at once, across every context on the store. @default no limit */
  concurrency: expecting(z.number().int().positive(), 'a whole number >= 1').optional(),
  /** For a run's root flow: the most runs of it with one `concurrencyKey` that run at once, across every context on the store. @default no limit */
  keyConcurrency: expecting(z.number().int().positive(), 'a whole number >= 1').optional(),
};

// A composite takes the same fields but its name (an argument of its own) and its type (set by the factory).
const { name: _name, type: _type, ...compositeConfigShape } = flowConfigShape;

const leafConfigSchema = z.strictObject(flowConfigShape);
const compositeConfigSchema = z.strictObject(compositeConfigShape);

/** The configuration of a leaf flow, as a user writes it. */
export type FlowConfig = OptionsOf<typeof flowConfigShape>;

/** Where a leaf flow's processor runs. */
export type LeafType = NonNullable<FlowConfig['type']>;

/**
 * The configuration of a composite: `timeout`, `retry` and `heartbeatTimeout` are defaults for the
 * flows under it; `allowFailure` is the composite's own.
 */
export type CompositeConfig = OptionsOf<typeof compositeConfigShape>;

/** A dependency as `registerTo` takes it: the sibling `Flow` itself, or its name. */
export type DependencyRef = AnyFlow | string;

// Each one is checked by `registerTo`, which says what is wrong with it (a `DependencyError`); the
// type parameter names what it takes, since a Flow's type cannot be derived from a zod schema.
const dependencies = expecting(z.array(z.custom<DependencyRef>()), 'an array of sibling flows or their names').readonly();

const registerOptionsShape = {
  /** Siblings that must complete first; their failure skips this flow. @default [] */
  required: dependencies.optional(),
  /** Siblings waited for, whose failure or absence does not block; `deps.get` gives `undefined`. @default [] */
  optional: dependencies.optional(),
};
const registerSchema = z.strictObject(registerOptionsShape);

/** The dependencies given to `registerTo`. */
export type RegisterOptions = OptionsOf<typeof registerOptionsShape>;

/** A dependency edge as stored on the dependant. */
export interface DependencyEdge {
  readonly name: string;
  readonly kind: 'required' | 'optional';
  /** The flow object given, if one was; checked against the sibling of that name. */
  readonly flow: AnyFlow | undefined;
}

/** What the graph and the run need of a flow, kept off the public surface. */
export interface FlowInternals {
  parent: AnyFlow | undefined;
  readonly children: AnyFlow[];
  readonly childByName: Map<string, AnyFlow>;
  /** Names of not-yet-registered siblings that children refer to, so cycles are checked only when needed. */
  readonly forwardRefs: Set<string>;
  edges: DependencyEdge[];
  /** Grows whenever the tree under this flow changes, so a compiled graph knows it is out of date. */
  version: number;
}

const internals = new WeakMap<AnyFlow, FlowInternals>();

/** The internal state of a flow, for the graph compiler. */
export function flowInternals(flow: AnyFlow): FlowInternals {
  const state = internals.get(flow);
  if (state === undefined) throw new FlowError('not a weir Flow', { code: ErrorCode.INVALID_CONFIG });
  return state;
}

/** The version of the tree under `flow`: it changes whenever a flow is registered anywhere below it. */
export function graphVersionOf(flow: AnyFlow): number {
  return flowInternals(flow).version;
}

/** Runs a flow on the process-wide default context. */
type DefaultRunner = (flow: AnyFlow, input: unknown, options?: RunOptions) => Promise<FlowResult>;
let defaultRunner: DefaultRunner | undefined;
/** Lets weir's entry point give `Flow.execute` its default context, so the model does not import the context. */
export function setDefaultRunner(runner: DefaultRunner): void {
  defaultRunner = runner;
}

/** Any flow, whatever its types. */
export type AnyFlow = Flow<any, any>;

/**
 * A processor with its configuration, or a composite of other flows. `I` is the input the flow
 * accepts and `O` the output it produces.
 *
 * @example
 * const count = new Flow(new CountWords(), { name: 'count', retry: 3, timeout: 5_000 });
 */
export class Flow<I = unknown, O = unknown> {
  /** The flow's name, unique within the tree it runs in. */
  readonly name: string;
  /** `inline`, `thread` or `process` for a leaf; `parallel` or `sequential` for a composite. */
  readonly type: FlowType;
  /** The validated configuration, frozen. */
  readonly config: Readonly<FlowConfig>;
  /** The processor, or `undefined` for a composite. */
  readonly processor: Processor | undefined;
  /** Carry the types for `step.deps.get(flow)` and `ctx.run`; never set at run time. */
  declare readonly [flowOutput]?: O;
  declare readonly [flowInput]?: I;

  /**
   * Wraps a processor.
   * @throws ValidationError `WEIR_INVALID_CONFIG` when the configuration is invalid, naming the field.
   */
  constructor(processor: Processor<z.ZodType<any, I>, z.ZodType<O, any>>, config: FlowConfig);
  /** @internal composites are made with `Flow.parallel` and `Flow.sequential`. */
  constructor(processor: undefined, config: FlowConfig, compositeType: 'parallel' | 'sequential');
  constructor(processor: Processor | undefined, config: FlowConfig, compositeType?: 'parallel' | 'sequential') {
    // A name too long to be one is left out here (the message shows it, shortened, as the bad option it is).
    const given: unknown = (config as { name?: unknown } | null | undefined)?.name;
    const where = `flow "${typeof given === 'string' && given.length <= 128 ? given : '?'}"`;
    if (compositeType === undefined) {
      if (!isProcessorLike(processor)) {
        throw new FlowError(`${where}: the first argument must be a Processor with input and output zod schemas and a process method`, {
          code: ErrorCode.INVALID_CONFIG,
        });
      }
      const parsed = parseOptions(leafConfigSchema, config, where, ErrorCode.INVALID_CONFIG);
      this.config = Object.freeze(stripUndefined(parsed));
      this.type = parsed.type ?? FlowType.INLINE;
      // A processor need not extend Processor: its class is noted here too (see Processor's constructor).
      workerLoading()?.noteClass(processor.constructor as abstract new () => unknown);
    } else {
      const { name, ...rest } = config;
      parseOptions(NAME, name, `${compositeType} flow name`, ErrorCode.INVALID_CONFIG);
      const parsed = parseOptions(compositeConfigSchema, rest, `flow "${name}"`, ErrorCode.INVALID_CONFIG);
      this.config = Object.freeze(stripUndefined({ name, ...parsed }));
      this.type = compositeType;
    }
    this.name = this.config.name;
    this.processor = processor;
    internals.set(this, { parent: undefined, children: [], childByName: new Map(), forwardRefs: new Set(), edges: [], version: 0 });
  }

  /**
   * A composite whose children run as soon as their dependencies allow, each receiving the
   * composite's input. Its output holds its children's outputs by name.
   *
   * `I` is the input the composite takes and `O` its output once it completed, as you declare
   * them (or as the type you assign it to says); the compiler does not check them against the
   * children, which still validate what they get and return at run time.
   * @default `I` unknown, `O` `Record<string, unknown>`
   * @throws ValidationError `WEIR_INVALID_CONFIG` when the name or an option is invalid.
   * @example
   * const ingest = Flow.parallel<{ text: string }, { count: { words: number }; summary: { line: string } }>('ingest');
   */
  static parallel<I = unknown, O extends object = Record<string, unknown>>(name: string, config: CompositeConfig = {}): Flow<I, O> {
    return new Flow<I, O>(undefined, compositeConfig(name, config), 'parallel');
  }

  /**
   * A composite whose children run one after another in registration order, each receiving the
   * previous child's output (the first receives the composite's input). Its output holds its
   * children's outputs by name.
   *
   * `I` and `O` are declared as for `Flow.parallel`.
   * @default `I` unknown, `O` `Record<string, unknown>`
   * @throws ValidationError `WEIR_INVALID_CONFIG` when the name or an option is invalid.
   * @example
   * const pipeline = Flow.sequential<Total, Record<string, Total>>('pipeline');
   */
  static sequential<I = unknown, O extends object = Record<string, unknown>>(name: string, config: CompositeConfig = {}): Flow<I, O> {
    return new Flow<I, O>(undefined, compositeConfig(name, config), 'sequential');
  }

  /** True for `parallel` and `sequential` flows. */
  get isComposite(): boolean {
    return this.processor === undefined;
  }

  /** The composite this flow is registered to. */
  get parent(): AnyFlow | undefined {
    return flowInternals(this).parent;
  }

  /** The flows registered to this composite, in registration order. */
  get children(): readonly AnyFlow[] {
    return [...flowInternals(this).children];
  }

  /** The names of this flow's dependencies on its siblings. */
  get dependencies(): { readonly required: readonly string[]; readonly optional: readonly string[] } {
    const edges = flowInternals(this).edges;
    return {
      required: edges.filter((e) => e.kind === 'required').map((e) => e.name),
      optional: edges.filter((e) => e.kind === 'optional').map((e) => e.name),
    };
  }

  /**
   * Makes this flow a child of a composite, depending on siblings by `Flow` or by name. A name may
   * refer to a sibling registered later; a required one must be registered before the flow runs.
   * @throws CycleError `WEIR_CYCLE` when the dependencies would close a cycle; `.cycle` names it.
   * @throws DependencyError `WEIR_DEPENDENCY` when a dependency is not a sibling or `parent` is not a composite.
   * @throws FlowError `WEIR_DUPLICATE_NAME` / `WEIR_ALREADY_REGISTERED` for a clashing name or a second parent.
   */
  registerTo(parent: AnyFlow, options: RegisterOptions = {}): this {
    const where = `flow "${this.name}"`;
    if (!(parent instanceof Flow) || !parent.isComposite) {
      throw new DependencyError(`${where}: registerTo(): parent: expected a composite (Flow.parallel or Flow.sequential), got ${describe(parent)}`);
    }
    parseOptions(registerSchema, options, `${where}: registerTo options`);
    const self = flowInternals(this);
    const parentState = flowInternals(parent);
    if (self.parent !== undefined) {
      throw new FlowError(`${where} is already registered to "${self.parent.name}"; a flow has one parent`, {
        code: ErrorCode.ALREADY_REGISTERED,
      });
    }
    for (let p: AnyFlow | undefined = parent; p !== undefined; p = flowInternals(p).parent) {
      if (p === this) {
        throw new CycleError(`${where} cannot be registered inside itself (through "${parent.name}")`, {
          cycle: [this.name, parent.name, this.name],
        });
      }
    }
    if (parentState.childByName.has(this.name)) {
      throw new FlowError(`${where}: "${parent.name}" already has a child named "${this.name}"`, { code: ErrorCode.DUPLICATE_NAME });
    }
    const edges = toEdges(this, parent, options);

    self.parent = parent;
    self.edges = edges;
    parentState.children.push(this);
    parentState.childByName.set(this.name, this);
    for (const edge of edges) if (!parentState.childByName.has(edge.name)) parentState.forwardRefs.add(edge.name);

    // A new cycle must pass through this flow, and only a sibling that named it before it existed can close one.
    if (parentState.forwardRefs.delete(this.name)) {
      const cycle = findCycle(this.name, (name) => siblingDependencies(parentState, name));
      if (cycle !== undefined) {
        parentState.children.pop();
        parentState.childByName.delete(this.name);
        parentState.forwardRefs.add(this.name);
        self.parent = undefined;
        self.edges = [];
        throw new CycleError(`${where}: registering it to "${parent.name}" closes a cycle: ${cycle.join(' -> ')}`, { cycle });
      }
    }
    // Only the trees this flow now belongs to changed: every graph compiled from elsewhere stays valid.
    for (let p: AnyFlow | undefined = parent; p !== undefined; p = flowInternals(p).parent) flowInternals(p).version++;
    return this;
  }

  /**
   * Runs this flow alone on `FlowContext.getInstance()`; resolves to its `FlowResult` (a failed
   * step fails the result, it does not throw).
   * @throws FlowError rejects as `ctx.run` does (see `FlowContext.run`); `WEIR_UNSUPPORTED` when
   * `Flow` was imported from one of weir's internal files rather than from `weir`, which sets up
   * the default context.
   */
  /**
   * This flow and everything under it as Mermaid flowchart text: composites as subgraphs, required
   * dependencies as solid arrows, optional ones dashed, a sequential composite's order as thick
   * arrows. Given `run` (a `FlowResult`, or `ctx.getRun`'s `RunInfo`), each step is coloured by
   * its status.
   * @example
   * console.log(pipeline.toMermaid());                                  // paste into a Markdown mermaid block
   * console.log(pipeline.toMermaid({ run: await ctx.getRun(runId) }));  // coloured by status
   */
  toMermaid(options?: MermaidOptions): string {
    return toMermaid(this, options);
  }

  execute(input: I, options?: RunOptions): Promise<FlowResult<O>> {
    if (defaultRunner === undefined) {
      return Promise.reject(
        new FlowError(`flow "${this.name}": execute() runs on FlowContext.getInstance(), which the package entry sets up; import Flow from "weir", or run it with ctx.run(flow, input)`, {
          code: ErrorCode.UNSUPPORTED,
        }),
      );
    }
    return defaultRunner(this, input, options) as Promise<FlowResult<O>>;
  }
}

/**
 * A composite's name and config as one config.
 * @throws ValidationError `WEIR_INVALID_CONFIG` for a config that is not a plain object: spread, `5` or a Map would pass as no options.
 */
function compositeConfig(name: string, config: CompositeConfig): FlowConfig {
  const proto: unknown = typeof config === 'object' && config !== null ? Object.getPrototypeOf(config) : undefined;
  // A composite's name is its first argument: a `name` among its options would be dropped, so it is refused as unknown.
  if ((proto !== Object.prototype && proto !== null) || Object.hasOwn(config, 'name')) {
    const shown = typeof name === 'string' && name.length <= 128 ? name : '?';
    parseOptions(compositeConfigSchema, config, `flow "${shown}"`, ErrorCode.INVALID_CONFIG);
  }
  return { ...config, name };
}

/** The names a child depends on among its siblings, the implicit sequential predecessor included. */
function siblingDependencies(parentState: FlowInternals, name: string): string[] {
  const child = parentState.childByName.get(name);
  if (child === undefined) return [];
  const names = flowInternals(child).edges.map((e) => e.name);
  const parent = flowInternals(child).parent;
  if (parent?.type === FlowType.SEQUENTIAL) {
    const index = parentState.children.indexOf(child);
    const previous = parentState.children[index - 1];
    if (previous !== undefined) names.push(previous.name);
  }
  return names;
}

function toEdges(flow: AnyFlow, parent: AnyFlow, options: RegisterOptions): DependencyEdge[] {
  const edges: DependencyEdge[] = [];
  const seen = new Map<string, 'required' | 'optional'>();
  const add = (ref: DependencyRef, kind: 'required' | 'optional', index: number): void => {
    let name: string;
    let dep: AnyFlow | undefined;
    if (typeof ref === 'string' && NAME.safeParse(ref).success) {
      name = ref;
    } else if (ref instanceof Flow) {
      name = ref.name;
      dep = ref;
      const depParent = flowInternals(ref).parent;
      if (depParent !== undefined && depParent !== parent) {
        throw new DependencyError(
          `flow "${flow.name}": dependency "${name}" is registered to "${depParent.name}", not to "${parent.name}"; dependencies must be siblings`,
          { dependency: name },
        );
      }
    } else {
      throw new DependencyError(`flow "${flow.name}": registerTo options: ${kind}[${index}]: expected a Flow or a flow name (${expectedOf(NAME)}), got ${describe(ref)}`);
    }
    if (name === flow.name) {
      throw new CycleError(`flow "${flow.name}" cannot depend on itself`, { cycle: [name, name] });
    }
    const previous = seen.get(name);
    if (previous !== undefined && previous !== kind) {
      throw new DependencyError(`flow "${flow.name}": "${name}" is listed as both required and optional`, { dependency: name });
    }
    if (previous !== undefined) return;
    seen.set(name, kind);
    edges.push({ name, kind, flow: dep });
  };
  (options.required ?? []).forEach((ref, i) => add(ref, 'required', i));
  (options.optional ?? []).forEach((ref, i) => add(ref, 'optional', i));
  return edges;
}

function isProcessorLike(value: unknown): value is Processor {
  if (typeof value !== 'object' || value === null) return false;
  const p = value as Partial<Processor>;
  return typeof p.process === 'function' && isSchema(p.input) && isSchema(p.output);
}

function isSchema(value: unknown): boolean {
  return typeof value === 'object' && value !== null && typeof (value as { safeParse?: unknown }).safeParse === 'function';
}

function describe(value: unknown): string {
  return value instanceof Flow ? `${value.type} flow "${value.name}"` : describeValue(value);
}
