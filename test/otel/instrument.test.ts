/** weir/otel: spans per run and step attempt, and metrics, read back with the SDK's in-memory exporters. */
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { AggregationTemporality, InMemoryMetricExporter, MeterProvider, PeriodicExportingMetricReader } from '@opentelemetry/sdk-metrics';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FatalError, Flow, FlowContext, ResultsManager, RetryableError, type Step } from '../../src/index.js';
import { instrument } from '../../src/otel/index.js';
import { Fn } from '../fixtures/processors.js';

let spans: InMemorySpanExporter;
let metricExporter: InMemoryMetricExporter;
let reader: PeriodicExportingMetricReader;
let ctx: FlowContext;
let stop: () => void;

beforeEach(() => {
  spans = new InMemorySpanExporter();
  const tracer = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] }).getTracer('test');
  metricExporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
  reader = new PeriodicExportingMetricReader({ exporter: metricExporter, exportIntervalMillis: 3_600_000 });
  const meter = new MeterProvider({ readers: [reader] }).getMeter('test');
  ctx = new FlowContext();
  stop = instrument(ctx, { tracer, meter });
});
/** A new reader and exporter, for a context made within a test. */
function reader2(): PeriodicExportingMetricReader {
  void reader.shutdown();
  metricExporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
  reader = new PeriodicExportingMetricReader({ exporter: metricExporter, exportIntervalMillis: 3_600_000 });
  return reader;
}

afterEach(async () => {
  stop();
  await ctx.close();
  await reader.shutdown();
});

/** The value of each data point of a metric, by its attributes as JSON. */
async function metric(name: string): Promise<Record<string, unknown>> {
  await reader.forceFlush();
  const found = metricExporter
    .getMetrics()
    .at(-1)
    ?.scopeMetrics.flatMap((s) => s.metrics)
    .find((m) => m.descriptor.name === name);
  return Object.fromEntries((found?.dataPoints ?? []).map((p) => [JSON.stringify(p.attributes), (p.value as { count?: number }).count ?? p.value]));
}

const byName = (name: string): ReadableSpan[] => spans.getFinishedSpans().filter((s) => s.name === name);

