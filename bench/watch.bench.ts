/**
 * Watching: replaying a finished 10,000-event run from `after: 0` out of the store, through a
 * context that did not run it, in events per second. Run alone with `node --import ./bench/loader/register.mjs bench/watch.bench.ts`.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { z } from 'zod';
import { Flow, FlowContext, Processor, ResultsManager, type Step } from '../src/index.js';
import { measure, row } from './harness.js';

const Any = z.unknown();

/** Reports progress `count` times: one event each. */
class Chatty extends Processor<typeof Any, typeof Any> {
  readonly input = Any;
  readonly output = Any;
  async process(_input: unknown, step: Step): Promise<unknown> {
    for (let i = 0; i < 9_996; i++) step.progress(i / 9_996, 'working');
    return 'done';
  }
}

export async function watchBench(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'weir-watch-bench-'));
  try {
    console.log('\n## Replaying a finished 10,000-event run from after: 0 (SQLite, another context)\n');
    row('case', 'median', 'events/s', '');
    const file = join(dir, 'watch.db');
    const writer = new FlowContext({ results: ResultsManager.sqlite(file) });
    const result = await writer.run(new Flow(new Chatty(), { name: 'chatty' }), {});
    await writer.close();
    const reader = new FlowContext({ results: ResultsManager.sqlite(file) });
    let count = 0;
    const m = await measure(
      'replay',
      async () => {
        count = 0;
        for await (const event of reader.events(result.runId)) if (event.seq > 0) count++;
      },
      { warmup: 2, runs: 7 },
    );
    await reader.close();
    row(`replay of ${count} events`, `${m.ms.toFixed(1)} ms`, ((count / m.ms) * 1000).toFixed(0), '');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await watchBench();
