/** weir/http's Server-Sent Events over real HTTP, read by a real EventSource client. */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { EventSource } from 'eventsource';
import { afterEach, describe, expect, it } from 'vitest';
import { Flow, FlowContext, type WeirEvent } from '../../src/index.js';
import { createHandler, serve, type WeirServer } from '../../src/http/index.js';
import { deferred, Fn } from '../fixtures/processors.js';

let ctx: FlowContext;
let server: WeirServer | undefined;
const sources: EventSource[] = [];
afterEach(async () => {
  for (const source of sources.splice(0)) source.close();
  await ctx?.close();
  await server?.close();
  server = undefined;
});

/** A chain of `n` steps; step `at` waits for `gate` before it returns. */
function chain(n: number, at: number, gate: Promise<void>): Flow<unknown, Record<string, unknown>> {
  const flow = Flow.sequential('chain');
  for (let i = 1; i <= n; i++) {
    new Flow(
      new Fn(async () => {
        if (i === at) await gate;
        return i;
      }),
      { name: `s${i}` },
    ).registerTo(flow);
  }
  return flow;
}

/** Follows a run's events with an EventSource until its `end` event; `onEvent` sees each with its SSE id. */
function follow(url: string, onEvent: (event: WeirEvent, id: string) => void = () => undefined): { source: EventSource; ended: Promise<void> } {
  const source = new EventSource(url);
  sources.push(source);
  const ended = new Promise<void>((resolve) => {
    source.addEventListener('end', () => {
      source.close();
      resolve();
    });
  });
  source.onmessage = (message) => onEvent(JSON.parse(message.data as string) as WeirEvent, message.lastEventId);
  return { source, ended };
}

async function stored(runId: string): Promise<WeirEvent[]> {
  const all: WeirEvent[] = [];
  for await (const event of ctx.events(runId)) all.push(event);
  return all;
}

