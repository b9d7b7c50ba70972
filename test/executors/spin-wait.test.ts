import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import { afterEach, describe, expect, it } from 'vitest';
import { Flow, FlowContext } from '../../src/index.js';
import { SpinGate } from '../../src/executors/spin-wait.js';
import { WaitName } from '../fixtures/remote.js';

interface Answer {
  readonly recognised: boolean;
  readonly spun: number;
  readonly timedOut?: string;
  readonly notEqual?: string;
  readonly bigTimedOut?: string;
}

const worker = fileURLToPath(new URL('./fixtures/spin-worker.mjs', import.meta.url));
let pool: Piscina | undefined;
let ctx: FlowContext | undefined;
afterEach(async () => {
  await pool?.destroy();
  await ctx?.close();
  pool = undefined;
  ctx = undefined;
});

/**
 * A one-thread Piscina pool whose thread spins `micros` behind a gate set to `open`: runs `tasks`
 * tasks in turn, each posted as soon as the last answers, or fewer once one answers that a spin took it.
 */
async function chainOn(micros: number, open: 0 | 1, tasks: number, others = false): Promise<Answer> {
  const gate = new Int32Array(new SharedArrayBuffer(4));
  gate[0] = open;
  pool = new Piscina({ filename: worker, minThreads: 1, maxThreads: 1, workerData: { micros, gate } });
  let answer = (await pool.run({ others })) as Answer;
  for (let i = 1; i < tasks && answer.spun === 0; i++) answer = (await pool.run({ others })) as Answer;
  return answer;
}

describe('a thread spinning for its next task', () => {
  it("recognises Piscina's wait, and takes a task that comes within its spin without sleeping", async () => {
    // A millisecond: once both sides run warm, the next task comes well within it.
    const answer = await chainOn(1000, 1, 2000);
    expect(answer.recognised).toBe(true);
    expect(answer.spun).toBeGreaterThan(0);
  });

  it('sleeps at once while the gate is closed', async () => {
    const answer = await chainOn(1000, 0, 100);
    expect(answer.recognised).toBe(true);
    expect(answer.spun).toBe(0);
  });

  it("leaves other callers' waits as they were", async () => {
    const answer = await chainOn(1000, 1, 1, true);
    expect(answer).toMatchObject({ timedOut: 'timed-out', notEqual: 'not-equal', bigTimedOut: 'timed-out' });
  });

  it("is on in weir's threads by default, and threads.spinMicros: 0 turns it off", async () => {
    ctx = new FlowContext({ threads: { max: 1 } });
    const on = await ctx.run(new Flow(new WaitName(), { name: 'on', type: 'thread' }), null);
    expect(on.output).toBe('spinThenWait');
    await ctx.close();
    ctx = new FlowContext({ threads: { max: 1, spinMicros: 0 } });
    const off = await ctx.run(new Flow(new WaitName(), { name: 'off', type: 'thread' }), null);
    expect(off.output).toBe('wait');
  });
});

describe('the spin gate', () => {
  it('opens while tasks running leave a core to the main thread and none waits, and closes otherwise', () => {
    const gate = new SpinGate(4);
    const states: number[] = [];
    for (const [running, waiting] of [[1, 0], [3, 0], [4, 0], [2, 0], [2, 5], [0, 0]] as const) {
      gate.update(running, waiting);
      states.push(Atomics.load(gate.cells, 0));
    }
    expect(states).toEqual([1, 1, 0, 1, 0, 1]);
  });

  it('lets one task spin on a machine of one or two cores', () => {
    for (const cores of [1, 2]) {
      const gate = new SpinGate(cores);
      gate.update(1, 0);
      expect(Atomics.load(gate.cells, 0)).toBe(1);
      gate.update(2, 0);
      expect(Atomics.load(gate.cells, 0)).toBe(0);
    }
  });
});
