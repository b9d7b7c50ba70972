/** Cycle detection over named nodes, independent of what the nodes are. */

/**
 * Finds a cycle through `start` following `dependenciesOf`, depth first.
 * @returns the cycle as names, each depending on the next, `start` first and last; or `undefined`.
 */
export function findCycle(start: string, dependenciesOf: (name: string) => Iterable<string>): string[] | undefined {
  const visited = new Set<string>();
  const path: string[] = [start];
  const stack: Iterator<string>[] = [dependenciesOf(start)[Symbol.iterator]()];
  while (stack.length > 0) {
    const top = stack[stack.length - 1]!;
    const next = top.next();
    if (next.done === true) {
      stack.pop();
      path.pop();
      continue;
    }
    const name = next.value;
    if (name === start) return [...path, start];
    if (visited.has(name)) continue;
    visited.add(name);
    path.push(name);
    stack.push(dependenciesOf(name)[Symbol.iterator]());
  }
  return undefined;
}
