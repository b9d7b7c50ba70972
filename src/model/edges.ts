/** The edges between the children of a composite, as drawings of a flow (Mermaid, the dashboard) show them. */
import type { AnyFlow } from './flow.js';
import { FlowType } from './status.js';

/** One edge between two children of a composite: `order` (a sequential composite's child waits for the one before it), `required` or `optional`. */
export interface SiblingEdge {
  readonly from: AnyFlow;
  readonly to: AnyFlow;
  readonly kind: 'order' | 'required' | 'optional';
}

/**
 * The edges between `composite`'s children, child by child: its order edge first, then its required
 * dependencies (one that is also its order edge left out), then its optional ones. A dependency on a
 * name no child has (an optional one never registered) has no edge.
 */
export function siblingEdges(composite: AnyFlow): SiblingEdge[] {
  const children = composite.children;
  const edges: SiblingEdge[] = [];
  children.forEach((to, i) => {
    const before = composite.type === FlowType.SEQUENTIAL && i > 0 ? children[i - 1] : undefined;
    if (before !== undefined) edges.push({ from: before, to, kind: 'order' });
    const { required, optional } = to.dependencies;
    for (const [names, kind] of [
      [required, 'required'],
      [optional, 'optional'],
    ] as const) {
      for (const name of names) {
        const from = children.find((c) => c.name === name);
        if (from !== undefined && from !== before) edges.push({ from, to, kind });
      }
    }
  });
  return edges;
}
