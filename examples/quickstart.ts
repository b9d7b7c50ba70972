// The README's example: two typed processors, one depending on the other, run in memory.
import { z } from 'zod';
import { Flow, FlowContext, Processor } from 'weir';

const Text = z.object({ text: z.string() });
const Count = z.object({ words: z.number() });
const Report = z.object({ line: z.string() });

class CountWords extends Processor<typeof Text, typeof Count> {
  readonly input = Text;
  readonly output = Count;
  async process(input: z.infer<typeof Text>) {
    return { words: input.text.split(/\s+/).filter(Boolean).length };
  }
}

class Summarise extends Processor<typeof Text, typeof Report> {
  readonly input = Text;
  readonly output = Report;
  async process(input: z.infer<typeof Text>, step: import('weir').Step) {
    const count = await step.deps.get(countFlow);
    return { line: `"${input.text}" has ${count?.words} words` };
  }
}

const pipeline = Flow.parallel('ingest');
const countFlow = new Flow(new CountWords(), { name: 'count', retry: 3, timeout: 5_000 }).registerTo(pipeline);
new Flow(new Summarise(), { name: 'summary' }).registerTo(pipeline, { required: [countFlow] });

const ctx = new FlowContext();
const result = await ctx.run(pipeline, { text: 'a b c' });
console.log(result.status, result.output);
await ctx.close();
