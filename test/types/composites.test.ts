import { describe, expectTypeOf, it } from 'vitest';
import { z } from 'zod';
import { Flow, FlowContext, Processor, type FlowResult, type RunHandle, type Step } from '../../src/index.js';

// Nothing here runs: the functions only carry the types the compiler checks.

const Total = z.object({ total: z.number() });
type Total = z.infer<typeof Total>;
const Text = z.object({ text: z.string() });
type Text = z.infer<typeof Text>;
const Count = z.object({ words: z.number() });
type Count = z.infer<typeof Count>;

class Add extends Processor<typeof Total, typeof Total> {
  readonly input = Total;
  readonly output = Total;
  process(input: Total) {
    return { total: input.total + 1 };
  }
}

class CountWords extends Processor<typeof Text, typeof Count> {
  readonly input = Text;
  readonly output = Count;
  process(input: Text) {
    return { words: input.text.split(' ').length };
  }
}

type Ingest = { count: Count; fan: Record<string, Count> };

describe('composite types', () => {
  it('types an undeclared composite as unknown input and a record of unknown outputs', () => {
    expectTypeOf(Flow.parallel('p')).toEqualTypeOf<Flow<unknown, Record<string, unknown>>>();
    expectTypeOf(Flow.sequential('s', { retry: 2 })).toEqualTypeOf<Flow<unknown, Record<string, unknown>>>();
    const run = (ctx: FlowContext) => ctx.run(Flow.parallel('p'), 42);
    expectTypeOf(run).returns.resolves.toEqualTypeOf<FlowResult<Record<string, unknown>>>();
  });

  it('takes the input and output of a composite as type arguments', () => {
    const pipeline = Flow.sequential<Total, Record<string, Total>>('pipeline');
    expectTypeOf(pipeline).toEqualTypeOf<Flow<Total, Record<string, Total>>>();
    const ingest = Flow.parallel<Text, Ingest>('ingest');
    expectTypeOf(ingest).toEqualTypeOf<Flow<Text, Ingest>>();
  });

  it('takes them from the type a composite is assigned to', () => {
    const pipeline = (): Flow<Total, Record<string, Total>> => Flow.sequential('pipeline');
    expectTypeOf(pipeline).returns.toEqualTypeOf<Flow<Total, Record<string, Total>>>();
  });

  it('refuses an output that is not an object, since it holds the children by name', () => {
    // @ts-expect-error a composite's output is an object of its children's outputs
    void Flow.parallel<unknown, number>;
  });

  it('keeps the declared types through registerTo, so a typed composite nests', () => {
    const root = Flow.sequential<Text, Ingest>('root');
    const fan = Flow.parallel<Text, Record<string, Count>>('fan').registerTo(root);
    const count = new Flow(new CountWords(), { name: 'count' }).registerTo(root);
    expectTypeOf(fan).toEqualTypeOf<Flow<Text, Record<string, Count>>>();
    expectTypeOf(count).toEqualTypeOf<Flow<Text, Count>>();
  });

  it('types ctx.run, ctx.start and flow.execute of a typed composite, and checks their input', () => {
    const pipeline = Flow.sequential<Total, Record<string, Total>>('pipeline');
    new Flow(new Add(), { name: 'one' }).registerTo(pipeline);
    const run = (ctx: FlowContext) => ctx.run(pipeline, { total: 0 });
    const start = (ctx: FlowContext) => ctx.start(pipeline, { total: 0 });
    const execute = () => pipeline.execute({ total: 0 });
    expectTypeOf(run).returns.resolves.toEqualTypeOf<FlowResult<Record<string, Total>>>();
    expectTypeOf(start).returns.toEqualTypeOf<RunHandle<Record<string, Total>>>();
    expectTypeOf(execute).returns.resolves.toEqualTypeOf<FlowResult<Record<string, Total>>>();
    // With noUncheckedIndexedAccess a child's output may be absent, as it is after a failure.
    const last = (result: FlowResult<Record<string, Total>>) => result.output?.one;
    expectTypeOf(last).returns.toEqualTypeOf<Total | undefined>();
    // @ts-expect-error the input must be a Total
    const wrong = (ctx: FlowContext) => ctx.run(pipeline, { total: 'zero' });
    void wrong;
    // @ts-expect-error the input must be a Total
    const wrongExecute = () => pipeline.execute('zero');
    void wrongExecute;
  });

  it('types step.deps.get of a typed composite from its output', () => {
    const fan = Flow.parallel<Text, Record<string, Count>>('fan');
    const read = (step: Step) => step.deps.get(fan);
    expectTypeOf(read).returns.resolves.toEqualTypeOf<Record<string, Count> | undefined>();
  });
});

describe('ctx.handle types', () => {
  it('types the handle from the flow it is given', () => {
    const pipeline = Flow.sequential<Total, Record<string, Total>>('pipeline');
    const leaf = new Flow(new CountWords(), { name: 'count' });
    const ofPipeline = (ctx: FlowContext) => ctx.handle('order-42', pipeline);
    const ofLeaf = (ctx: FlowContext) => ctx.handle('order-43', leaf);
    expectTypeOf(ofPipeline).returns.resolves.toEqualTypeOf<RunHandle<Record<string, Total>>>();
    expectTypeOf(ofLeaf).returns.resolves.toEqualTypeOf<RunHandle<Count>>();
    const output = async (ctx: FlowContext) => (await (await ctx.handle('order-42', pipeline)).result()).output;
    expectTypeOf(output).returns.resolves.toEqualTypeOf<Record<string, Total> | undefined>();
  });

  it('types the handle as unknown without a flow, or as the type argument given', () => {
    const untyped = (ctx: FlowContext) => ctx.handle('order-42');
    const declared = (ctx: FlowContext) => ctx.handle<Count>('order-42');
    expectTypeOf(untyped).returns.resolves.toEqualTypeOf<RunHandle>();
    expectTypeOf(declared).returns.resolves.toEqualTypeOf<RunHandle<Count>>();
  });

  it('refuses a type argument that contradicts the flow given', () => {
    const leaf = new Flow(new CountWords(), { name: 'count' });
    // @ts-expect-error the flow's output is a Count, not a string
    const contradicting = (ctx: FlowContext) => ctx.handle<string>('order-43', leaf);
    void contradicting;
  });
});
