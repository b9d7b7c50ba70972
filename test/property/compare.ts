/** Compares a run's result with the reference model, step by step, for the generated-flow tests. */
import { expect } from 'vitest';
import type { FlowResult } from '../../src/index.js';
import type { Expected } from './model.js';
import type { Named } from './plan.js';

export interface ModelOptions {
  /**
   * Whether attempts may have been lost to a crash: recorded with `WEIR_OWNER_LOST` and not counted
   * by the retry policy. The counted ones are compared; a processor that fails its first N attempts
   * sees a lost one as one of them, so it may complete after fewer counted attempts than the model's.
   */
  readonly lostAttempts?: boolean;
}

/** Every step's status, attempts, output and error code, and the run's status, output and error, as the model says. */
export function expectModel(result: FlowResult, expected: Expected, root: Named, options: ModelOptions = {}): void {
  // The root is the run itself: its status and output are the run's.
  const names = [...expected.steps.keys()].filter((name) => name !== root.name);
  const actual = new Map(
    names.map((name) => {
      const s = result.steps[name];
      const recorded = s?.attempts ?? [];
      const lost = options.lostAttempts === true ? recorded.filter((a) => a.error?.code === 'WEIR_OWNER_LOST').length : 0;
      let attempts = recorded.length - lost;
      const model = expected.steps.get(name)!;
      if (lost > 0 && s?.status === 'completed' && attempts >= 1 && attempts < model.attempts) attempts = model.attempts;
      return [name, { status: s?.status, attempts, output: s?.output, code: s?.error?.code }];
    }),
  );
  const want = new Map(
    names.map((name) => {
      const s = expected.steps.get(name)!;
      // A failed composite carries its first failed leaf's error: whichever failed first in time.
      const code = s.codes === undefined ? s.code : expect.toBeOneOf([...s.codes]);
      return [name, { status: s.status, attempts: s.attempts, output: s.output, code }];
    }),
  );
  expect(actual, `the run ended ${result.status}${result.error === undefined ? '' : ` with ${result.error.code} at "${result.error.step}": ${result.error.message}`}`).toEqual(want);
  expect(result.status).toBe(expected.status);
  if (expected.status === 'completed') expect(result.output).toEqual(expected.output);
  else {
    expect(expected.failedLeaves).toContain(result.error?.step);
    expect(result.error?.code).toBe(expected.steps.get(result.error!.step!)!.code);
  }
}
