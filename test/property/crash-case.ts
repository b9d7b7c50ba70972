/** What the crash-point test hands its child processes: a generated plan and where it lives. */
import type { CasePlan } from './plan.js';

export interface CrashCase {
  readonly plan: CasePlan;
  /** Prefixes every flow name of the plan. */
  readonly prefix: string;
  readonly input: unknown;
  readonly runId: string;
  /** The SQLite file. */
  readonly db: string;
  /** The effects file every execution of a step appends to. */
  readonly effects: string;
}

/** Where a process dies: around its `n`-th store write (before it, or once it is durable), or at the `n`-th change of the WAL file seen from outside (inside a commit, maybe tearing it). */
export interface KillPoint {
  /** Where in the process's expected writes, from 0 (the first) to 1 (past the last). */
  readonly at: number;
  readonly when: 'before' | 'after' | 'wal';
}
