// Plain-JS processors the ESM smoke test runs on a thread and in a child process, from dist/.
import { z } from 'zod';
import { Processor } from 'weir';

const N = z.object({ n: z.number() });

export class Scale extends Processor {
  static module = import.meta.url;
  input = N;
  output = N;
  factor = 1;
  async process(input, step) {
    step.progress(1, 'scaled');
    const deps = await step.deps.getAll();
    const extra = Object.values(deps).reduce((sum, dep) => sum + dep.n, 0);
    return { n: input.n * this.factor + extra };
  }
}
