/** weir/http's JSON API over real HTTP on 127.0.0.1: starting, reading, answering and controlling runs, and every refusal. */
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { networkInterfaces } from 'node:os';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { FatalError, Flow, FlowContext, Processor, ResultsManager, type Step } from '../../src/index.js';
import { createHandler, serve, type Authorize, type WeirServer } from '../../src/http/index.js';
import { deferred, Fn } from '../fixtures/processors.js';

const Order = z.object({ id: z.string(), total: z.number().positive() });
const Approval = z.object({ ok: z.boolean() });

class Reserve extends Processor<typeof Order, typeof Order> {
  readonly input = Order;
  readonly output = Order;
  process(order: z.infer<typeof Order>): z.infer<typeof Order> {
    return order;
  }
}
class Approve extends Processor<typeof Order, typeof Approval> {
  readonly input = Order;
  readonly output = Approval;
  async process(_order: z.infer<typeof Order>, step: Step): Promise<z.infer<typeof Approval>> {
    return step.waitForInput('approval', Approval);
  }
}

/** order: reserve, then approve (waits for "approval"). */
function orderFlow(): Flow<z.infer<typeof Order>, Record<string, unknown>> {
  const order = Flow.sequential<z.infer<typeof Order>>('order');
  new Flow(new Reserve(), { name: 'reserve' }).registerTo(order);
  new Flow(new Approve(), { name: 'approve' }).registerTo(order);
  return order;
}

let ctx: FlowContext;
let server: WeirServer | undefined;
afterEach(async () => {
  await ctx?.close();
  await server?.close();
  server = undefined;
});