describe('instrument(ctx)', () => {
  it('makes a span per run and one per step attempt, its children, with their outcome and error code', async () => {
    let calls = 0;
    const flow = Flow.sequential('checkout');
    new Flow(new Fn(() => 'ok'), { name: 'reserve' }).registerTo(flow);
    new Flow(
      new Fn(() => {
        if (++calls === 1) throw new RetryableError('busy', { code: 'E_BUSY' });
        throw new FatalError('declined', { code: 'E_DECLINED' });
      }),
      { name: 'charge', type: 'inline', retry: { maxAttempts: 2, initialInterval: 0 } },
    ).registerTo(flow);
    const result = await ctx.run(flow, {});
    expect(result.status).toBe('failed');
    const [run] = byName('weir.run checkout');
    expect(run!.attributes).toMatchObject({ 'weir.run_id': result.runId, 'weir.flow': 'checkout', 'weir.outcome': 'failed', 'weir.error_code': 'E_DECLINED' });
    expect(run!.status.code).toBe(2);
    const charges = byName('weir.step charge');
    expect(charges.map((s) => [s.attributes['weir.attempt'], s.attributes['weir.outcome'], s.attributes['weir.error_code']])).toEqual([
      [1, 'retrying', 'E_BUSY'],
      [2, 'failed', 'E_DECLINED'],
    ]);
    expect(byName('weir.step reserve')[0]!.attributes).toMatchObject({ 'weir.step': 'reserve', 'weir.attempt': 1, 'weir.executor': 'inline', 'weir.outcome': 'completed' });
    // Children of the run's span, timed by the events.
    for (const step of [...charges, ...byName('weir.step reserve')]) {
      expect(step.parentSpanContext?.spanId).toBe(run!.spanContext().spanId);
      expect(step.spanContext().traceId).toBe(run!.spanContext().traceId);
    }
    expect(run!.startTime[0] * 1000 + run!.startTime[1] / 1e6).toBeCloseTo(result.startTime, -1);
    expect(await metric('weir.steps.retries')).toEqual({ '{"weir.step":"charge"}': 1 });
  });

  it('links the span of a resumed run to the span of the run before, and counts runs, retries and durations', async () => {
    let fail = true;
    const flow = new Flow(
      new Fn(() => {
        if (fail) throw new FatalError('not yet');
        return 'done';
      }),
      { name: 'once' },
    );
    ctx.register(flow);
    const first = await ctx.run(flow, {}, { runId: 'r-1' });
    fail = false;
    await (await ctx.resume(first.runId)).result();
    await new Promise((resolve) => setTimeout(resolve, 10));
    const [before, after] = byName('weir.run once');
    expect(after!.links).toEqual([expect.objectContaining({ context: before!.spanContext(), attributes: { 'weir.link': 'resumed' } })]);
    expect(await metric('weir.runs.started')).toEqual({ '{"weir.flow":"once"}': 2 });
    expect(await metric('weir.runs.ended')).toEqual({ '{"weir.flow":"once","weir.status":"failed"}': 1, '{"weir.flow":"once","weir.status":"completed"}': 1 });
    expect(await metric('weir.step.duration')).toEqual({ '{"weir.step":"once","weir.outcome":"completed"}': 1 });
  });

  it('counts open waits for input, and ends a waiting run\'s span as waiting', async () => {
    const ask = new Flow(new Fn(async (_i, step: Step) => step.waitForInput('ok', z.boolean())), { name: 'ask' });
    const handle = ctx.start(ask, {}, { mode: 'interactive' });
    await new Promise((resolve) => ctx.once('run_waiting', () => resolve(undefined)));
    expect(await metric('weir.waits.open')).toEqual({ '{"weir.step":"ask"}': 1 });
    expect(byName('weir.run ask')[0]!.attributes['weir.outcome']).toBe('waiting');
    await ctx.submitInput(handle.runId, 'ok', true);
    await handle.result();
    expect(await metric('weir.waits.open')).toEqual({ '{"weir.step":"ask"}': 0 });
  });

  it('counts runs taken over from a context that went away, and reads the store\'s commit latency', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'weir-otel-'));
    try {
      const file = join(dir, 'runs.db');
      let calls = 0;
      const flow = new Flow(new Fn((_i, step: Step) => (++calls === 1 ? new Promise((_r, reject) => step.signal.addEventListener('abort', () => reject(step.signal.reason as Error))) : 'done')), {
        name: 'taken',
      });
      const first = new FlowContext({ results: ResultsManager.sqlite(file), closeTimeout: 0 });
      first.start(flow, {}, { runId: 'taken-1' });
      await new Promise((resolve) => first.once('step_start', () => resolve(undefined)));
      await first.close();
      stop();
      await ctx.close();
      ctx = new FlowContext({ results: ResultsManager.sqlite(file) });
      stop = instrument(ctx, { tracer: new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] }).getTracer('test'), meter: new MeterProvider({ readers: [reader2()] }).getMeter('test') });
      ctx.register(flow);
      const [handle] = await ctx.recover();
      expect((await handle!.result()).status).toBe('completed');
      await new Promise((resolve) => setTimeout(resolve, 50));
      expect(await metric('weir.runs.taken_over')).toEqual({ '{}': 1 });
      const latency = Object.values(await metric('weir.store.commit_latency'));
      expect(latency).toEqual([expect.any(Number)]);
      expect(byName('weir.run taken').at(-1)!.attributes).toMatchObject({ 'weir.outcome': 'completed' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('stops when told: no more spans, no listener left', async () => {
    const listeners = ctx.listenerCount('event');
    stop();
    expect(ctx.listenerCount('event')).toBe(listeners - 1);
    await ctx.run(new Flow(new Fn(() => 1), { name: 'quiet' }), {});
    expect(spans.getFinishedSpans()).toEqual([]);
  });
});
