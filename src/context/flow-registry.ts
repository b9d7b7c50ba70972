/**
 * A context's flows: those registered by name (so a stored run finds its flow again), those started
 * here without registration (a run of one that parks goes on here too), and the compiled graph of
 * each, cached until the tree under it changes.
 */
import { ErrorCode, FlowError } from '../errors/errors.js';
import type { Executor } from '../executors/executor.js';
import { compileGraph, type CompiledGraph } from '../graph/compile.js';
import { Flow, graphVersionOf, type AnyFlow } from '../model/flow.js';
import type { RunRecord } from '../storage/journal/run-store.js';
import type { ContextSettings } from './options.js';
import { describeValue } from '../util/parse.js';

/** The flows a context knows, and their compiled graphs. */
export class FlowRegistry {
  readonly #settings: ContextSettings;
  readonly #executors: ReadonlyMap<string, Executor>;
  readonly #registered = new Map<string, AnyFlow>();
  /** Flows started here without being registered, by name: a run of one that parks goes on here too. */
  readonly #started = new Map<string, AnyFlow>();
  readonly #compiled = new WeakMap<AnyFlow, { version: number; graph: CompiledGraph }>();

  constructor(settings: ContextSettings, executors: ReadonlyMap<string, Executor>) {
    this.#settings = settings;
    this.#executors = executors;
  }

  /**
   * Validates a flow graph and records it by name.
   * @throws FlowError `WEIR_DUPLICATE_NAME` when another flow has the name; what `graphOf` throws.
   */
  register(flow: AnyFlow): void {
    this.graphOf(flow);
    const existing = this.#registered.get(flow.name);
    if (existing !== undefined && existing !== flow) {
      throw new FlowError(`a different flow named "${flow.name}" is already registered with this context`, { code: ErrorCode.DUPLICATE_NAME });
    }
    this.#registered.set(flow.name, flow);
  }

  /** The flows registered here, in registration order. */
  get registeredFlows(): AnyFlow[] {
    return [...this.#registered.values()];
  }

  /** Every flow known here: registered, or started here. */
  get known(): AnyFlow[] {
    return [...this.#registered.values(), ...this.#started.values()];
  }

  /** The flow registered under `name`, if any. */
  registered(name: string): AnyFlow | undefined {
    return this.#registered.get(name);
  }

  /** Notes a flow a run of which parked here, so the run goes on here even though its flow is not registered. */
  started(flow: AnyFlow): void {
    if (!this.#registered.has(flow.name)) this.#started.set(flow.name, flow);
  }

  /** A flow registered here by name, or started here (a run of it parked here). */
  named(name: string): AnyFlow | undefined {
    return this.#registered.get(name) ?? this.#started.get(name);
  }

  /**
   * The compiled graph of a stored run's flow.
   * @throws FlowError `WEIR_FLOW_NOT_REGISTERED` when its flow is not known here.
   */
  graphFor(run: RunRecord): CompiledGraph {
    const flow = this.named(run.flow);
    if (flow === undefined) {
      throw new FlowError(`run "${run.runId}" is of flow "${run.flow}", which is not registered with this context (ctx.register(flow))`, {
        code: ErrorCode.FLOW_NOT_REGISTERED,
      });
    }
    return this.graphOf(flow);
  }

  /** The graph of a stored run's flow (known here, or `given`) when it is unchanged since the run started. */
  graphMatching(run: RunRecord, given?: AnyFlow): CompiledGraph | undefined {
    for (const flow of [this.named(run.flow), given]) {
      if (flow?.name !== run.flow) continue;
      const graph = this.graphOf(flow);
      if (graph.fingerprint === run.fingerprint) return graph;
    }
    return undefined;
  }

  /**
   * The compiled graph of `flow`, compiled again only when the tree under it changed.
   * @throws FlowError `WEIR_INVALID_OPTIONS` when `flow` is not a Flow; what `compileGraph` throws.
   */
  graphOf(flow: AnyFlow): CompiledGraph {
    if (!(flow instanceof Flow)) {
      throw new FlowError(`flow: expected a Flow, got ${describeValue(flow)}`, { code: ErrorCode.INVALID_OPTIONS });
    }
    const version = graphVersionOf(flow);
    const cached = this.#compiled.get(flow);
    if (cached?.version === version) return cached.graph;
    const graph = compileGraph(flow, {
      retry: this.#settings.retry,
      timeout: this.#settings.timeout,
      // FlowConfig allows only the types this map holds.
      checkLeaf: (leaf, processor) => this.#executors.get(leaf.type)!.prepare?.(processor, `flow "${leaf.name}"`),
    });
    this.#compiled.set(flow, { version, graph });
    return graph;
  }
}
