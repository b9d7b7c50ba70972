// Plain-JS processors the CommonJS smoke test runs on a thread and in a child process, from dist/.
const { z } = require('zod');
const { Processor } = require('weir');

const N = z.object({ n: z.number() });

class Scale extends Processor {
  static module = __filename;
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

module.exports = { Scale };
