/**
 * A generated flow as plain data (a plan), its fast-check arbitrary, and the `Flow` tree it builds.
 * A plan prints as the minimal case fast-check shrinks to, and can be pasted into the regressions.
 */
import fc from 'fast-check';
import { Flow, type AnyFlow, type LeafType } from '../../src/index.js';
import { Scripted, type Behaviour } from './scripted.js';

/** A dependency on an earlier sibling, by index among the siblings. */
export interface Edge {
  readonly on: number;
  readonly kind: 'required' | 'optional';
}

/** One step that runs a processor. */
export interface LeafPlan {
  readonly kind: 'leaf';
  readonly behaviour: Behaviour;
  /** Attempts after the first. */
  readonly retries: number;
  readonly executor: LeafType;
  readonly edges: readonly Edge[];
  /** Its failure does not fail its composite (dependants that require it are still skipped). */
  readonly allowFailure?: boolean;
}

/** A composite and its children. */
export interface CompositePlan {
  readonly kind: 'parallel' | 'sequential';
  readonly children: readonly NodePlan[];
  readonly edges: readonly Edge[];
  readonly allowFailure?: boolean;
}

export type NodePlan = LeafPlan | CompositePlan;

/** A whole case: the root composite and the run's mode. */
export interface CasePlan {
  readonly root: CompositePlan;
  readonly mode: 'batch' | 'interactive';
}

/** The timeout of a step whose every attempt times out, in ms (the other steps have none). */
export const STEP_TIMEOUT = 25;
/** The most steps a plan has; leaves past it are cut off. */
export const MAX_LEAVES = 60;

export interface PlanLimits {
  /** How deep composites nest (the root is depth 1). @default 4 */
  readonly depth?: number;
  /** Which executors leaves run on. @default inline, thread and process */
  readonly executors?: readonly LeafType[];
  /** Whether steps may time out. @default true */
  readonly timeouts?: boolean;
}

const allowFailureArb = fc.oneof({ arbitrary: fc.constant(false), weight: 9 }, { arbitrary: fc.constant(true), weight: 1 });
const edgeArb = fc.record({ on: fc.nat({ max: 20 }), kind: fc.constantFrom<Edge['kind']>('required', 'optional') });

/** Plans of 1–60 steps in composites nested up to `depth`, with every behaviour, on the given executors. */
export function casePlan(limits: PlanLimits = {}): fc.Arbitrary<CasePlan> {
  const depth = limits.depth ?? 4;
  const executors = limits.executors ?? ['inline', 'thread', 'process'];
  const behaviours: fc.Arbitrary<Behaviour>[] = [
    fc.constant({ kind: 'ok' as const }),
    fc.constant({ kind: 'fatal' as const }),
    fc.record({ kind: fc.constant('flaky' as const), failures: fc.integer({ min: 1, max: 3 }) }),
    fc.record({ kind: fc.constant('ask' as const), fallback: fc.option(fc.integer({ min: 0, max: 99 }), { nil: null }) }),
  ];
  if (limits.timeouts ?? true) behaviours.push(fc.constant({ kind: 'timeout' as const }));
  const leaf: fc.Arbitrary<LeafPlan> = fc.record({
    kind: fc.constant('leaf' as const),
    // Mostly steps that complete, so failures stay rare enough for long chains to run.
    behaviour: fc.oneof({ arbitrary: behaviours[0]!, weight: 12 }, ...behaviours.slice(1).map((arbitrary) => ({ arbitrary, weight: 1 }))),
    retries: fc.integer({ min: 0, max: 3 }),
    // Inline first, so shrinking moves steps back to the main thread.
    executor: fc.oneof({ arbitrary: fc.constant(executors[0]!), weight: 6 }, ...executors.slice(1).map((e) => ({ arbitrary: fc.constant(e), weight: 1 }))),
    edges: fc.array(edgeArb, { maxLength: 3 }),
    allowFailure: allowFailureArb,
  });
  const node = fc.letrec<{ node: NodePlan; composite: CompositePlan }>((tie) => ({
    node: fc.oneof({ depthSize: 'small', maxDepth: depth - 1, withCrossShrink: true }, leaf, tie('composite')),
    composite: fc.record({
      kind: fc.constantFrom('parallel' as const, 'sequential' as const),
      children: fc.array(tie('node'), { minLength: 1, maxLength: 8 }),
      edges: fc.array(edgeArb, { maxLength: 2 }),
      allowFailure: allowFailureArb,
    }),
  }));
  return fc
    .record({ root: node.composite, mode: fc.constantFrom('batch' as const, 'interactive' as const) })
    .map(({ root, mode }) => ({ root: capLeaves(root, { left: MAX_LEAVES }) ?? onlyLeaf(), mode }));
}

