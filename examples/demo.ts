// The demo: a small document pipeline on SQLite in .weir/, printing each step as it happens.
// Run it with `npm run demo`. One step fails twice before it succeeds, to show retries.
import { z } from 'zod';
import { Flow, FlowContext, Processor, ResultsManager, RetryableError, type Step, type WeirEvent } from 'weir';

const Doc = z.object({ title: z.string(), body: z.string() });
const Words = z.object({ words: z.array(z.string()) });
const Stats = z.object({ count: z.number(), unique: z.number(), longest: z.string() });
const Keywords = z.object({ keywords: z.array(z.string()) });
const Report = z.object({ report: z.string(), at: z.date() });

class Tokenise extends Processor<typeof Doc, typeof Words> {
  readonly input = Doc;
  readonly output = Words;
  async process(doc: z.infer<typeof Doc>) {
    return { words: doc.body.toLowerCase().match(/[a-z']+/g) ?? [] };
  }
}

class Measure extends Processor<typeof Doc, typeof Stats> {
  readonly input = Doc;
  readonly output = Stats;
  async process(_doc: z.infer<typeof Doc>, step: Step) {
    const { words } = (await step.deps.get(tokenise))!;
    const longest = words.reduce((a, b) => (b.length > a.length ? b : a), '');
    return { count: words.length, unique: new Set(words).size, longest };
  }
}

class PickKeywords extends Processor<typeof Doc, typeof Keywords> {
  readonly input = Doc;
  readonly output = Keywords;
  async process(_doc: z.infer<typeof Doc>, step: Step) {
    // A flaky service: the first two attempts fail with a retryable error.
    if (step.attempt < 3) throw new RetryableError(`keyword service busy (attempt ${step.attempt})`);
    const { words } = (await step.deps.get(tokenise))!;
    const counts = new Map<string, number>();
    for (const [i, word] of words.entries()) {
      if (word.length > 4) counts.set(word, (counts.get(word) ?? 0) + 1);
      step.progress((i + 1) / words.length);
    }
    return { keywords: [...counts].sort((a, b) => b[1] - a[1]).slice(0, 3).map(([w]) => w) };
  }
}

class Write extends Processor<typeof Doc, typeof Report> {
  readonly input = Doc;
  readonly output = Report;
  async process(doc: z.infer<typeof Doc>, step: Step) {
    const stats = (await step.deps.get(measure))!;
    const keywords = await step.deps.get(keywordsFlow);
    const report = `${doc.title}: ${stats.count} words (${stats.unique} unique), longest "${stats.longest}", keywords ${keywords?.keywords.join(', ') ?? 'n/a'}`;
    return { report, at: new Date() };
  }
}

const pipeline = Flow.parallel('document');
const tokenise = new Flow(new Tokenise(), { name: 'tokenise' }).registerTo(pipeline);
const measure = new Flow(new Measure(), { name: 'measure' }).registerTo(pipeline, { required: [tokenise] });
const keywordsFlow = new Flow(new PickKeywords(), {
  name: 'keywords',
  retry: { maxAttempts: 3, initialInterval: 100, jitter: 0.5 },
}).registerTo(pipeline, { required: [tokenise] });
new Flow(new Write(), { name: 'report' }).registerTo(pipeline, { required: [measure], optional: [keywordsFlow] });

const ctx = new FlowContext({ results: ResultsManager.sqlite('.weir/demo.db') });
ctx.register(pipeline);

const started = Date.now();
ctx.on('event', (event: WeirEvent) => {
  const at = `+${String(event.time - started).padStart(4)} ms`;
  const step = 'step' in event ? ` ${event.step}` : '';
  const detail =
    event.type === 'step_retry' ? `  ${event.error.message}; ${event.message}` :
    event.type === 'step_progress' ? `  ${Math.round(event.progress * 100)}%` :
    event.type === 'run_failed' ? `  ${event.error.message}` : '';
  if (event.type === 'step_progress' && event.progress < 1) return;
  console.log(`${at}  #${String(event.seq).padStart(2)} ${event.type}${step}${detail}`);
});

const result = await ctx.run(pipeline, {
  title: 'Weirs',
  body: 'A weir is a barrier across the width of a river that alters the flow characteristics of water. Weirs are used to control the flow of rivers, and a weir keeps water from being lost downstream.',
});
console.log(`\n${result.status}: ${(result.output as { report?: { report: string } }).report?.report}`);
console.log(`run ${result.runId}, results stored in .weir/demo.db`);
await ctx.close();
process.exitCode = result.status === 'completed' ? 0 : 1;
