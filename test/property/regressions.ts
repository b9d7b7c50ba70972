/** Minimal cases the generators found (shrunk by fast-check), each kept with what it broke. */
import type { CasePlan } from './plan.js';

export interface Regression {
  readonly why: string;
  readonly store: 'memory' | 'sqlite';
  readonly plan: CasePlan;
}

export const REGRESSIONS: readonly Regression[] = [];
