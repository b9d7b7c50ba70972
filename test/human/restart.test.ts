import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { RunWaitingEvent } from '../../src/index.js';
import { approvalFlow } from '../fixtures/approval-flow.js';
import { sqliteContexts } from '../fixtures/sqlite-contexts.js';

const temp = sqliteContexts('hitl-restart');
const program = resolve(import.meta.dirname, '../fixtures/programs/approval-child.ts');
const children: ChildProcess[] = [];
afterEach(() => {
  for (const child of children.splice(0)) child.kill('SIGKILL');
});

/** Starts the child, waits until its run waits for input, then kills it with SIGKILL. */
async function waitThenKill(log: string, runId: string, timeout = 0): Promise<RunWaitingEvent> {
  const child = spawn(process.execPath, ['--import', 'tsx', program, temp.file(), log, runId, String(timeout)], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  const event = await new Promise<RunWaitingEvent>((resolvePromise, reject) => {
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const line = /^waiting (.*)$/m.exec(out);
      if (line !== null) resolvePromise(JSON.parse(line[1]!) as RunWaitingEvent);
    });
    child.once('exit', (code) => reject(new Error(`child exited (${code}) before its run waited: ${out}`)));
  });
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await exited;
  return event;
}

const calls = (log: string): string[] => readFileSync(log, 'utf8').trim().split('\n');

describe('waits survive a kill -9', () => {
  it('a new process lists the run as waiting, leaves it waiting on recover(), and goes on with it once answered; earlier steps do not run again', async () => {
    const log = join(temp.dir(), 'calls.log');
    const waited = await waitThenKill(log, 'order-9');
    expect(waited.waitingFor).toEqual([{ step: 'approve', key: 'approval' }]);

    const ctx = temp.context().register(approvalFlow(log));
    const { runs } = await ctx.listRuns({ status: 'waiting' });
    expect(runs).toHaveLength(1);
    expect(runs[0]).toMatchObject({ runId: 'order-9', status: 'waiting', stale: false, humanInLoop: true });
    expect(runs[0]!.waitingFor).toEqual([expect.objectContaining({ step: 'approve', key: 'approval', hasDefault: false, schema: expect.objectContaining({ type: 'object' }) })]);
    // Not stale: its lease is not needed while it waits, and recovery leaves it waiting.
    expect((await ctx.listRuns({ stale: true })).runs).toEqual([]);
    expect(await ctx.recover()).toEqual([]);
    expect((await ctx.getRun('order-9')).status).toBe('waiting');

    await expect(ctx.submitInput('order-9', 'approval', { approved: 'yes' })).rejects.toMatchObject({ code: 'WEIR_VALIDATION' });
    await ctx.submitInput('order-9', 'approval', { approved: true, by: 'ana' });
    const result = await (await ctx.handle('order-9')).result();
    expect(result.status).toBe('completed');
    expect(result.output).toMatchObject({ approve: { order: 'A-9', approved: true, by: 'ana' }, ship: { shipped: true, by: 'ana' } });
    const ran = calls(log).map((line) => line.split('@')[0]);
    // prepare ran once (in the killed child); approve once there and once here; ship only here.
    expect(ran).toEqual(['prepare', 'approve', 'approve', 'ship']);
    expect(calls(log).at(-1)).toBe(`ship@${process.pid}`);
    // Events stayed dense across the kill and the restart.
    const seqs: number[] = [];
    for await (const e of ctx.events('order-9')) seqs.push(e.seq);
    expect(seqs).toEqual(seqs.map((_s, i) => i + 1));
  });

  it("a wait's timeout keeps counting across the restart: the new process applies the default at the original deadline", async () => {
    const log = join(temp.dir(), 'calls.log');
    const timeout = 2500;
    const waited = await waitThenKill(log, 'order-10', timeout);
    const deadline = waited.waitingFor[0]!.deadline!;
    expect(deadline).toBeGreaterThan(Date.now());
    // A new process that recovers by itself: it finds the waiting run and looks at it again when its deadline is due.
    const ctx = temp.context({ recover: true }).register(approvalFlow(log, { timeout, default: { approved: false, by: 'nobody' } }));
    const opened = Date.now();
    const result = await (await ctx.handle('order-10')).result();
    const ended = result.endTime;
    expect(result.status).toBe('completed');
    expect(result.output).toMatchObject({ ship: { shipped: false, by: 'nobody' } });
    // It ended at the deadline set before the kill, not a full timeout after the restart.
    expect(ended).toBeGreaterThanOrEqual(deadline);
    expect(ended - opened).toBeLessThan(timeout);
  });
});
