/**
 * A flow tree as Mermaid flowchart text (`flow.toMermaid()`): composites as subgraphs, required
 * dependencies as solid arrows, optional ones dashed, a sequential composite's order as thick
 * arrows; given a run's steps, each step coloured by its status.
 */
import { z } from 'zod';
import type { AnyFlow } from './flow.js';
import { siblingEdges } from './edges.js';
import { FlowStatus } from './status.js';
import { parseOptions } from '../util/parse.js';

/** Options of `flow.toMermaid()`. */
export interface MermaidOptions {
  /** The direction of the chart. @default 'TD' (top down) */
  readonly direction?: 'TD' | 'LR';
  /**
   * A run of the flow (a `FlowResult`, or `ctx.getRun`'s `RunInfo`): each step is coloured by its
   * status. Steps the run has no record of are drawn as pending.
   */
  readonly run?: { readonly status?: string; readonly steps: Readonly<Record<string, { readonly status: string }>> };
}

// Checked apart from the interface: a run is any object with these fields (a FlowResult, a RunInfo), and
// the type of a loose zod object (with its index signature) would not take those interfaces.
const status = z.enum(FlowStatus);
const mermaidSchema = z.strictObject({
  direction: z.enum(['TD', 'LR']).optional(),
  run: z.looseObject({ status: status.optional(), steps: z.record(z.string(), z.looseObject({ status })) }).optional(),
});

/** How each kind of edge is drawn: a sequential order thick, a required dependency solid, an optional one dashed. */
const ARROWS = { order: '==>', required: '-->', optional: '-.->' } as const;

/** Fill and stroke of each status. */
const COLOURS: Readonly<Record<string, string>> = {
  [FlowStatus.COMPLETED]: 'fill:#1f9d55,stroke:#176f3d,color:#fff',
  [FlowStatus.RUNNING]: 'fill:#2b6cb0,stroke:#1e4e80,color:#fff',
  [FlowStatus.WAITING]: 'fill:#b7791f,stroke:#8a5b17,color:#fff',
  [FlowStatus.FAILED]: 'fill:#c53030,stroke:#8f2323,color:#fff',
  [FlowStatus.CANCELLED]: 'fill:#718096,stroke:#4a5568,color:#fff',
  [FlowStatus.SKIPPED]: 'fill:#805ad5,stroke:#5b3e9c,color:#fff',
  [FlowStatus.PENDING]: 'fill:#edf2f7,stroke:#a0aec0,color:#1d232b',
};

/**
 * Mermaid flowchart text of `root` and everything under it.
 * @throws ValidationError `WEIR_INVALID_OPTIONS` for a bad option (a `run` that is not a run, say).
 */
export function toMermaid(root: AnyFlow, given: MermaidOptions = {}): string {
  const options = parseOptions(mermaidSchema, given, `flow "${root.name}": toMermaid() options`);
  const lines = [`flowchart ${options.direction ?? 'TD'}`];
  const ids = new Map<AnyFlow, string>();
  const idOf = (flow: AnyFlow): string => {
    let id = ids.get(flow);
    if (id === undefined) ids.set(flow, (id = `n${ids.size}`));
    return id;
  };
  const edges: string[] = [];
  const statuses = new Map<string, string[]>();
  const colour = (flow: AnyFlow): void => {
    if (options.run === undefined) return;
    const status = flow === root && flow.isComposite ? options.run.status : (options.run.steps[flow.name]?.status ?? FlowStatus.PENDING);
    if (status === undefined) return;
    if (!statuses.has(status)) statuses.set(status, []);
    statuses.get(status)!.push(idOf(flow));
  };
  const visit = (flow: AnyFlow, indent: string): void => {
    const id = idOf(flow);
    colour(flow);
    if (!flow.isComposite) {
      lines.push(`${indent}${id}["${label(flow.name)}"]`);
      return;
    }
    lines.push(`${indent}subgraph ${id}["${label(flow.name)} (${flow.type})"]`);
    for (const child of flow.children) visit(child, `${indent}  `);
    lines.push(`${indent}end`);
    for (const edge of siblingEdges(flow)) edges.push(`  ${idOf(edge.from)} ${ARROWS[edge.kind]} ${idOf(edge.to)}`);
  };
  visit(root, '  ');
  lines.push(...edges);
  for (const [status, nodes] of statuses) {
    lines.push(`  classDef ${status} ${COLOURS[status] ?? COLOURS[FlowStatus.PENDING]!}`);
    lines.push(`  class ${nodes.join(',')} ${status}`);
  }
  return `${lines.join('\n')}\n`;
}

/** A name as Mermaid label text: quotes and angle brackets as entities. */
function label(name: string): string {
  return name.replaceAll('"', '#quot;').replaceAll('<', '#lt;').replaceAll('>', '#gt;');
}
