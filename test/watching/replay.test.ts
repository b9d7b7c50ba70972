import { describe, expect, it } from 'vitest';
import { Flow, FlowContext, type WeirEvent } from '../../src/index.js';
import { deferred, Fn } from '../fixtures/processors.js';
import { sqliteContexts } from '../fixtures/sqlite-contexts.js';

const temp = sqliteContexts('watch');

const context = (): FlowContext => temp.context();

/** A chain of `n` steps, each reporting progress; the run pauses after `pauseAfter` steps until `gate` opens. */
function chain(n: number, pauseAfter: number, gate: Promise<void>) {
  const s = Flow.sequential('watched');
  for (let i = 0; i < n; i++) {
    new Flow(new Fn(async (_input, step) => {
      step.progress(0.5, `step ${i} half way`);
      if (i === pauseAfter) await gate;
      return i;
    }), { name: `s${i}` }).registerTo(s);
  }
  return s;
}

async function take(events: AsyncIterable<WeirEvent>, count: number): Promise<WeirEvent[]> {
  const seen: WeirEvent[] = [];
  for await (const event of events) {
    seen.push(event);
    if (seen.length === count) break; // dropping the iterator, as a closed connection does
  }
  return seen;
}

async function all(events: AsyncIterable<WeirEvent>): Promise<WeirEvent[]> {
  const seen: WeirEvent[] = [];
  for await (const event of events) seen.push(event);
  return seen;
}

describe('watchers', () => {
  it.each(['its handle', 'another context on the same store'])(
    'a watcher through %s that disconnects and reconnects with its last seq sees the run’s exact sequence',
    async (through) => {
      const ctx = context();
      const gate = deferred();
      const flow = chain(20, 10, gate.promise);
      ctx.register(flow);
      const handle = ctx.start(flow, {});
      const watcherCtx = through === 'its handle' ? ctx : context().register(chain(20, 10, gate.promise));
      const watch = (after: number) => (through === 'its handle' ? handle.events({ after }) : watcherCtx.events(handle.runId, { after }));

      const first = await take(watch(0), 12);
      gate.resolve(); // the run goes on while nobody watches
      await handle.result();
      const rest = await all(watch(first.at(-1)!.seq));
      const seen = [...first, ...rest];
      const stored = await all((await ctx.handle(handle.runId)).events());
      expect(seen).toEqual(stored);
      expect(seen.map((e) => e.seq)).toEqual(seen.map((_e, i) => i + 1));
      expect(seen.at(-1)?.type).toBe('run_complete');
    },
  );

  it('gives ten watchers at once the same sequence, while one of them reads slowly without slowing the run', async () => {
    const ctx = context();
    const flow = chain(30, -1, Promise.resolve());
    const handle = ctx.start(flow, {});
    const fast = Array.from({ length: 9 }, () => all(handle.events()));
    const slowSeen = 0;
    const runEnded = deferred<number>();
    void handle.result().then(() => runEnded.resolve(slowSeen));
    const slow = (async () => {
      const seen: WeirEvent[] = [];
      for await (const event of handle.events()) {
        seen.push(event);
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      return seen;
    })();
    const sequences = await Promise.all([...fast, slow]);
    for (const sequence of sequences) expect(sequence).toEqual(sequences[0]);
    expect(sequences[0].at(-1)?.type).toBe('run_complete');
    // The run ended long before the slow watcher had read it all.
    expect(await runEnded.promise).toBeLessThan(sequences[0].length);
  });
});
