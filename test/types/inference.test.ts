import { describe, expectTypeOf, it } from 'vitest';
import { z } from 'zod';
import {
  Flow,
  FlowContext,
  Processor,
  ResultsManager,
  type CleanupOptions,
  type FlowResult,
  type ResultsKind,
  type SqliteResultsOptions,
  type Step,
} from '../../src/index.js';
// @ts-expect-error EventInput is internal: events are built by the run, never by users.
import type { EventInput } from '../../src/index.js';

const Text = z.object({ text: z.string(), lang: z.string().default('en') });
const Count = z.object({ words: z.number() });

class CountWords extends Processor<typeof Text, typeof Count> {
  readonly input = Text;
  readonly output = Count;
  async process(input: z.output<typeof Text>, _step: Step) {
    return { words: input.text.length };
  }
}

describe('types flow from the zod schemas', () => {
  it('gives process the parsed input type', () => {
    expectTypeOf<Parameters<CountWords['process']>[0]>().toEqualTypeOf<{ text: string; lang: string }>();
  });

  it('infers a Flow input and output from its processor', () => {
    const flow = new Flow(new CountWords(), { name: 'count' });
    expectTypeOf(flow).toEqualTypeOf<Flow<{ text: string; lang?: string | undefined }, { words: number }>>();
    expectTypeOf(flow.execute).parameter(0).toEqualTypeOf<{ text: string; lang?: string | undefined }>();
    expectTypeOf(flow.execute).returns.resolves.toEqualTypeOf<FlowResult<{ words: number }>>();
  });

  it('types ctx.run input and output, and deps.get by Flow', () => {
    const flow = new Flow(new CountWords(), { name: 'count' });
    const ctx = new FlowContext();
    expectTypeOf(ctx.run<{ text: string; lang?: string | undefined }, { words: number }>).toBeFunction();
    expectTypeOf(ctx.run(flow, { text: 'x' })).resolves.toHaveProperty('output').toEqualTypeOf<{ words: number } | undefined>();
    // @ts-expect-error the input must match the processor's schema
    void ctx.run(flow, { txt: 'x' }).catch(() => undefined);
    const byFlow = (step: Step) => step.deps.get(flow);
    const byName = (step: Step) => step.deps.get<string>('name');
    expectTypeOf(byFlow).returns.resolves.toEqualTypeOf<{ words: number } | undefined>();
    expectTypeOf(byName).returns.resolves.toEqualTypeOf<string | undefined>();
    void ctx.close();
  });

  it('keeps the type carriers of a flow out of its string keys', () => {
    type Keys = Extract<keyof Flow<{ a: number }, { b: string }>, string>;
    expectTypeOf<'__output'>().not.toMatchTypeOf<Keys>();
    expectTypeOf<'__input'>().not.toMatchTypeOf<Keys>();
    expectTypeOf<Keys>().toEqualTypeOf<'name' | 'type' | 'config' | 'processor' | 'isComposite' | 'parent' | 'children' | 'dependencies' | 'registerTo' | 'toMermaid' | 'execute'>();
  });

  it('types a composite output as a record of children outputs', () => {
    expectTypeOf(Flow.parallel('p')).toEqualTypeOf<Flow<unknown, Record<string, unknown>>>();
  });

  it('exports the option types of the results backends', () => {
    expectTypeOf(ResultsManager.sqlite).parameter(1).toEqualTypeOf<SqliteResultsOptions | undefined>();
    expectTypeOf<ResultsManager['cleanup']>().parameter(0).toEqualTypeOf<CleanupOptions>();
    expectTypeOf<ResultsManager['kind']>().toEqualTypeOf<ResultsKind>();
    expectTypeOf<EventInput>().toBeAny();
  });
});