/** A JSON request to the server: its status, headers and parsed body. */
async function api(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<{ status: number; headers: Headers; body: any }> {
  const response = await fetch(new URL(path, server!.url), {
    method,
    headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
    ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
  });
  const text = await response.text();
  return { status: response.status, headers: response.headers, body: text === '' ? undefined : JSON.parse(text) };
}

/** Polls a run until `done` says so. */
async function until(runId: string, done: (run: any) => boolean): Promise<any> {
  for (let i = 0; i < 200; i++) {
    const { body } = await api('GET', `/api/runs/${encodeURIComponent(runId)}`);
    if (done(body)) return body;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`run ${runId} never got there`);
}

async function start(options: { results?: ResultsManager; authorize?: Authorize } = {}): Promise<void> {
  ctx = new FlowContext(options.results === undefined ? {} : { results: options.results });
  ctx.register(orderFlow());
  server = await serve(ctx, options.authorize === undefined ? {} : { authorize: options.authorize });
}

describe('serve', () => {
  it('listens on 127.0.0.1 by default, and stops listening when the context closes', async () => {
    await start();
    expect(server!.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
    expect((await api('GET', '/api/flows')).status).toBe(200);
    await ctx.close();
    expect(server!.server.listening).toBe(false);
    await expect(fetch(new URL('/api/flows', server!.url))).rejects.toThrow();
  });
});

describe('the JSON API', () => {
  it('lists the registered flows with the JSON Schema of their input', async () => {
    await start();
    const { body } = await api('GET', '/api/flows');
    expect(body.flows).toEqual([{ name: 'order', type: 'sequential', input: expect.objectContaining({ type: 'object', required: ['id', 'total'] }) }]);
  });

  it('starts a run at once, answers its wait, and reads it back; a runId makes the start idempotent', async () => {
    await start();
    const started = await api('POST', '/api/runs', { flow: 'order', input: { id: 'o-1', total: 12 }, runId: 'order-1', mode: 'interactive' });
    expect(started).toMatchObject({ status: 202, body: { runId: 'order-1' } });
    const waiting = await until('order-1', (run) => run.status === 'waiting');
    expect(waiting.waitingFor).toEqual([expect.objectContaining({ step: 'approve', key: 'approval' })]);
    // The same start again: the same run.
    expect(await api('POST', '/api/runs', { flow: 'order', input: { id: 'o-1', total: 12 }, runId: 'order-1', mode: 'interactive' })).toMatchObject({ status: 202, body: { runId: 'order-1' } });

    // A bad answer is refused and the run keeps waiting; a good one finishes it.
    const bad = await api('POST', '/api/runs/order-1/input', { key: 'approval', value: { ok: 'yes' } });
    expect(bad.status).toBe(400);
    expect(bad.body.error).toMatchObject({ code: 'WEIR_VALIDATION', issues: [expect.objectContaining({ path: ['ok'] })] });
    expect((await api('GET', '/api/runs/order-1')).body.status).toBe('waiting');
    expect(await api('POST', '/api/runs/order-1/input', { key: 'approval', value: { ok: true } })).toMatchObject({ status: 200, body: { ok: true } });
    const done = await until('order-1', (run) => run.status === 'completed');
    expect(done.steps.approve).toMatchObject({ status: 'completed' });
    expect(await api('POST', '/api/runs/order-1/input', { key: 'approval', value: { ok: true } })).toMatchObject({ status: 409 });
  });

  it('refuses a start with a bad input (400, with issues by step), an unknown flow (404), and bad options (400)', async () => {
    await start();
    const bad = await api('POST', '/api/runs', { flow: 'order', input: { id: 1 } });
    expect(bad.status).toBe(400);
    expect(bad.body.error.code).toBe('WEIR_VALIDATION');
    expect(bad.body.error.issues.map((i: { path: unknown[] }) => i.path)).toEqual([
      ['reserve', 'id'],
      ['reserve', 'total'],
    ]);
    expect(await api('POST', '/api/runs', { flow: 'refund', input: {} })).toMatchObject({ status: 404, body: { error: { code: 'WEIR_FLOW_NOT_REGISTERED' } } });
    expect(await api('POST', '/api/runs', { flow: 'order', input: { id: 'x', total: 1 }, runId: 'a/b' })).toMatchObject({ status: 400, body: { error: { code: 'WEIR_INVALID_OPTIONS' } } });
    expect(await api('POST', '/api/runs', { flow: 'order', input: { id: 'x', total: 1 }, priority: 3 })).toMatchObject({
      status: 400,
      body: { error: { code: 'WEIR_INVALID_OPTIONS', message: expect.stringContaining('priority') } },
    });
    // Nothing was started by any of these.
    expect((await api('GET', '/api/runs')).body.runs).toEqual([]);
  });

  it('lists runs by status and flow, a page at a time', async () => {
    await start();
    for (let i = 1; i <= 5; i++) await api('POST', '/api/runs', { flow: 'order', input: { id: `o-${i}`, total: i }, runId: `run-${i}`, mode: 'batch' });
    for (let i = 1; i <= 5; i++) await until(`run-${i}`, (run) => run.status === 'failed');
    const first = await api('GET', '/api/runs?status=failed&flow=order&limit=2');
    expect(first.body.runs.map((r: { runId: string }) => r.runId)).toHaveLength(2);
    expect(first.body.next).toEqual(expect.any(String));
    const second = await api('GET', `/api/runs?status=failed&limit=2&before=${encodeURIComponent(first.body.next)}`);
    expect(second.body.runs).toHaveLength(2);
    expect(new Set([...first.body.runs, ...second.body.runs].map((r: { runId: string }) => r.runId)).size).toBe(4);
    expect((await api('GET', '/api/runs?status=completed,running')).body.runs).toEqual([]);
    expect(await api('GET', '/api/runs?status=lost')).toMatchObject({ status: 400, body: { error: { code: 'WEIR_INVALID_OPTIONS' } } });
    expect(await api('GET', '/api/runs?limit=many')).toMatchObject({ status: 400 });
    // Failed runs wait for nobody: none is stranded.
    expect((await api('GET', '/api/runs?stranded=true')).body.runs).toEqual([]);
    expect(await api('GET', '/api/runs?stranded=yes')).toMatchObject({ status: 400, body: { error: { code: 'WEIR_INVALID_OPTIONS', message: expect.stringContaining('stranded') } } });
  });

  it('controls runs: cancel, retry, resume from a step, skip, human in the loop', async () => {
    await start({ results: ResultsManager.memory() });
    const gate = deferred();
    let calls = 0;
    const work = Flow.sequential('work');
    new Flow(
      new Fn(async () => {
        calls++;
        if (calls === 1) throw new FatalError('first time');
        return 'first';
      }),
      { name: 'first' },
    ).registerTo(work);
    new Flow(new Fn(() => gate.promise.then(() => 'second')), { name: 'second' }).registerTo(work);
    ctx.register(work);

    await api('POST', '/api/runs', { flow: 'work', input: {}, runId: 'w-1' });
    await until('w-1', (run) => run.status === 'failed');
    // Resume from the failed step: it runs again and the run waits on the gate.
    expect(await api('POST', '/api/runs/w-1/resume', { from: 'first' })).toMatchObject({ status: 202, body: { runId: 'w-1' } });
    await until('w-1', (run) => run.running.includes('second'));
    expect(await api('POST', '/api/runs/w-1/cancel', { reason: 'enough' })).toMatchObject({ status: 200 });
    await until('w-1', (run) => run.status === 'cancelled');
    gate.resolve();
    expect(await api('POST', '/api/runs/w-1/retry')).toMatchObject({ status: 202, body: { runId: expect.any(String) } });

    // Skip a waiting step with an output; set the person in the loop of a hybrid run.
    await api('POST', '/api/runs', { flow: 'order', input: { id: 'o-9', total: 9 }, runId: 'o-9', mode: 'hybrid' });
    await until('o-9', (run) => run.status === 'waiting');
    expect(await api('POST', '/api/runs/o-9/human-in-loop', { on: 'yes' })).toMatchObject({ status: 400 });
    expect(await api('POST', '/api/runs/o-9/skip', { step: 'approve', output: { ok: true } })).toMatchObject({ status: 200 });
    expect((await until('o-9', (run) => run.status === 'completed')).steps.approve).toMatchObject({ status: 'completed' });
    expect(await api('POST', '/api/runs/o-9/human-in-loop', { on: false })).toMatchObject({ status: 409, body: { error: { code: 'WEIR_RUN_STATE' } } });
  });

  it('answers 404 for an unknown run, route or path, 405 with Allow for a wrong method, 400 for a bad run id', async () => {
    await start();
    expect(await api('GET', '/api/runs/nobody')).toMatchObject({ status: 404, body: { error: { code: 'WEIR_RUN_NOT_FOUND' } } });
    expect(await api('GET', '/api/nothing')).toMatchObject({ status: 404, body: { error: { code: 'WEIR_ROUTE_NOT_FOUND' } } });
    expect(await api('GET', '/elsewhere')).toMatchObject({ status: 404, body: { error: { code: 'WEIR_ROUTE_NOT_FOUND' } } });
    expect(await api('GET', '/api/runs/x/explode')).toMatchObject({ status: 404 });
    const wrong = await api('DELETE', '/api/runs');
    expect(wrong).toMatchObject({ status: 405, body: { error: { code: 'WEIR_METHOD_NOT_ALLOWED' } } });
    expect(wrong.headers.get('allow')).toBe('GET, POST');
    expect(await api('GET', '/api/runs/a%2Fb')).toMatchObject({ status: 400, body: { error: { code: 'WEIR_INVALID_OPTIONS' } } });
    expect(await api('GET', '/api/runs/%E0%A4%A')).toMatchObject({ status: 400 });
  });

  it('refuses bodies that are too large before parsing them (413), not JSON (415), or malformed (400)', async () => {
    ctx = new FlowContext();
    ctx.register(orderFlow());
    server = await serve(ctx, { bodyLimit: 1000 });
    const big = JSON.stringify({ flow: 'order', input: { id: 'x'.repeat(2000), total: 1 } });
    expect(await api('POST', '/api/runs', big)).toMatchObject({ status: 413, body: { error: { code: 'WEIR_BODY_TOO_LARGE' } } });
    // Without a content-length, as it streams in.
    const status = await new Promise<number>((resolve, reject) => {
      const req = request(new URL('/api/runs', server!.url), { method: 'POST', headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' } }, (res) => {
        res.resume();
        resolve(res.statusCode!);
      });
      req.on('error', reject);
      for (let i = 0; i < 20; i++) req.write('x'.repeat(100));
      req.end();
    });
    expect(status).toBe(413);
    expect(await api('POST', '/api/runs', 'flow=order', { 'content-type': 'application/x-www-form-urlencoded' })).toMatchObject({ status: 415 });
    expect(await api('POST', '/api/runs', '{"flow":')).toMatchObject({ status: 400, body: { error: { code: 'WEIR_VALIDATION' } } });
    expect(await api('POST', '/api/runs', ['order'])).toMatchObject({ status: 400, body: { error: { code: 'WEIR_INVALID_OPTIONS' } } });
  });

  it('says what failed and not where: no stack, no file path in an error body', async () => {
    const dir = await import('node:fs/promises').then((fs) => fs.mkdtemp(`${(process.env.TMPDIR ?? '/tmp').replace(/\/$/, '')}/weir-http-`));
    const results = ResultsManager.sqlite(`${dir}/runs.db`);
    await start({ results });
    await api('POST', '/api/runs', { flow: 'order', input: { id: 'o', total: 1 }, runId: 'r', mode: 'interactive' });
    await until('r', (run) => run.status === 'waiting');
    await results.close();
    const refused = await api('GET', '/api/runs/r');
    expect(refused.status).toBe(503);
    expect(JSON.stringify(refused.body)).not.toContain(dir);
    expect(JSON.stringify(refused.body)).not.toMatch(/\bat \w|\.ts:\d|\.js:\d/);
    expect(refused.body.error).toEqual({ code: expect.stringMatching(/^WEIR_STORE/), message: 'the run store failed; try again' });
  });
});

describe('the dashboard\'s files', () => {
  it('serves the page, its script and its styles under a strict content security policy', async () => {
    await start();
    const page = await fetch(server!.url);
    expect(page.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(page.headers.get('content-security-policy')).toContain("script-src 'self'");
    const html = await page.text();
    expect(html).toContain('<script type="module" src="dashboard.js"></script>');
    // Nothing from elsewhere: every script, style and request is the handler's own.
    expect(html).not.toMatch(/https?:\/\//);
    const script = await fetch(new URL('dashboard.js', server!.url));
    expect(script.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    // The SVG namespace is a name, not a request.
    expect((await script.text()).replaceAll('http://www.w3.org/2000/svg', '')).not.toMatch(/innerHTML|https?:\/\//);
    expect((await fetch(new URL('dashboard.css', server!.url))).headers.get('content-type')).toBe('text/css; charset=utf-8');
    expect((await fetch(server!.url, { method: 'POST' })).status).toBe(405);
  });

  it('sends a path without its trailing slash to the one with it, so the page\'s links resolve', async () => {
    ctx = new FlowContext();
    server = await serve(ctx, { prefix: '/weir' });
    const moved = await fetch(new URL('/weir?x=1', server.url), { redirect: 'manual' });
    expect(moved.status).toBe(308);
    expect(moved.headers.get('location')).toBe('/weir/?x=1');
    expect((await fetch(new URL('/weir/', server.url))).status).toBe(200);
  });
});

describe('access', () => {
  it('calls authorize before every action, with the action and the run, refusing with 401 or 403', async () => {
    const seen: string[] = [];
    await start({
      authorize: (req, action, runId) => {
        seen.push(`${action}:${runId ?? '-'}`);
        if (req.headers.authorization === undefined) return 401;
        return req.headers.authorization === 'Bearer ops' || action === 'read';
      },
    });
    expect(await api('GET', '/api/runs')).toMatchObject({ status: 401, body: { error: { code: 'WEIR_UNAUTHORIZED' } } });
    const viewer = { authorization: 'Bearer viewer' };
    expect((await api('GET', '/api/runs', undefined, viewer)).status).toBe(200);
    expect(await api('POST', '/api/runs', { flow: 'order', input: { id: 'a', total: 1 } }, viewer)).toMatchObject({ status: 403, body: { error: { code: 'WEIR_FORBIDDEN' } } });
    const ops = { authorization: 'Bearer ops' };
    const { body } = await api('POST', '/api/runs', { flow: 'order', input: { id: 'a', total: 1 }, runId: 'a-1', mode: 'interactive' }, ops);
    await api('POST', `/api/runs/${body.runId}/input`, { key: 'approval', value: { ok: true } }, viewer);
    await api('POST', `/api/runs/${body.runId}/cancel`, {}, viewer);
    expect(seen).toEqual(['read:-', 'read:-', 'start:-', 'start:-', 'answer:a-1', 'control:a-1']);
  });

  it('serves only clients on this host without a hook, unless allowRemote', async () => {
    const remote = Object.values(networkInterfaces())
      .flat()
      .find((i) => i !== undefined && !i.internal && i.family === 'IPv4');
    // A client from another address of this machine is not a loopback client.
    expect(remote, 'this machine has a non-loopback IPv4 address to connect from').toBeDefined();
    ctx = new FlowContext();
    const strict = createServer(createHandler(ctx)).listen(0, '0.0.0.0');
    const open = createServer(createHandler(ctx, { allowRemote: true })).listen(0, '0.0.0.0');
    try {
      await Promise.all([strict, open].map((s) => new Promise((resolve) => s.once('listening', resolve))));
      const at = (s: typeof strict, host: string): string => `http://${host}:${(s.address() as AddressInfo).port}/api/flows`;
      expect((await fetch(at(strict, '127.0.0.1'))).status).toBe(200);
      const refused = await fetch(at(strict, remote!.address));
      expect(refused.status).toBe(403);
      expect(await refused.json()).toMatchObject({ error: { code: 'WEIR_FORBIDDEN', message: expect.stringContaining('allowRemote') } });
      expect((await fetch(at(open, remote!.address))).status).toBe(200);
    } finally {
      strict.closeAllConnections();
      open.closeAllConnections();
      await Promise.all([strict, open].map((s) => new Promise((resolve) => s.close(resolve))));
    }
  });
});

describe('as middleware', () => {
  it('serves under a prefix, and hands the paths it does not serve to next', async () => {
    ctx = new FlowContext();
    ctx.register(orderFlow());
    const handler = createHandler(ctx, { prefix: '/weir' });
    const app = createServer((req, res) =>
      handler(req, res, () => {
        res.writeHead(418).end('app');
      }),
    ).listen(0, '127.0.0.1');
    try {
      await new Promise((resolve) => app.once('listening', resolve));
      const base = `http://127.0.0.1:${(app.address() as AddressInfo).port}`;
      expect((await fetch(`${base}/weir/api/flows`)).status).toBe(200);
      const other = await fetch(`${base}/shop`);
      expect(other.status).toBe(418);
      expect(await other.text()).toBe('app');
      expect((await fetch(`${base}/weirdo/api/flows`)).status).toBe(418);
    } finally {
      app.closeAllConnections();
      await new Promise((resolve) => app.close(resolve));
    }
    expect(() => createHandler(ctx, { prefix: 'weir' })).toThrow('createHandler() options: prefix');
    expect(() => createHandler(ctx, { bodyLimit: -1 })).toThrow('createHandler() options: bodyLimit');
  });
});
