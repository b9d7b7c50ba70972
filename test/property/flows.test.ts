import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fc, it } from '@fast-check/vitest';
import { afterAll, beforeAll, describe, expect } from 'vitest';
import { FlowContext, ResultsManager, type WeirEvent } from '../../src/index.js';
import { fcParams, Tally, testTimeout } from '../support/property.js';
import { brokenEventRule } from './check-events.js';
import { expectModel } from './compare.js';
import { ANSWER, expectedRun } from './model.js';
import { buildFlow, casePlan, leavesOf, nameTree, type CasePlan } from './plan.js';
import { REGRESSIONS, type Regression } from './regressions.js';

// Random flows (composites nested to depth 4, 1–60 steps, required and optional edges, steps that
// complete, fail fatally, fail retryably, time out or ask, inline, on a thread or in a child),
// run on a memory store and on a SQLite file, must end exactly as the reference model says.

let dir: string;
const contexts: Record<'memory' | 'sqlite', FlowContext> = {} as never;
let cases = 0;
const tally = new Tally('generated flows');

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'weir-property-'));
  contexts.memory = new FlowContext();
  contexts.sqlite = new FlowContext({ results: ResultsManager.sqlite(join(dir, 'runs.db')) });
});

afterAll(async () => {
  tally.report();
  await Promise.all([contexts.memory?.close(), contexts.sqlite?.close()]);
  rmSync(dir, { recursive: true, force: true });
});

/** Runs a plan on a store and checks every step, the run, its stored record and its events against the model. */
async function checkCase(plan: CasePlan, store: 'memory' | 'sqlite'): Promise<void> {
  const ctx = contexts[store];
  const prefix = `k${++cases}.`;
  const root = nameTree(plan.root, prefix);
  const input = { case: cases };
  const expected = expectedRun(root, input, plan.mode);
  const runId = `${prefix}run`;
  const refused: unknown[] = [];
  const answer = (e: WeirEvent): void => {
    if (e.runId === runId && e.type === 'input_required') ctx.submitInput(runId, e.key, ANSWER).catch((error: unknown) => refused.push(error));
  };
  ctx.on('input_required', answer);
  let result;
  try {
    result = await ctx.start(buildFlow(root), input, { runId, mode: plan.mode }).result();
  } finally {
    ctx.off('input_required', answer);
  }

  expect(refused).toEqual([]);
  expectModel(result, expected, root);

  const stored = await ctx.getRun(runId);
  expect(stored.status).toBe(result.status);
  for (const name of [...expected.steps.keys()].filter((n) => n !== root.name)) expect({ name, status: stored.steps[name]?.status }).toEqual({ name, status: expected.steps.get(name)!.status });

  const events: WeirEvent[] = [];
  for await (const e of (await ctx.handle(runId)).events({ after: 0 })) events.push(e);
  const attempts = new Map(leavesOf(root).map((leaf) => [leaf.name, expected.steps.get(leaf.name)!.attempts]));
  expect(brokenEventRule(events, root, attempts)).toBeUndefined();
  tally.add('cases');
  tally.add(`${store} runs`);
  tally.add(`${result.status} runs`);
  for (const leaf of leavesOf(root)) {
    tally.add('steps');
    if (leaf.plan.kind === 'leaf') tally.add(`${leaf.plan.executor} steps`);
    tally.add(`${expected.steps.get(leaf.name)!.status} steps`);
  }
}

describe('generated flows against the reference model', () => {
  it.prop(
    [casePlan(), fc.constantFrom('memory' as const, 'sqlite' as const)],
    // A case that hangs fails (and shrinks) instead of timing the whole test out.
    fcParams<[CasePlan, 'memory' | 'sqlite']>(40, { timeout: 20_000, interruptAfterTimeLimit: testTimeout(100_000) }),
  )('end as the model says: steps, attempts, outputs, errors, the run, its record and its events', checkCase, testTimeout(120_000));

  // WEIR_CASE=case.json (`{ "plan": …, "store": … }`, as a counterexample prints) replays one case WEIR_REPEAT times.
  const replay = process.env.WEIR_CASE;
  if (replay !== undefined && replay !== '') {
    it(`replays the case in ${replay}`, async () => {
      const { plan, store } = JSON.parse(readFileSync(replay, 'utf8')) as Regression;
      for (let i = 0; i < Number(process.env.WEIR_REPEAT ?? 1); i++) await checkCase(plan, store);
    }, testTimeout(600_000));
  }

  for (const [i, regression] of REGRESSIONS.entries()) {
    it(`keeps the fix of a case the generator found: ${regression.why} (${i + 1})`, async () => {
      await checkCase(regression.plan, regression.store);
    });
  }
});
