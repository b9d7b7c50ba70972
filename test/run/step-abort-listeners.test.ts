import { describe, expect, it } from 'vitest';
import { StepContext, type StepHost } from '../../src/run/step-context.js';

const host: StepHost = {
  runId: 'r1',
  dependencyOutput: () => undefined,
  progress: () => undefined,
  heartbeat: () => undefined,
  personInLoop: false,
  inputAnswer: () => undefined,
  inputAnswers: () => undefined,
  inputWait: () => undefined,
};

function step(): StepContext {
  return new StepContext(host, 0, 's', 1, new Map());
}

describe("a step's abort listeners", () => {
  it('are called once each with the reason, in the order they were added, the removed ones not at all', () => {
    const s = step();
    const calls: string[] = [];
    const listener = (name: string) => (reason: unknown) => calls.push(`${name}:${String(reason)}`);
    const [a, b, c, d] = ['a', 'b', 'c', 'd'].map(listener);
    s.onAbort(a!);
    s.onAbort(b!);
    s.onAbort(c!);
    s.offAbort(a!); // the first goes: the later ones keep their order
    s.offAbort(c!);
    s.onAbort(d!);
    s.abort('stop');
    s.abort('again');
    expect(calls).toEqual(['b:stop', 'd:stop']);
  });

  it('calls a listener added after the abort at once, and a lone listener removed before it never', () => {
    const s = step();
    const calls: unknown[] = [];
    const lone = (reason: unknown) => calls.push(['lone', reason]);
    s.onAbort(lone);
    s.offAbort(lone);
    s.abort('late');
    expect(calls).toEqual([]);
    s.onAbort((reason) => calls.push(['after', reason]));
    expect(calls).toEqual([['after', 'late']]);
    expect(s.aborted).toBe(true);
    expect(s.signal.aborted).toBe(true);
    expect(s.signal.reason).toBe('late');
  });
});
