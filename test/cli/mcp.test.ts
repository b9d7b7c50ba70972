/** weir/mcp: the tools over stdio, driven by the SDK's own client against `weir mcp` in a child process. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FlowContext, ResultsManager } from '../../src/index.js';
import { order } from '../fixtures/cli-flows.js';

const root = resolve(import.meta.dirname, '../..');
let dir: string;
let client: Client;

type Tool = { isError?: boolean; structuredContent?: { result?: any; error?: { code: string; message: string } } };
const call = async (name: string, args: Record<string, unknown> = {}): Promise<Tool> => (await client.callTool({ name, arguments: args })) as Tool;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'weir-mcp-'));
  const store = join(dir, 'runs.db');
  // A store with one run, made before the server starts.
  const ctx = new FlowContext({ results: ResultsManager.sqlite(store) });
  await ctx.run(order, {}, { runId: 'before', mode: 'batch' });
  await ctx.close();
  client = new Client({ name: 'weir-test', version: '1.0.0' });
  await client.connect(
    new StdioClientTransport({
      command: process.execPath,
      args: ['--import', 'tsx', join(root, 'src', 'cli', 'bin.ts'), '--store', store, '--module', join(root, 'test', 'fixtures', 'cli-flows.ts'), 'mcp'],
      cwd: root,
      stderr: 'pipe',
    }),
  );
});
afterAll(async () => {
  await client?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('weir mcp', () => {
  it('lists its tools, each with an input schema', async () => {
    const { tools } = await client.listTools();
    expect(tools.map((t) => t.name).sort()).toEqual(['cancel_run', 'get_run', 'list_flows', 'list_runs', 'resume_run', 'retry_run', 'run_events', 'skip_step', 'start_run', 'submit_input']);
    expect(tools.find((t) => t.name === 'submit_input')!.inputSchema).toMatchObject({ type: 'object', required: expect.arrayContaining(['runId', 'key']) });
  });

  it('lists flows with their input JSON Schema, starts a run, follows its events and answers it', async () => {
    expect((await call('list_flows')).structuredContent!.result.flows).toEqual([expect.objectContaining({ name: 'order', type: 'sequential' })]);
    const started = await call('start_run', { flow: 'order', input: {}, runId: 'agent-1', mode: 'interactive' });
    expect(started.structuredContent!.result).toEqual({ runId: 'agent-1' });
    let run: any;
    for (let i = 0; i < 100 && run?.status !== 'waiting'; i++) run = (await call('get_run', { runId: 'agent-1' })).structuredContent!.result;
    expect(run.waitingFor).toEqual([expect.objectContaining({ key: 'approval', step: 'approve' })]);
    const events = (await call('run_events', { runId: 'agent-1' })).structuredContent!.result.events as { seq: number; type: string }[];
    expect(events.map((e) => e.seq)).toEqual(events.map((_e, i) => i + 1));
    expect(events.at(-1)!.type).toBe('run_waiting');
    expect((await call('run_events', { runId: 'agent-1', after: events.at(-1)!.seq })).structuredContent!.result.events).toEqual([]);
    expect((await call('submit_input', { runId: 'agent-1', key: 'approval', value: { ok: true } })).structuredContent!.result).toEqual({ ok: true });
    for (let i = 0; i < 100 && run.status !== 'completed'; i++) run = (await call('get_run', { runId: 'agent-1' })).structuredContent!.result;
    expect(run.status).toBe('completed');
    const listed = (await call('list_runs', { status: 'completed' })).structuredContent!.result.runs as { runId: string }[];
    expect(listed.map((r) => r.runId)).toEqual(['agent-1']);
    // Its flow is registered here at its version: nothing is stranded.
    expect((await call('list_runs', { stranded: true })).structuredContent!.result.runs).toEqual([]);
  });

  it('controls runs: resume from a step, retry, cancel', async () => {
    expect((await call('resume_run', { runId: 'before', from: 'approve' })).structuredContent!.result).toEqual({ runId: 'before' });
    const retried = await call('retry_run', { runId: 'before' });
    expect(retried.isError).toBeFalsy();
    await call('start_run', { flow: 'order', runId: 'agent-2', mode: 'interactive' });
    for (let i = 0; i < 100 && (await call('get_run', { runId: 'agent-2' })).structuredContent!.result.status !== 'waiting'; i++);
    expect((await call('cancel_run', { runId: 'agent-2', reason: 'the agent changed its mind' })).isError).toBeFalsy();
  });

  it('returns refusals as tool errors carrying the FlowError code', async () => {
    expect(await call('get_run', { runId: 'nobody' })).toMatchObject({ isError: true, structuredContent: { error: { code: 'WEIR_RUN_NOT_FOUND' } } });
    expect(await call('start_run', { flow: 'refund' })).toMatchObject({ isError: true, structuredContent: { error: { code: 'WEIR_FLOW_NOT_REGISTERED' } } });
    expect(await call('start_run', { flow: 'order', runId: 'a/b' })).toMatchObject({ isError: true, structuredContent: { error: { code: 'WEIR_INVALID_OPTIONS' } } });
    expect(await call('skip_step', { runId: 'agent-1', step: 'nothing' })).toMatchObject({ isError: true });
    // A bad argument is refused by the tool's schema, before weir sees it.
    expect((await call('get_run', { runId: 42 })).isError).toBe(true);
  });
});
