/**
 * The flow the failover tests run on several worker processes sharing one Postgres database: a
 * chain of steps, each inserting a row into the test's `effects` table (its side effect) before
 * it returns the id of that execution, so the test can tell which execution each stored output
 * came from and which ran and never completed.
 */
import { z } from 'zod';
import type { Pool } from 'pg';
import { Flow, Processor } from '../../src/index.js';

export const Exec = z.object({ i: z.number(), execs: z.array(z.string()) });
export type Exec = z.infer<typeof Exec>;

export const stepName = (i: number): string => `s${String(i).padStart(2, '0')}`;

/** Records its execution in `effects`, then hands the list of executions on. */
export class EffectStep extends Processor<typeof Exec, typeof Exec> {
  readonly input = Exec;
  readonly output = Exec;
  static count = 0;
  readonly #i: number;
  readonly #pool: Pool;
  readonly #sleep: number;
  constructor(i: number, pool: Pool, sleep: number) {
    super();
    this.#i = i;
    this.#pool = pool;
    this.#sleep = sleep;
  }
  async process(input: Exec, step: { readonly runId: string }): Promise<Exec> {
    const exec = `${process.pid}:${++EffectStep.count}`;
    await this.#pool.query('INSERT INTO effects (run_id, step, exec, pid) VALUES ($1, $2, $3, $4)', [step.runId, stepName(this.#i), exec, process.pid]);
    if (this.#sleep > 0) await new Promise((resolve) => setTimeout(resolve, this.#sleep));
    return { i: this.#i, execs: [...input.execs, exec] };
  }
}

/** The chain of `steps` effect steps, named `failover`. */
export function failoverChain(pool: Pool, steps: number, sleep: number): Flow<Exec, Record<string, Exec>> {
  const chain = Flow.sequential<Exec, Record<string, Exec>>('failover');
  for (let i = 1; i <= steps; i++) new Flow(new EffectStep(i, pool, sleep), { name: stepName(i) }).registerTo(chain);
  return chain;
}

/** The table of side effects, made by the test before any worker starts. */
export const EFFECTS_TABLE = 'CREATE TABLE IF NOT EXISTS effects (run_id text NOT NULL, step text NOT NULL, exec text NOT NULL, pid integer NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())';
