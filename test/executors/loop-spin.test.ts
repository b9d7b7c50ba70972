import { performance } from 'node:perf_hooks';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Flow, FlowContext } from '../../src/index.js';
import { LoopSpin, loopSpinTurns } from '../../src/executors/loop-spin.js';
import { setRealImmediate, setRealTimer } from '../../src/util/clock.js';
import { SpinTurns } from '../fixtures/remote.js';

let ctx: FlowContext | undefined;
afterEach(async () => {
  vi.useRealTimers();
  await ctx?.close();
  ctx = undefined;
});

const realDelay = (ms: number) => new Promise<void>((resolve) => setRealTimer(resolve, ms));

/** How long, in ms, this thread's event loop was busy over `ms` of real time after `start()`. */
async function busyOver(ms: number, start: () => void): Promise<number> {
  const before = performance.eventLoopUtilization();
  start();
  await realDelay(ms);
  return performance.eventLoopUtilization(before).active;
}

describe('a spin of the event loop', () => {
  it('keeps the loop turning for as long as it was extended, then lets it sleep', async () => {
    const idle = await busyOver(40, () => undefined);
    const spun = await busyOver(40, () => new LoopSpin().extend(10_000));
    // Ten milliseconds of turns, where a loop left alone is busy for a fraction of one.
    expect(spun).toBeGreaterThan(idle + 5);
    expect(spun).toBeLessThan(35);
  });

  it('ends on stop(), after the turn under way', async () => {
    const spin = new LoopSpin();
    const busy = await busyOver(40, () => {
      spin.extend(1_000_000);
      setRealTimer(() => spin.stop(), 5);
    });
    expect(busy).toBeGreaterThan(3);
    expect(busy).toBeLessThan(30);
  });

  it('ends in real time under fake timers, which hold the global clock still', async () => {
    vi.useFakeTimers();
    const before = loopSpinTurns();
    new LoopSpin().extend(5_000);
    await realDelay(40);
    // A turn already due when the delay ended still runs: the spin has ended after it.
    await new Promise<void>((resolve) => setRealImmediate(resolve));
    const ended = loopSpinTurns();
    await realDelay(20);
    expect(ended).toBeGreaterThan(before);
    expect(loopSpinTurns()).toBe(ended);
  });
});

describe('a child process waiting for its next task', () => {
  /** The turns the child's spins took between two steps 20 ms apart. */
  async function turnsBetweenSteps(spinMicros: number): Promise<number> {
    ctx = new FlowContext({ processes: { max: 1, spinMicros } });
    const step = async (name: string) => (await ctx!.run(new Flow(new SpinTurns(), { name, type: 'process' }), null)).output as number;
    const before = await step('before');
    await realDelay(20);
    const after = await step('after');
    await ctx.close();
    ctx = undefined;
    return after - before;
  }

  it('keeps checking for processes.spinMicros after it answers, and sleeps at once with 0', async () => {
    // Its first turn comes for sure; how many more depends on how much CPU time the child gets meanwhile.
    expect(await turnsBetweenSteps(1000)).toBeGreaterThan(0);
    expect(await turnsBetweenSteps(0)).toBe(0);
  });
});

describe('the main thread waiting for an answer', () => {
  /** The turns this thread's spins took while a thread or process step ran. */
  async function turnsWhileStepRuns(type: 'thread' | 'process', spinMicros: number): Promise<number> {
    ctx = new FlowContext({ threads: { max: 1, spinMicros }, processes: { max: 1, spinMicros } });
    // The step takes 5 ms: an answer that came at once could be read before the loop's first turn.
    const step = () => ctx!.run(new Flow(new SpinTurns(), { name: 'step', type }), 5);
    // The first step starts the worker; the spin is for the steps that find it running.
    await step();
    const before = loopSpinTurns();
    await step();
    const turns = loopSpinTurns() - before;
    await ctx.close();
    ctx = undefined;
    return turns;
  }

  it.each(['thread', 'process'] as const)('keeps its loop turning while a %s step runs, and not with spinMicros: 0', async (type) => {
    expect(await turnsWhileStepRuns(type, 1000)).toBeGreaterThan(0);
    expect(await turnsWhileStepRuns(type, 0)).toBe(0);
  });
});
