/**
 * The reference model: what weir must do with a plan, written as plainly as possible and knowing
 * nothing of how weir does it. Required failures skip dependants (and everything under a skipped
 * composite); optional ones are waited for and read as absent; a composite completes when every
 * child does; attempts follow the retry count; an answered ask costs one more attempt.
 */
import type { Named } from './plan.js';
import { digestOutput, FATAL_CODE } from './scripted.js';

/** What the model says of one step. */
export interface ExpectedStep {
  readonly status: 'completed' | 'failed' | 'skipped';
  /** Attempts recorded: 0 for a skipped step, and for composites (which have none of their own). */
  readonly attempts: number;
  /** The output of a completed step. */
  readonly output?: unknown;
  /** The error code of a failed leaf, of a skipped step, and of a failed composite (its first failed leaf's, in time: any of `codes`). */
  readonly code?: string;
  /** For a failed composite: the codes of the leaves under it that fail. */
  readonly codes?: readonly string[];
}

export interface Expected {
  readonly status: 'completed' | 'failed';
  readonly steps: ReadonlyMap<string, ExpectedStep>;
  /** The run's output, when it completes. */
  readonly output?: unknown;
  /** Leaves that fail, with no `allowFailure` on the way up: the run's error names one of them (the first to fail in time). */
  readonly failedLeaves: ReadonlySet<string>;
}

/** The value the test answers every ask with in an interactive run. */
export const ANSWER = { n: 7 } as const;

/** What a run of `root` with `input` in `mode` ends as. */
export function expectedRun(root: Named, input: unknown, mode: 'batch' | 'interactive'): Expected {
  const steps = new Map<string, ExpectedStep>();
  const failedLeaves = new Set<string>();
  const skip = (node: Named): void => {
    steps.set(node.name, { status: 'skipped', attempts: 0, code: 'WEIR_UPSTREAM_FAILED' });
    node.children.forEach(skip);
  };
  const leaf = (node: Named, stepInput: unknown, deps: Record<string, unknown>): ExpectedStep => {
    if (node.plan.kind !== 'leaf') throw new Error('not a leaf');
    const { behaviour: b, retries } = node.plan;
    const done = (attempts: number, answer: unknown = null): ExpectedStep => ({ status: 'completed', attempts, output: digestOutput(node.name, stepInput, deps, answer) });
    const failed = (attempts: number, code: string): ExpectedStep => ({ status: 'failed', attempts, code });
    switch (b.kind) {
      case 'ok':
        return done(1);
      case 'fatal':
        return failed(1, FATAL_CODE);
      case 'flaky':
        return b.failures <= retries ? done(b.failures + 1) : failed(retries + 1, 'WEIR_RETRYABLE');
      case 'timeout':
        return failed(retries + 1, 'WEIR_TIMEOUT');
      case 'ask':
        if (mode === 'interactive') return done(2, ANSWER);
        return b.fallback === null ? failed(1, 'WEIR_INPUT_REQUIRED') : done(1, { n: b.fallback });
    }
  };
  const visit = (node: Named, stepInput: unknown, deps: Record<string, unknown>, tolerated: boolean): ExpectedStep => {
    let result: ExpectedStep;
    if (node.plan.kind === 'leaf') {
      result = leaf(node, stepInput, deps);
      if (result.status === 'failed' && !tolerated && node.plan.allowFailure !== true) failedLeaves.add(node.name);
    } else {
      const sequential = node.plan.kind === 'sequential';
      const outputs: Record<string, unknown> = {};
      const statuses = new Map<string, ExpectedStep>();
      let previous: string | undefined;
      for (const child of node.children) {
        const required = previous === undefined ? child.required : [previous, ...child.required];
        const childInput = previous === undefined ? stepInput : statuses.get(previous)!.output;
        previous = sequential ? child.name : undefined;
        if (required.some((r) => statuses.get(r)!.status !== 'completed')) {
          skip(child);
          statuses.set(child.name, steps.get(child.name)!);
          continue;
        }
        const childDeps: Record<string, unknown> = {};
        for (const dep of [...required, ...child.optional]) {
          const s = statuses.get(dep)!;
          if (s.status === 'completed') childDeps[dep] = s.output;
        }
        const s = visit(child, childInput, childDeps, node === root ? false : tolerated || node.plan.allowFailure === true);
        statuses.set(child.name, s);
        if (s.status === 'completed') outputs[child.name] = s.output;
      }
      const failing = node.children.filter((c) => statuses.get(c.name)!.status === 'failed' && c.plan.allowFailure !== true).map((c) => statuses.get(c.name)!);
      const complete = failing.length === 0;
      const codes = failing.flatMap((s) => s.codes ?? [s.code!]);
      result = complete ? { status: 'completed', attempts: 0, output: outputs } : { status: 'failed', attempts: 0, codes };
    }
    steps.set(node.name, result);
    return result;
  };
  const run = visit(root, input, {}, false);
  return { status: run.status === 'completed' ? 'completed' : 'failed', steps, failedLeaves, ...(run.status === 'completed' ? { output: run.output } : {}) };
}
