// The chain the cold-start benchmark's children start, kill and recover, built on the weir they were given (the built package).
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';

type Weir = typeof import('../../src/index.js');

export const RUNS = 100;
export const CHAIN_STEPS = 5;
/** How long each step sleeps, in ms, so runs are midway when the child is killed. */
export const STEP_MS = 40;

const N = z.object({ n: z.number() });

export function coldChain(weir: Weir): ReturnType<Weir['Flow']['sequential']> {
  class SlowInc extends weir.Processor<typeof N, typeof N> {
    readonly input = N;
    readonly output = N;
    async process(input: z.infer<typeof N>): Promise<z.infer<typeof N>> {
      await sleep(STEP_MS);
      return { n: input.n + 1 };
    }
  }
  const chain = weir.Flow.sequential('cold-chain');
  for (let i = 0; i < CHAIN_STEPS; i++) new weir.Flow(new SlowInc(), { name: `s${i}` }).registerTo(chain);
  return chain;
}
