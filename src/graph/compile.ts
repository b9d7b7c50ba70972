/**
 * Compiles a tree of flows into the flat, indexed graph a run schedules: every flow a node, its
 * dependencies resolved to sibling indices, retry and timeout inherited down the tree.
 */
import { createHash } from 'node:crypto';
import { DependencyError, ErrorCode, FlowError } from '../errors/errors.js';
import { flowInternals, type AnyFlow } from '../model/flow.js';
import type { Processor } from '../model/processor.js';
import { mergeRetry, type RetryPolicy } from '../model/retry-policy.js';
import { FlowType } from '../model/status.js';

/** A dependant of a node: its index and whether the edge is required. */
export interface DependantEdge {
  readonly index: number;
  readonly required: boolean;
}

/** One flow of a compiled graph. */
export interface GraphNode {
  readonly index: number;
  readonly name: string;
  readonly flow: AnyFlow;
  readonly type: FlowType;
  readonly processor: Processor | undefined;
  /** The composite's index, -1 for the root. */
  readonly parent: number;
  readonly children: readonly number[];
  /** The children's names, in order (a composite's stored record lists them). */
  readonly childNames: readonly string[];
  /** Sibling indices this node waits for (the sequential predecessor included), required first. */
  readonly dependencies: readonly DependantEdge[];
  readonly dependants: readonly DependantEdge[];
  /** For a sequential composite's child after the first: the sibling whose output is its input. */
  readonly previous: number;
  /** Names `deps.get` answers for, the unregistered optional ones included. */
  readonly dependencyNames: ReadonlyMap<string, number>;
  readonly retry: RetryPolicy;
  readonly timeout: number | undefined;
  readonly heartbeatTimeout: number | undefined;
  /** Its own `allowFailure`: its failure does not fail its composite. */
  readonly allowFailure: boolean;
  /** Whether its failure is tolerated on the way up: it, or a composite above it (the root aside), allows failure. */
  readonly failureTolerated: boolean;
}

/** A flow tree ready to run. */
export interface CompiledGraph {
  readonly root: GraphNode;
  readonly nodes: readonly GraphNode[];
  readonly byName: ReadonlyMap<string, GraphNode>;
  /** Leaves that receive the run's input directly, validated before any step runs. */
  readonly entryLeaves: readonly GraphNode[];
  /** A digest of names, types, tree and edges: a run records it, and recovery compares it. */
  readonly fingerprint: string;
  /** The version a run of this graph records: its root flow's `version`, else the fingerprint. */
  readonly version: string;
}

/** Defaults the context puts under every flow. */
export interface CompileDefaults {
  readonly retry: RetryPolicy;
  readonly timeout: number | undefined;
  /** Checks a leaf can run on its executor (a thread or process needs a locatable processor); throws if not. */
  readonly checkLeaf: (flow: AnyFlow, processor: Processor) => void;
}

interface Draft {
  index: number;
  flow: AnyFlow;
  parent: number;
  children: number[];
  retry: RetryPolicy;
  timeout: number | undefined;
  heartbeatTimeout: number | undefined;
  failureTolerated: boolean;
}

/**
 * Compiles `root` and everything under it.
 * @throws DependencyError `WEIR_DEPENDENCY` for a required dependency that is not registered.
 * @throws FlowError `WEIR_DUPLICATE_NAME` when two flows in the tree share a name.
 * @throws FlowError whatever `defaults.checkLeaf` throws, such as `WEIR_PROCESSOR_MODULE`.
 */
