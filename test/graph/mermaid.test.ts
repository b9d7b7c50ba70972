/** flow.toMermaid(): composites as subgraphs, dependencies told apart, order shown, a run coloured by status. */
import { describe, expect, it } from 'vitest';
import { FatalError, Flow, FlowContext } from '../../src/index.js';
import { Fn } from '../fixtures/processors.js';

/** pipeline: fetch, then work (parse; index needs parse and may use thumb; thumb), then ship. */
function pipeline(fail?: string) {
  const step = (name: string) => new Fn(() => (name === fail ? Promise.reject(new FatalError(`${name} broke`)) : name));
  const p = Flow.sequential('pipeline');
  new Flow(step('fetch'), { name: 'fetch' }).registerTo(p);
  const work = Flow.parallel('work').registerTo(p);
  const parse = new Flow(step('parse'), { name: 'parse' }).registerTo(work);
  new Flow(step('index'), { name: 'index' }).registerTo(work, { required: [parse], optional: ['thumb'] });
  new Flow(step('thumb'), { name: 'thumb' }).registerTo(work);
  new Flow(step('ship'), { name: 'ship "it"' }).registerTo(p);
  return p;
}

describe('flow.toMermaid()', () => {
  it('draws composites as subgraphs, required dependencies solid, optional ones dashed, sequential order thick', () => {
    expect(pipeline().toMermaid()).toBe(
      [
        'flowchart TD',
        '  subgraph n0["pipeline (sequential)"]',
        '    n1["fetch"]',
        '    subgraph n2["work (parallel)"]',
        '      n3["parse"]',
        '      n4["index"]',
        '      n5["thumb"]',
        '    end',
        '    n6["ship #quot;it#quot;"]',
        '  end',
        '  n3 --> n4',
        '  n5 -.-> n4',
        '  n1 ==> n2',
        '  n2 ==> n6',
        '',
      ].join('\n'),
    );
  });

  it('draws a leaf alone, left to right when asked', () => {
    expect(new Flow(new Fn(() => 1), { name: 'solo' }).toMermaid({ direction: 'LR' })).toBe('flowchart LR\n  n0["solo"]\n');
  });

  it('colours each step of a run by its status, from a FlowResult or from getRun', async () => {
    const ctx = new FlowContext();
    try {
      const flow = pipeline('parse');
      const result = await ctx.run(flow, {});
      const text = flow.toMermaid({ run: result });
      expect(text).toContain('  classDef completed fill:#1f9d55');
      expect(text).toMatch(/ {2}class n1,n5 completed\n/);
      expect(text).toMatch(/ {2}classDef failed fill:#c53030[^\n]*\n {2}class n0,n2,n3 failed\n/);
      expect(text).toMatch(/ {2}class n4,n6 skipped\n/);
      ctx.register(flow);
      expect(flow.toMermaid({ run: await ctx.getRun(result.runId) })).toContain('class n4,n6 skipped');
    } finally {
      await ctx.close();
    }
  });
});
