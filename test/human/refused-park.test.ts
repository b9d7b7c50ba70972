import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { TEST_HOOKS } from '../../src/context/test-hooks.js';
import { ErrorCode, RetryableError } from '../../src/errors/errors.js';
import { FlowContext, ResultsManager, type FlowContextOptions, type WeirEvent } from '../../src/index.js';
import type { RunStore } from '../../src/storage/journal/run-store.js';
import { approvalFlow } from '../fixtures/approval-flow.js';
import { sqliteContexts } from '../fixtures/sqlite-contexts.js';
import { nextWaiting } from '../fixtures/waiting.js';

// A run whose park the store refuses fails with WEIR_STORE, its ask kept with the step; resumed, it
// waits again on that ask, and says so with `run_waiting` only (the ask was announced before).

const temp = sqliteContexts('refused-park');

/** `store`, refusing its first commit that parks a run (status `waiting`), as a failing backend would. */
function refusingPark(store: RunStore): RunStore {
  let refused = false;
  return new Proxy(store, {
    get(target, key, receiver) {
      const value: unknown = Reflect.get(target, key, receiver);
      if (typeof value !== 'function') return value;
      if (key !== 'commit') return (value as (...args: unknown[]) => unknown).bind(target);
      return async (batch: Parameters<RunStore['commit']>[0]) => {
        if (!refused && batch.run?.status === 'waiting') {
          refused = true;
          throw new RetryableError('run store (sqlite): commit: the disk went away', { code: ErrorCode.STORE });
        }
        return target.commit(batch);
      };
    },
  });
}

describe('a run whose park the store refuses', () => {
  it('fails with WEIR_STORE keeping the ask; resumed, it waits on it again, announced by run_waiting, and goes on once answered', async () => {
    const log = join(temp.dir(), 'calls.log');
    const first = temp.track(new FlowContext({ results: ResultsManager.sqlite(temp.file()), [TEST_HOOKS]: { wrapStore: refusingPark } } as FlowContextOptions));
    first.register(approvalFlow(log));
    const failed = await first.run(first.getFlow('approval-flow')!, { order: 'A-7' }, { mode: 'interactive' });
    expect(failed).toMatchObject({ status: 'failed', error: { code: 'WEIR_STORE', message: expect.stringMatching(/its wait for input could not be recorded/) } });
    await first.close();

    const next = temp.context().register(approvalFlow(log));
    expect(await next.getRun(failed.runId)).toMatchObject({ status: 'failed', steps: { prepare: { status: 'completed' }, approve: { status: 'waiting' } } });
    const heard: WeirEvent[] = [];
    next.on('event', (e) => heard.push(e));
    const waiting = nextWaiting(next);
    const handle = await next.resume(failed.runId);
    expect((await waiting).waitingFor).toEqual([{ step: 'approve', key: 'approval' }]);
    expect(heard.map((e) => e.type)).toEqual(['run_resumed', 'run_waiting']);
    await next.submitInput(failed.runId, 'approval', { approved: true, by: 'ana' });
    expect(await handle.result()).toMatchObject({ status: 'completed', output: { ship: { shipped: true, by: 'ana' } } });
    // The step before the ask ran once; the asking step once to ask and once with the answer.
    const calls = readFileSync(log, 'utf8').trim().split('\n').map((line) => line.split('@')[0]);
    expect(calls).toEqual(['prepare', 'approve', 'approve', 'ship']);
  });
});
