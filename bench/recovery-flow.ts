/** The short chain the recovery benchmark starts, kills and recovers: shared by the bench and its child. */
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { Flow, Processor } from '../src/index.js';

export const RUNS = 100;
export const CHAIN_STEPS = 5;
/** How long each step sleeps, in ms, so runs are midway when the child is killed. */
export const STEP_MS = 40;

const N = z.object({ n: z.number() });

/** Adds 1 after a short sleep. */
export class SlowInc extends Processor<typeof N, typeof N> {
  readonly input = N;
  readonly output = N;
  async process(input: z.infer<typeof N>): Promise<z.infer<typeof N>> {
    await sleep(STEP_MS);
    return { n: input.n + 1 };
  }
}

export function recoveryChain(): Flow<unknown, Record<string, unknown>> {
  const chain = Flow.sequential('recovery-chain');
  for (let i = 0; i < CHAIN_STEPS; i++) new Flow(new SlowInc(), { name: `s${i}` }).registerTo(chain);
  return chain;
}