describe('a run\'s events', () => {
  it('replays then streams every event with its seq as the SSE id, and ends after the last', async () => {
    ctx = new FlowContext();
    server = await serve(ctx);
    const gate = deferred();
    const handle = ctx.start(chain(4, 3, gate.promise), {}, { runId: 'r-1' });
    await new Promise((resolve) => ctx.once('step_start', () => resolve(undefined)));
    const got: { seq: number; id: string; type: string }[] = [];
    const { ended } = follow(`${server.url}api/runs/r-1/events`, (event, id) => got.push({ seq: event.seq, id, type: event.type }));
    await new Promise((resolve) => setTimeout(resolve, 50));
    gate.resolve();
    await ended;
    await handle.result();
    const all = await stored('r-1');
    expect(got.map((e) => e.seq)).toEqual(all.map((e) => e.seq));
    expect(got.every((e) => e.id === String(e.seq))).toBe(true);
    expect(got.at(-1)?.type).toBe('run_complete');
  });

  it('goes on after a reconnect from Last-Event-ID: no gap, no duplicate', async () => {
    ctx = new FlowContext();
    server = await serve(ctx);
    const gate = deferred();
    const handle = ctx.start(chain(6, 4, gate.promise), {}, { runId: 'r-2' });
    const seqs: number[] = [];
    let opened = 0;
    const { source, ended } = follow(`${server.url}api/runs/r-2/events`, (event) => seqs.push(event.seq));
    source.onopen = () => opened++;
    // Cut off mid-run: step 4 waits, the client has what came before it.
    while (!seqs.includes(8)) await new Promise((resolve) => setTimeout(resolve, 5));
    server.server.closeAllConnections();
    gate.resolve();
    await ended;
    await handle.result();
    expect(opened).toBe(2);
    expect(seqs).toEqual((await stored('r-2')).map((e) => e.seq));
    expect(new Set(seqs).size).toBe(seqs.length);
  });

  it('answers 204 for an ended run with nothing after Last-Event-ID, 404 for an unknown run, 400 for a bad after', async () => {
    ctx = new FlowContext();
    server = await serve(ctx);
    const result = await ctx.run(chain(1, 0, Promise.resolve()), {}, { runId: 'done' });
    const last = (await stored(result.runId)).at(-1)!.seq;
    expect((await fetch(`${server.url}api/runs/done/events`, { headers: { 'last-event-id': String(last) } })).status).toBe(204);
    const replay = await fetch(`${server.url}api/runs/done/events?after=${last - 1}`);
    expect(replay.headers.get('content-type')).toMatch(/^text\/event-stream/);
    expect(await replay.text()).toBe(`retry: 1000\n\nid: ${last}\ndata: ${JSON.stringify((await stored('done')).at(-1))}\n\nevent: end\ndata: {"runId":"done"}\n\n`);
    const missing = await fetch(`${server.url}api/runs/nobody/events`);
    expect(missing.status).toBe(404);
    expect(await missing.json()).toMatchObject({ error: { code: 'WEIR_RUN_NOT_FOUND' } });
    expect((await fetch(`${server.url}api/runs/done/events?after=-1`)).status).toBe(400);
  });

  it('sends a keep-alive comment while nothing happens', async () => {
    ctx = new FlowContext();
    server = await serve(ctx, { keepAlive: 20 });
    const gate = deferred();
    ctx.start(chain(1, 1, gate.promise), {}, { runId: 'quiet' });
    const response = await fetch(`${server.url}api/runs/quiet/events`);
    const reader = response.body!.getReader();
    let text = '';
    while (!text.includes(': keep-alive\n\n')) text += new TextDecoder().decode((await reader.read()).value);
    gate.resolve();
    await reader.cancel();
  });

  it('releases what a client held when it goes away: 100 connects and disconnects leave nothing behind', async () => {
    ctx = new FlowContext();
    const handler = createHandler(ctx);
    const app = createServer(handler).listen(0, '127.0.0.1');
    await new Promise((resolve) => app.once('listening', resolve));
    const base = `http://127.0.0.1:${(app.address() as AddressInfo).port}/`;
    const gate = deferred();
    ctx.start(chain(2, 1, gate.promise), {}, { runId: 'held' });
    const listeners = ctx.listenerCount('event');
    try {
      for (let i = 0; i < 100; i++) {
        const controller = new AbortController();
        const response = await fetch(`${base}${i % 2 === 0 ? 'api/runs/held/events' : 'api/events'}`, { signal: controller.signal });
        expect(response.status).toBe(200);
        expect(handler.streams).toBe(1);
        if (i % 2 === 1) expect(ctx.listenerCount('event')).toBe(listeners + 1);
        controller.abort();
        await response.body?.cancel().catch(() => undefined);
        for (let wait = 0; wait < 100 && handler.streams > 0; wait++) await new Promise((resolve) => setTimeout(resolve, 2));
        expect(handler.streams).toBe(0);
      }
      expect(ctx.listenerCount('event')).toBe(listeners);
      gate.resolve();
    } finally {
      app.closeAllConnections();
      await new Promise((resolve) => app.close(resolve));
    }
  });
});

describe('every run\'s summary', () => {
  it('streams each run\'s status and progress as it changes', async () => {
    ctx = new FlowContext();
    server = await serve(ctx);
    const summaries: { runId: string; status: string; progress: { done: number; total: number } }[] = [];
    const source = new EventSource(`${server.url}api/events`);
    sources.push(source);
    source.addEventListener('summary', (message) => summaries.push(JSON.parse(message.data as string) as (typeof summaries)[number]));
    await new Promise((resolve) => (source.onopen = resolve));
    await ctx.run(chain(3, 0, Promise.resolve()), {}, { runId: 'listed' });
    while (!summaries.some((s) => s.status === 'completed')) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(summaries.at(-1)).toMatchObject({ runId: 'listed', flow: 'chain', status: 'completed', progress: { done: 3, total: 3 } });
    expect(summaries.at(-1)).not.toHaveProperty('steps');
  });
});
