/** weir/http's dashboard in a real browser: Debian's chromium driven by playwright-core. */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { Flow, FlowContext, Processor, type Step } from '../../src/index.js';
import { serve, type WeirServer } from '../../src/http/index.js';
import { deferred } from '../fixtures/processors.js';

const ARTIFACTS = join(import.meta.dirname, '..', 'artifacts');
const Any = z.unknown();
const Amount = z.object({ amount: z.number().max(100) });

let browser: Browser;
let ctx: FlowContext;
let server: WeirServer;
let page: Page;

// Starting chromium takes seconds on a busy machine (the rest of the suite runs beside it).
beforeAll(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    timeout: 90_000,
    // --disable-dev-shm-usage: a container's small /dev/shm must not stall the browser.
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}, 120_000);
afterAll(async () => {
  await browser?.close();
});
afterEach(async () => {
  await page?.close();
  await ctx?.close();
});

/** A step that says it is at work, then waits for its gate. */
class Gated extends Processor<typeof Any, typeof Any> {
  readonly input = Any;
  readonly output = Any;
  constructor(readonly gate: Promise<void>) {
    super();
  }
  async process(_input: unknown, step: Step): Promise<unknown> {
    step.progress(0.5, `working on ${step.name}`);
    await this.gate;
    return step.name;
  }
}

class Approve extends Processor<typeof Any, typeof Amount> {
  readonly input = Any;
  readonly output = Amount;
  async process(_input: unknown, step: Step): Promise<z.infer<typeof Amount>> {
    return step.waitForInput('refund', Amount);
  }
}

/** pipeline: fetch, then (in parallel) parse and index, then approve (asks "refund"). */
async function start(): Promise<{ gates: ReturnType<typeof deferred<void>>[]; runId: string }> {
  const gates = [deferred<void>(), deferred<void>(), deferred<void>()];
  const pipeline = Flow.sequential('pipeline');
  new Flow(new Gated(gates[0]!.promise), { name: 'fetch' }).registerTo(pipeline);
  const work = Flow.parallel('work').registerTo(pipeline);
  const parse = new Flow(new Gated(gates[1]!.promise), { name: 'parse' }).registerTo(work);
  new Flow(new Gated(gates[2]!.promise), { name: 'index' }).registerTo(work, { required: [parse] });
  new Flow(new Approve(), { name: 'approve' }).registerTo(pipeline);
  ctx = new FlowContext();
  ctx.register(pipeline);
  server = await serve(ctx);
  const handle = ctx.start(pipeline, {}, { runId: 'order-42', mode: 'interactive' });
  page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  return { gates, runId: handle.runId };
}

/** expect.poll with room for a busy machine: the page updates as events come, in real time. */
const poll = <T>(read: () => T | Promise<T>) => expect.poll(read, { timeout: 20_000, interval: 50 });

describe('the dashboard', { timeout: 90_000 }, () => {
  it('lists the runs with live status and progress bars', async () => {
    const { gates } = await start();
    await page.goto(server.url);
    const row = page.locator('tr[data-run="order-42"]');
    await poll(() => row.locator('[data-status]').getAttribute('data-status')).toBe('running');
    await poll(() => row.locator('.now').textContent()).toBe('fetch: working on fetch');
    const done = (): Promise<string | null> => row.locator('progress').getAttribute('aria-valuenow');
    expect(await done()).toBe('0');
    gates[0]!.resolve();
    await poll(done).toBe('1');
    gates[1]!.resolve();
    await poll(done).toBe('2');
    await poll(() => row.locator('.now').textContent()).toBe('index: working on index');
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-runs.png'), fullPage: true });
    gates[2]!.resolve();
    await poll(() => row.locator('[data-status]').getAttribute('data-status')).toBe('waiting');
    // Filters: a finished run of another flow, then by status and by flow.
    const other = new Flow(new Gated(Promise.resolve()), { name: 'other' });
    ctx.register(other);
    await ctx.run(other, {}, { runId: 'other-1' });
    await poll(() => page.locator('tr[data-run]').count()).toBe(2);
    // The flow filter lists the flows registered when the page loaded.
    await page.reload();
    await poll(() => page.locator('tr[data-run]').count()).toBe(2);
    await page.locator('.filters select').first().selectOption('waiting');
    await poll(() => page.locator('tr[data-run]').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-run')))).toEqual(['order-42']);
    await page.locator('.filters select').first().selectOption('');
    await page.locator('.filters select').nth(1).selectOption('other');
    await poll(() => page.locator('tr[data-run]').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-run')))).toEqual(['other-1']);
  });

  it('shows a run with its graph, steps and live events, and goes on with the same run after a reload', async () => {
    const { gates } = await start();
    await page.goto(`${server.url}#/runs/order-42`);
    await poll(() => page.locator('svg.graph g[data-step="fetch"]').getAttribute('data-status')).toBe('running');
    expect(await page.locator('svg.graph g[data-step]').count()).toBe(6);
    expect(await page.locator('svg.graph line[marker-end]').count()).toBe(3);
    gates[0]!.resolve();
    await poll(() => page.locator('svg.graph g[data-step="fetch"]').getAttribute('data-status')).toBe('completed');
    await page.reload();
    await poll(() => page.locator('#progress').textContent()).toBe('1 of 4 steps');
    gates[1]!.resolve();
    await poll(() => page.locator('svg.graph g[data-step="parse"]').getAttribute('data-status')).toBe('completed');
    await poll(() => page.locator('#log').textContent()).toContain('step_complete  parse #1');
    await poll(() => page.locator('tr[data-step="index"] [data-status]').getAttribute('data-status')).toBe('running');
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-run.png'), fullPage: true });
    gates[2]!.resolve();
  });

  it('answers a waiting step through a form made from its schema: a bad value is refused and the run keeps waiting', async () => {
    const { gates, runId } = await start();
    for (const gate of gates) gate.resolve();
    await page.goto(`${server.url}#/runs/${runId}`);
    const form = page.locator('form[data-key="refund"]');
    await form.waitFor();
    await form.locator('input[name="amount"]').fill('500');
    await form.locator('button[type="submit"]').click();
    await poll(() => form.locator('[role="alert"]').textContent()).toContain('amount');
    expect((await ctx.getRun(runId)).status).toBe('waiting');
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-refused.png'), fullPage: true });
    await form.locator('input[name="amount"]').fill('50');
    await form.locator('button[type="submit"]').click();
    await poll(() => page.locator('.card [data-status]').first().getAttribute('data-status')).toBe('completed');
    expect((await ctx.getRun(runId)).status).toBe('completed');
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-answered.png'), fullPage: true });
  });

  it('cancels a run from its page after a confirmation', async () => {
    await start();
    await page.goto(`${server.url}#/runs/order-42`);
    page.once('dialog', (dialog) => void dialog.accept());
    await page.locator('button[data-action="cancel"]').click();
    await poll(async () => (await ctx.getRun('order-42')).status).toBe('cancelled');
    await poll(() => page.locator('.card [data-status]').first().getAttribute('data-status')).toBe('cancelled');
  });
});
