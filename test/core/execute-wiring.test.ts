/** `flow.execute` without weir's entry point: this file imports only the model, never `src/index.ts`. */
import { z } from 'zod';
import { describe, expect, it } from 'vitest';
import { Flow } from '../../src/model/flow.js';
import { Processor } from '../../src/model/processor.js';

const N = z.number();
class Double extends Processor<typeof N, typeof N> {
  readonly input = N;
  readonly output = N;
  process(n: number): number {
    return n * 2;
  }
}

describe('flow.execute without the package entry', () => {
  it('refuses with WEIR_UNSUPPORTED saying how to run it, not as if a context were closed', async () => {
    const flow = new Flow(new Double(), { name: 'double' });
    await expect(flow.execute(2)).rejects.toMatchObject({ code: 'WEIR_UNSUPPORTED', message: expect.stringContaining('import Flow from "weir"') });
  });
});
