/**
 * What a store-fault case runs and records, in the test or in a child process: its generated flow
 * (plain data, so a child can run the same case), the effects log that counts executions across
 * contexts and processes, and the events a listener heard that the store must have.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import type { AnyFlow, FlowContext, WeirEvent } from '../../src/index.js';
import { ANSWER, expectedRun, type Expected } from '../property/model.js';
import { buildFlow, casePlan, leavesOf, nameTree, type CasePlan, type CompositePlan, type Named, type NodePlan } from '../property/plan.js';
import { Scripted, type Effect } from '../property/scripted.js';

/** The error codes a run may fail with because of its store, when the model says it completes. */
export const STORE_CODES = ['WEIR_STORE'] as const;

/**
 * Generated plans for fault cases: batch mode (a fifth interactive with `interactive`); inline
 * leaves, with one on a thread in a twentieth of the cases unless `threads` is false (a thread pool
 * costs a context seconds to start); in half the cases no step fails for good, so most of those runs
 * complete. A flaky step fails at most as often as it has retries, so it completes, after a fault
 * too, and the model says the same of a resumed run as of a fresh one. Every edge is required and no
 * failure is allowed: a step that a fault fails then holds back its dependants, which run once the
 * run goes on, so every output is the model's (an optional one would be read as absent).
 */
export function faultPlan(options: { readonly threads?: boolean; readonly interactive?: boolean } = {}): fc.Arbitrary<CasePlan> {
  const inline = casePlan({ executors: ['inline'] });
  const plans = options.threads === false ? inline : fc.oneof({ weight: 19, arbitrary: inline }, { weight: 1, arbitrary: casePlan({ executors: ['inline', 'thread'] }) });
  const mode = options.interactive === true ? fc.constantFrom<CasePlan['mode']>('batch', 'batch', 'batch', 'batch', 'interactive') : fc.constant('batch' as const);
  return fc.tuple(plans, fc.boolean(), mode).map(([plan, clean, m]) => ({ mode: m, root: tame(plan.root, clean, { threads: 1 }) as CompositePlan }));
}

function tame(node: NodePlan, clean: boolean, left: { threads: number }): NodePlan {
  // Only required edges, and no failure allowed: a step a fault fails must hold back what reads its output, as the model's failures do.
  const plan = { ...node, edges: node.edges.map((edge) => ({ ...edge, kind: 'required' as const })), allowFailure: false };
  if (plan.kind !== 'leaf') return { ...plan, children: plan.children.map((child) => tame(child, clean, left)) };
  // One thread step at most: each thread a context starts costs it about a second.
  const leaf = { ...plan, executor: plan.executor === 'thread' && left.threads-- <= 0 ? 'inline' : plan.executor };
  const b = leaf.behaviour;
  if (b.kind === 'flaky' && b.failures > leaf.retries) return { ...leaf, behaviour: { kind: 'flaky', failures: leaf.retries } };
  if (clean && (b.kind === 'fatal' || b.kind === 'timeout')) return { ...leaf, behaviour: { kind: 'ok' } };
  if (clean && b.kind === 'ask' && b.fallback === null) return { ...leaf, behaviour: { kind: 'ask', fallback: 0 } };
  return leaf;
}

/** One case's flow, its run and what the model says of it. */
export interface Prepared {
  readonly root: Named;
  readonly mode: CasePlan['mode'];
  readonly flow: AnyFlow;
  readonly runId: string;
  readonly input: unknown;
  readonly expected: Expected;
  /** The effects log: a line as each attempt starts and as it returns. */
  readonly effects: string;
}

/** Names a plan's flow after `prefix`, builds it with every processor writing to one effects log in `dir`. */
export function prepare(plan: CasePlan, dir: string, prefix: string): Prepared {
  const root = nameTree(plan.root, prefix);
  const flow = buildFlow(root);
  const effects = join(dir, `${prefix}effects`);
  // Made if missing, kept if there: a child process running the case appends to the parent's.
  writeFileSync(effects, '', { flag: 'a' });
  const visit = (f: AnyFlow): void => {
    if (f.processor instanceof Scripted) f.processor.effects = effects;
    f.children.forEach(visit);
  };
  visit(flow);
  const input = { case: prefix };
  return { root, mode: plan.mode, flow, runId: `${prefix}run`, input, expected: expectedRun(root, input, plan.mode), effects };
}

/** The attempts started, by step name in order, from the `from`-th on. */
export function executions(prepared: Prepared, from = 0): string[] {
  const lines = readFileSync(prepared.effects, 'utf8').split('\n').filter(Boolean);
  return lines.map((line) => JSON.parse(line) as Effect).filter((e) => e.phase === 'start').map((e) => e.step).slice(from);
}

/** Events a listener must never hear unless the store has them: a leaf's completion (it goes with its output) and the run's end. */
const HELD = new Set(['step_complete', 'run_complete', 'run_failed', 'run_cancelled']);

/**
 * Keeps the held events of the prepared run that `ctx` delivers live. A composite's `step_complete`
 * is not held (its output is its children's, stored already): it is delivered at once, like a
 * `step_start`, and a store that fails from then on never gets it.
 */
export function heldEvents(ctx: FlowContext, prepared: Prepared): WeirEvent[] {
  const held: WeirEvent[] = [];
  const leaves = new Set(leavesOf(prepared.root).map((leaf) => leaf.name));
  for (const type of HELD) {
    ctx.on(type as 'step_complete', (e: WeirEvent) => {
      if (e.runId === prepared.runId && (e.type !== 'step_complete' || leaves.has(stepOf(e)!))) held.push(e);
    });
  }
  return held;
}

/** The step an event is about, if any. */
export function stepOf(e: WeirEvent): string | undefined {
  return 'step' in e && typeof e.step === 'string' ? e.step : undefined;
}

/**
 * Answers every ask of the prepared run that `ctx` reports with the model's answer, as a person
 * would: each `input_required`, and each wait a `run_waiting` lists that no `input_required` of
 * this context announced (a resumed run whose step still waits says so with `run_waiting` only: the
 * step asked in an earlier context). An answer the store refuses is given again a few times. Each
 * refusal is kept in `refused`.
 * @returns what stops answering.
 */
export function answerAsks(ctx: FlowContext, prepared: Prepared, refused: unknown[]): () => void {
  const announced = new Set<string>();
  const answer = (key: string, left = 5): void => {
    ctx.submitInput(prepared.runId, key, ANSWER).catch((error: unknown) => {
      refused.push(error);
      if (left > 1 && (error as { code?: unknown }).code === 'WEIR_STORE') setTimeout(() => answer(key, left - 1), 5);
    });
  };
  const asked = (e: WeirEvent): void => {
    if (e.runId !== prepared.runId || e.type !== 'input_required') return;
    announced.add(e.key);
    answer(e.key);
  };
  const waiting = (e: WeirEvent): void => {
    if (e.runId !== prepared.runId || e.type !== 'run_waiting') return;
    for (const { key } of e.waitingFor) {
      if (announced.has(key)) continue;
      announced.add(key);
      answer(key);
    }
  };
  ctx.on('input_required', asked);
  ctx.on('run_waiting', waiting);
  return () => {
    ctx.off('input_required', asked);
    ctx.off('run_waiting', waiting);
  };
}
