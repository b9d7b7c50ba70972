/**
 * The order rules every run's stored event log keeps, whatever the flow: dense sequence numbers,
 * one start and one end, a step's attempts in order and nothing after its end, and no step started
 * before what it (or a composite above it) waits for has ended.
 */
import type { WeirEvent } from '../../src/index.js';
import type { Named } from './plan.js';

const RUN_END = new Set(['run_complete', 'run_failed', 'run_cancelled']);
const STEP_END = new Set(['step_complete', 'step_failed', 'step_skipped']);

/** The first rule `events` breaks, or undefined when it keeps them all. */
export function brokenEventRule(events: readonly WeirEvent[], root: Named, attempts: ReadonlyMap<string, number>): string | undefined {
  for (let i = 0; i < events.length; i++) if (events[i]!.seq !== i + 1) return `seq ${events[i]!.seq} at position ${i + 1}: not dense`;
  if (events[0]?.type !== 'run_start') return `the log starts with ${events[0]?.type}`;
  const ends = events.filter((e) => RUN_END.has(e.type));
  if (ends.length !== 1 || !RUN_END.has(events.at(-1)!.type)) return `${ends.length} run ends, the last event is ${events.at(-1)!.type}`;

  const endAt = new Map<string, number>();
  const startAt = new Map<string, number>();
  for (const [i, e] of events.entries()) {
    if (!('step' in e) || typeof e.step !== 'string' || e.type.startsWith('run_')) continue;
    const step = e.step;
    if (endAt.has(step)) return `${e.type} of "${step}" (seq ${e.seq}) after its end`;
    if (e.type === 'step_start' && !startAt.has(step)) startAt.set(step, i);
    if (STEP_END.has(e.type)) endAt.set(step, i);
  }
  const attemptOf = (e: WeirEvent): number | undefined => ('attempt' in e && typeof e.attempt === 'number' ? e.attempt : undefined);
  const stepOf = (e: WeirEvent): string | undefined => ('step' in e && typeof e.step === 'string' ? e.step : undefined);
  for (const [step, n] of attempts) {
    const starts = events.filter((e) => e.type === 'step_start' && e.step === step).map(attemptOf);
    if (starts.length !== n || starts.some((a, i) => a !== i + 1)) return `"${step}" started attempts [${starts.join(',')}], ${n} expected`;
    const afterLast = events.find((e) => stepOf(e) === step && (attemptOf(e) ?? 0) > n);
    if (afterLast !== undefined) return `"${step}" has an event of attempt ${attemptOf(afterLast)} of ${n}`;
  }
  // A node's end: its own end event, or else (a composite that emits none) the last of its children's.
  const end = (node: Named): number =>
    endAt.get(node.name) ?? (node.children.length === 0 ? Number.POSITIVE_INFINITY : Math.max(...node.children.map(end)));
  const byName = new Map<string, Named>();
  const index = (n: Named): void => {
    byName.set(n.name, n);
    n.children.forEach(index);
  };
  index(root);
  const waits = (node: Named, previous: string | undefined): string[] => [...(previous === undefined ? [] : [previous]), ...node.required, ...node.optional];
  let broken: string | undefined;
  const visit = (node: Named, waitedFor: readonly string[]): void => {
    const start = startAt.get(node.name);
    if (start !== undefined) {
      for (const dep of waitedFor) {
        const depEnd = end(byName.get(dep)!);
        if (!(depEnd < start)) broken ??= `"${node.name}" started (seq ${start + 1}) before "${dep}" ended (${Number.isFinite(depEnd) ? `seq ${depEnd + 1}` : 'never'})`;
      }
    }
    let previous: string | undefined;
    for (const child of node.children) {
      visit(child, [...waitedFor, ...waits(child, previous)]);
      if (node.plan.kind === 'sequential') previous = child.name;
    }
  };
  visit(root, []);
  return broken;
}
