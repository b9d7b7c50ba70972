/**
 * weir/otel: the cost per step of reporting a 200-step run to OpenTelemetry, with the API present
 * but no SDK (every span and metric a no-op) and with an SDK (spans to an in-memory exporter,
 * metrics to a reader), against the same run not instrumented. Run alone with `node --import ./bench/loader/register.mjs bench/otel.bench.ts`.
 */
import { pathToFileURL } from 'node:url';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { AggregationTemporality, InMemoryMetricExporter, MeterProvider, PeriodicExportingMetricReader } from '@opentelemetry/sdk-metrics';
import { Flow, FlowContext } from '../src/index.js';
import { instrument } from '../src/otel/index.js';
import { Inc } from './processors.js';
import { measure, perItem, row } from './harness.js';


const STEPS = 200;
const chain = Flow.sequential<{ n: number }>('chain');
for (let i = 0; i < STEPS; i++) new Flow(new Inc(), { name: `s${i}` }).registerTo(chain);

export async function otelBench(): Promise<void> {
  console.log(`\n== weir/otel: a ${STEPS}-step run (memory store) ==`);
  const plainCtx = new FlowContext();
  const plain = await measure('not instrumented', () => plainCtx.run(chain, { n: 0 }));
  await plainCtx.close();

  const noSdkCtx = new FlowContext();
  const stopNoSdk = instrument(noSdkCtx);
  const noSdk = await measure('instrumented, API without an SDK', () => noSdkCtx.run(chain, { n: 0 }));
  stopNoSdk();
  await noSdkCtx.close();

  const exporter = new InMemorySpanExporter();
  const tracer = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }).getTracer('bench');
  const reader = new PeriodicExportingMetricReader({ exporter: new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE), exportIntervalMillis: 3_600_000 });
  const meter = new MeterProvider({ readers: [reader] }).getMeter('bench');
  const sdkCtx = new FlowContext();
  const stopSdk = instrument(sdkCtx, { tracer, meter });
  const sdk = await measure('instrumented, with an SDK (in-memory exporters)', async () => {
    await sdkCtx.run(chain, { n: 0 });
    exporter.reset();
  });
  stopSdk();
  await sdkCtx.close();
  await reader.shutdown();

  row('', 'per step', 'vs plain', 'added a step');
  row(plain.name, perItem(plain, STEPS), '1.00x', '');
  for (const m of [noSdk, sdk]) row(m.name, perItem(m, STEPS), `${(m.ms / plain.ms).toFixed(2)}x`, `${(((m.ms - plain.ms) * 1000) / STEPS).toFixed(2)} µs`);
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await otelBench();
