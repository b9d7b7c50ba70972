import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { Flow, FlowContext, Processor, ValidationError, fromErrorData, type Step } from '../../src/index.js';

const Text = z.object({ text: z.string() });
const Count = z.object({ words: z.number().int() });

class CountWords extends Processor<typeof Text, typeof Count> {
  readonly input = Text;
  readonly output = Count;
  calls = 0;
  async process(input: z.infer<typeof Text>, _step: Step) {
    this.calls++;
    return { words: input.text.split(/\s+/).length };
  }
}

class BadOutput extends Processor<typeof Text, typeof Count> {
  readonly input = Text;
  readonly output = Count;
  async process() {
    return { words: 'many' } as unknown as { words: number };
  }
}

let ctx: FlowContext;
afterEach(async () => {
  await ctx.close();
});

describe('processor input and output validation', () => {
  it('runs a processor with validated input and returns its validated output', async () => {
    ctx = new FlowContext();
    const result = await ctx.run(new Flow(new CountWords(), { name: 'count' }), { text: 'a b c' });
    expect(result.status).toBe('completed');
    expect(result.output).toEqual({ words: 3 });
  });

  it('fails a run with bad input before any step runs, listing the zod issues', async () => {
    ctx = new FlowContext();
    const processor = new CountWords();
    const pipeline = Flow.parallel('pipeline');
    new Flow(processor, { name: 'count' }).registerTo(pipeline);
    new Flow(new CountWords(), { name: 'count2' }).registerTo(pipeline);
    const starts: string[] = [];
    ctx.on('step_start', (e) => starts.push(e.step));

    const result = await ctx.run(pipeline, { text: 42 });

    expect(result.status).toBe('failed');
    expect(result.error?.code).toBe('WEIR_VALIDATION');
    expect(result.error?.name).toBe('ValidationError');
    expect(result.error?.issues).toEqual([expect.objectContaining({ path: ['text'], code: 'invalid_type' })]);
    expect(result.error?.message).toContain('text');
    expect(starts).toEqual([]);
    expect(processor.calls).toBe(0);
    expect(fromErrorData(result.error!)).toBeInstanceOf(ValidationError);
    // No step is left pending: the entry that refused the input failed, the others were skipped.
    expect(result.steps.count).toMatchObject({ status: 'failed', error: { code: 'WEIR_VALIDATION' } });
    expect(result.steps.count2).toMatchObject({ status: 'skipped', error: { code: 'WEIR_UPSTREAM_FAILED', details: { upstream: 'count' } } });
  });

  it('fails the step whose output does not match its schema, with the issues', async () => {
    ctx = new FlowContext();
    const result = await ctx.run(new Flow(new BadOutput(), { name: 'bad' }), { text: 'x' });
    expect(result.status).toBe('failed');
    expect(result.error).toMatchObject({ code: 'WEIR_VALIDATION', step: 'bad', retryable: false });
    expect(result.error?.message).toContain('output');
    expect(result.error?.issues?.[0]?.path).toEqual(['words']);
    expect(result.steps.bad?.status).toBe('failed');
  });

  it('passes the parsed input, with zod defaults and transforms applied', async () => {
    ctx = new FlowContext();
    const In = z.object({ text: z.string().transform((s) => s.toUpperCase()), lang: z.string().default('en') });
    const Out = z.object({ seen: z.string() });
    class Upper extends Processor<typeof In, typeof Out> {
      readonly input = In;
      readonly output = Out;
      async process(input: z.output<typeof In>) {
        return { seen: `${input.text}/${input.lang}` };
      }
    }
    const result = await ctx.run(new Flow(new Upper(), { name: 'upper' }), { text: 'hi' });
    expect(result.output).toEqual({ seen: 'HI/en' });
  });
});