function onlyLeaf(): CompositePlan {
  return { kind: 'parallel', edges: [], children: [{ kind: 'leaf', behaviour: { kind: 'ok' }, retries: 0, executor: 'inline', edges: [] }] };
}

/** Keeps the first `budget.left` leaves, dropping composites left empty. */
function capLeaves(plan: CompositePlan, budget: { left: number }): CompositePlan | undefined {
  const children: NodePlan[] = [];
  for (const child of plan.children) {
    if (budget.left === 0) break;
    if (child.kind === 'leaf') {
      budget.left--;
      children.push(child);
    } else {
      const kept = capLeaves(child, budget);
      if (kept !== undefined) children.push(kept);
    }
  }
  return children.length === 0 ? undefined : { ...plan, children };
}

/** A plan's nodes with their names (`s1`, `s2`, ... for leaves, `c1`, ... for composites, in depth-first order). */
export interface Named {
  readonly name: string;
  readonly plan: NodePlan;
  readonly children: readonly Named[];
  /** Required and optional dependencies registered, by earlier sibling's name (a sequential child also waits for its predecessor). */
  readonly required: readonly string[];
  readonly optional: readonly string[];
}

/** Names every node of a plan, `prefix` first (flow names are unique in a context). */
export function nameTree(root: CompositePlan, prefix: string): Named {
  let leaves = 0;
  let composites = 0;
  const visit = (plan: NodePlan, siblings: readonly string[]): Named => {
    const name = plan.kind === 'leaf' ? `${prefix}s${++leaves}` : `${prefix}c${++composites}`;
    const required = new Set<string>();
    const optional = new Set<string>();
    if (siblings.length > 0) {
      for (const edge of plan.edges) {
        const on = siblings[edge.on % siblings.length]!;
        if (edge.kind === 'required') required.add(on);
        else optional.add(on);
      }
    }
    for (const r of required) optional.delete(r);
    const children: Named[] = [];
    if (plan.kind !== 'leaf') {
      for (const child of plan.children) children.push(visit(child, children.map((c) => c.name)));
    }
    return { name, plan, children, required: [...required], optional: [...optional] };
  };
  return visit(root, []);
}

/** Builds the `Flow` tree of a named plan; its steps log their executions to `effects` when given. */
export function buildFlow(named: Named, effects?: string): AnyFlow {
  const plan = named.plan;
  if (plan.kind === 'leaf') {
    return new Flow(new Scripted(plan.behaviour, effects), {
      name: named.name,
      type: plan.executor,
      retry: { maxAttempts: plan.retries + 1, initialInterval: 1, backoffFactor: 1, jitter: 0 },
      ...(plan.behaviour.kind === 'timeout' ? { timeout: STEP_TIMEOUT } : {}),
      ...(plan.allowFailure === true ? { allowFailure: true } : {}),
    });
  }
  const config = plan.allowFailure === true ? { allowFailure: true } : {};
  const flow = plan.kind === 'parallel' ? Flow.parallel(named.name, config) : Flow.sequential(named.name, config);
  const built = new Map<string, AnyFlow>();
  for (const child of named.children) {
    const childFlow = buildFlow(child, effects);
    childFlow.registerTo(flow, { required: child.required.map((n) => built.get(n)!), optional: child.optional.map((n) => built.get(n)!) });
    built.set(child.name, childFlow);
  }
  return flow;
}

/** Every leaf of a named plan. */
export function leavesOf(named: Named): Named[] {
  return named.plan.kind === 'leaf' ? [named] : named.children.flatMap(leavesOf);
}
