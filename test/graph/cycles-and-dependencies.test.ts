import { afterEach, describe, expect, it } from 'vitest';
import { CycleError, DependencyError, Flow, FlowContext } from '../../src/index.js';
import { AddOne } from '../fixtures/processors.js';

const leaf = (name: string) => new Flow(new AddOne(), { name });

let ctx: FlowContext | undefined;
afterEach(async () => {
  await ctx?.close();
  ctx = undefined;
});

function caught(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  throw new Error('expected a throw');
}

describe('cycle detection and dependency resolution', () => {
  it('throws a CycleError naming the flows in order when a forward name closes a cycle', () => {
    const p = Flow.parallel('p');
    leaf('a').registerTo(p, { optional: ['c'] });
    leaf('b').registerTo(p, { required: ['a'] });
    const error = caught(() => leaf('c').registerTo(p, { required: ['b'] }));
    expect(error).toBeInstanceOf(CycleError);
    expect((error as CycleError).code).toBe('WEIR_CYCLE');
    expect((error as CycleError).cycle).toEqual(['c', 'b', 'a', 'c']);
    expect((error as CycleError).message).toContain('c -> b -> a -> c');
    expect(p.children.map((f) => f.name)).toEqual(['a', 'b']);
  });

  it('throws a CycleError for a flow that depends on itself', () => {
    const p = Flow.parallel('p');
    const error = caught(() => leaf('a').registerTo(p, { required: ['a'] }));
    expect(error).toBeInstanceOf(CycleError);
    expect((error as CycleError).cycle).toEqual(['a', 'a']);
  });

  it('sees the implicit order of a sequential composite when checking cycles', () => {
    const s = Flow.sequential('s');
    leaf('first').registerTo(s, { optional: ['second'] });
    const error = caught(() => leaf('second').registerTo(s));
    expect((error as CycleError).cycle).toEqual(['second', 'first', 'second']);
  });

  it('leaves the graph usable after a refused registration', async () => {
    ctx = new FlowContext();
    const p = Flow.parallel('p');
    const a = leaf('a').registerTo(p, { optional: ['b'] });
    expect(() => leaf('b').registerTo(p, { required: [a] })).toThrow(CycleError);
    leaf('b').registerTo(p);
    const result = await ctx.run(p, { n: 1 });
    expect(result.status).toBe('completed');
  });

  it('throws a DependencyError naming an unknown required dependency', () => {
    ctx = new FlowContext();
    const p = Flow.parallel('p');
    leaf('report').registerTo(p, { required: ['enrich'] });
    const error = caught(() => ctx!.register(p));
    expect(error).toBeInstanceOf(DependencyError);
    expect((error as DependencyError).code).toBe('WEIR_DEPENDENCY');
    expect((error as DependencyError).dependency).toBe('enrich');
    expect((error as DependencyError).message).toContain('"enrich"');
    expect(() => ctx!.start(p, { n: 1 })).toThrow(DependencyError);
  });

  it('throws a DependencyError for a dependency registered under another composite', () => {
    const p = Flow.parallel('p');
    const q = Flow.parallel('q');
    const other = leaf('other').registerTo(q);
    const error = caught(() => leaf('mine').registerTo(p, { required: [other] }));
    expect(error).toBeInstanceOf(DependencyError);
    expect((error as DependencyError).message).toMatch(/registered to "q", not to "p"/);
  });

  it('throws a DependencyError for a name listed as both required and optional', () => {
    const p = Flow.parallel('p');
    leaf('a').registerTo(p);
    expect(() => leaf('b').registerTo(p, { required: ['a'], optional: ['a'] })).toThrow(DependencyError);
  });
});