export function compileGraph(root: AnyFlow, defaults: CompileDefaults): CompiledGraph {
  const drafts: Draft[] = [];
  const indexByName = new Map<string, number>();
  const visit = (flow: AnyFlow, parent: number): number => {
    const existing = indexByName.get(flow.name);
    if (existing !== undefined) {
      throw new FlowError(
        `flow "${flow.name}" appears twice under "${root.name}" (in "${parentName(drafts, drafts[existing]!.parent)}" and "${parentName(drafts, parent)}"); names must be unique within a run`,
        { code: ErrorCode.DUPLICATE_NAME },
      );
    }
    if (flow.processor !== undefined) defaults.checkLeaf(flow, flow.processor);
    const inherited = parent === -1 ? defaults : drafts[parent]!;
    const draft: Draft = {
      index: drafts.length,
      flow,
      parent,
      children: [],
      retry: mergeRetry(inherited.retry, flow.config.retry),
      timeout: flow.config.timeout ?? inherited.timeout,
      heartbeatTimeout: flow.config.heartbeatTimeout ?? (parent === -1 ? undefined : drafts[parent]!.heartbeatTimeout),
      // The root's own setting has no composite to spare: its failure is the run's.
      failureTolerated: parent !== -1 && (flow.config.allowFailure === true || drafts[parent]!.failureTolerated),
    };
    drafts.push(draft);
    indexByName.set(flow.name, draft.index);
    for (const child of flowInternals(flow).children) draft.children.push(visit(child, draft.index));
    return draft.index;
  };
  visit(root, -1);

  const dependencies: DependantEdge[][] = drafts.map(() => []);
  const dependants: DependantEdge[][] = drafts.map(() => []);
  const previous: number[] = drafts.map(() => -1);
  const dependencyNames: Map<string, number>[] = drafts.map(() => new Map());
  const position = new Array<number>(drafts.length).fill(0);
  for (const draft of drafts) draft.children.forEach((child, i) => (position[child] = i));
  for (const draft of drafts) {
    if (draft.parent === -1) continue; // the run's own flow has no siblings to wait for
    const parent = drafts[draft.parent]!;
    const siblings = flowInternals(parent.flow).childByName;
    const edges: DependantEdge[] = [];
    if (parent.flow.type === FlowType.SEQUENTIAL) {
      const at = position[draft.index]!;
      if (at > 0) {
        previous[draft.index] = parent.children[at - 1]!;
        edges.push({ index: previous[draft.index]!, required: true });
      }
    }
    for (const edge of flowInternals(draft.flow).edges) {
      const sibling = siblings.get(edge.name);
      if (sibling === undefined || (edge.flow !== undefined && edge.flow !== sibling)) {
        if (edge.kind === 'optional' && sibling === undefined) {
          dependencyNames[draft.index]!.set(edge.name, -1);
          continue;
        }
        throw new DependencyError(
          sibling === undefined
            ? `flow "${draft.flow.name}" requires "${edge.name}", which is not registered to "${parent.flow.name}"`
            : `flow "${draft.flow.name}" depends on a Flow named "${edge.name}" that is not the one registered to "${parent.flow.name}"`,
          { dependency: edge.name },
        );
      }
      const index = indexByName.get(sibling.name)!;
      if (edges.some((e) => e.index === index)) continue;
      edges.push({ index, required: edge.kind === 'required' });
    }
    dependencies[draft.index] = edges;
    for (const edge of edges) {
      dependants[edge.index]!.push({ index: draft.index, required: edge.required });
      dependencyNames[draft.index]!.set(drafts[edge.index]!.flow.name, edge.index);
    }
  }

  const nodes: GraphNode[] = drafts.map((d) => ({
    index: d.index,
    name: d.flow.name,
    flow: d.flow,
    type: d.flow.type,
    processor: d.flow.processor,
    parent: d.parent,
    children: d.children,
    childNames: d.children.map((c) => drafts[c]!.flow.name),
    dependencies: dependencies[d.index]!,
    dependants: dependants[d.index]!,
    previous: previous[d.index]!,
    dependencyNames: dependencyNames[d.index]!,
    retry: d.retry,
    timeout: d.timeout,
    heartbeatTimeout: d.heartbeatTimeout,
    allowFailure: d.parent !== -1 && d.flow.config.allowFailure === true,
    failureTolerated: d.failureTolerated,
  }));
  const byName = new Map(nodes.map((n) => [n.name, n]));
  const entryLeaves: GraphNode[] = [];
  const collectEntries = (node: GraphNode): void => {
    if (node.processor !== undefined) {
      entryLeaves.push(node);
    } else if (node.type === FlowType.SEQUENTIAL) {
      const first = node.children[0];
      if (first !== undefined) collectEntries(nodes[first]!);
    } else {
      for (const child of node.children) collectEntries(nodes[child]!);
    }
  };
  collectEntries(nodes[0]!);
  const fingerprint = fingerprintOf(nodes);
  return { root: nodes[0]!, nodes, byName, entryLeaves, fingerprint, version: nodes[0]!.flow.config.version ?? fingerprint };
}

/** What the graph's shape is: each node's name, type and parent, and its edges, hashed. */
function fingerprintOf(nodes: readonly GraphNode[]): string {
  const shape = nodes.map((n) => [n.name, n.type, n.parent, n.dependencies.map((d) => (d.required ? d.index : -1 - d.index))]);
  return createHash('sha256').update(JSON.stringify(shape)).digest('base64url').slice(0, 22);
}

function parentName(drafts: readonly Draft[], parent: number): string {
  return parent === -1 ? '(root)' : drafts[parent]!.flow.name;
}
