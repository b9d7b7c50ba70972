/**
 * `weir/otel`: a `FlowContext`'s runs in OpenTelemetry, through `@opentelemetry/api` only (an
 * optional peer: nothing here is loaded unless this subpath is imported). Spans and metrics are
 * made from the context's events, so the engine pays nothing for them: a span per run and per step
 * attempt, timed by the events' own times; counters of runs, retries, takeovers and open waits; a
 * histogram of step durations and one of store commit latency.
 */
import { context as otelContext, metrics, SpanKind, SpanStatusCode, trace, type Attributes, type Link, type Meter, type Span, type SpanContext, type Tracer } from '@opentelemetry/api';
import { z } from 'zod';
import { FlowContext, type AnyFlow, type WeirEvent } from '../index.js';
import { checkContextArgument } from '../util/context-argument.js';
import { expecting, parseOptions, type OptionsOf } from '../util/parse.js';

/** Whether `value` has the methods of `names` (a tracer or a meter of any copy of the API). */
const hasMethods =
  (...names: string[]) =>
  (value: unknown): boolean =>
    typeof value === 'object' && value !== null && names.every((name) => typeof (value as Record<string, unknown>)[name] === 'function');

// The shape is a const of its own so its TSDoc reaches the published types.
const instrumentShape = {
  /** Where spans go. @default `trace.getTracer('weir')`, the global provider's */
  tracer: expecting(z.custom<Tracer>(hasMethods('startSpan')), 'an OpenTelemetry Tracer').optional(),
  /** Where metrics go. @default `metrics.getMeter('weir')`, the global provider's */
  meter: expecting(z.custom<Meter>(hasMethods('createCounter', 'createUpDownCounter', 'createHistogram', 'createObservableGauge')), 'an OpenTelemetry Meter').optional(),
};
const instrumentSchema = z.strictObject(instrumentShape);

/** Options of `instrument`. */
export type InstrumentOptions = OptionsOf<typeof instrumentShape>;

/** One run's spans in flight. */
interface RunSpans {
  readonly span: Span;
  readonly flow: string;
  readonly attempts: Map<string, Span>;
}

/** How many runs' flows and last spans are kept for a later span of the same run to link to. */
const REMEMBERED = 10_000;

/** Sets `key` in `map`, dropping the oldest entries past `REMEMBERED`. */
function remember<V>(map: Map<string, V>, key: string, value: V): void {
  map.delete(key);
  map.set(key, value);
  for (const oldest of map.keys()) {
    if (map.size <= REMEMBERED) break;
    map.delete(oldest);
  }
}

/** The executor (`inline`, `thread`, `process`) of each step of a flow tree, by name. */
function executorsOf(flow: AnyFlow | undefined): Map<string, string> {
  const types = new Map<string, string>();
  const visit = (node: AnyFlow): void => {
    if (!node.isComposite) types.set(node.name, node.type);
    for (const child of node.children) visit(child);
  };
  if (flow !== undefined) visit(flow);
  return types;
}

/**
 * Reports `ctx`'s runs to OpenTelemetry from now on.
 * - Spans: `weir.run <flow>` per run (from its start, or its resumption, to its end; a resumed or
 *   recovered run's span links to the span of the run it goes on with, when this process saw it),
 *   and `weir.step <step>` per step attempt, its child. Attributes: `weir.run_id`, `weir.flow`,
 *   `weir.step`, `weir.attempt`, `weir.executor`, `weir.outcome` (completed, failed, retrying,
 *   cancelled, waiting), `weir.error_code`; a failed one has status ERROR.
 * - Metrics: `weir.runs.started`, `weir.runs.ended` (by `weir.status`), `weir.steps.retries`,
 *   `weir.runs.taken_over` (stale runs recovered), `weir.waits.open` (an up-down counter of waits
 *   for input), `weir.step.duration` (ms, by step and outcome), `weir.store.commit_latency` (ms, read
 *   from `ctx.health()` every 10 s).
 * @returns a function that stops reporting (spans in flight are ended as they are).
 * @throws ValidationError `WEIR_INVALID_OPTIONS` for a bad option, or a `ctx` that is not a FlowContext;
 * FlowError `WEIR_CONTEXT_CLOSED` for a context that is closing or closed.
 */
export function instrument(ctx: FlowContext, given: InstrumentOptions = {}): () => void {
  checkContextArgument(ctx, FlowContext, 'instrument()');
  const options = parseOptions(instrumentSchema, given, 'instrument() options');
  const tracer = options.tracer ?? trace.getTracer('weir');
  const meter = options.meter ?? metrics.getMeter('weir');
  const started = meter.createCounter('weir.runs.started', { description: 'Runs started or resumed here' });
  const ended = meter.createCounter('weir.runs.ended', { description: 'Runs that ended, by status' });
  const retries = meter.createCounter('weir.steps.retries', { description: 'Step attempts that failed and are tried again' });
  const takenOver = meter.createCounter('weir.runs.taken_over', { description: 'Stale runs taken over from a process that died' });
  const waits = meter.createUpDownCounter('weir.waits.open', { description: 'Waits for input asked and not yet answered or expired' });
  const durations = meter.createHistogram('weir.step.duration', { description: 'How long a step attempt took', unit: 'ms' });
  const commitLatency = meter.createObservableGauge('weir.store.commit_latency', { description: "The context's last store commit", unit: 'ms' });
  let lastCommit: number | undefined;
  const observeCommit = (result: { observe: (value: number) => void }): void => {
    if (lastCommit !== undefined) result.observe(lastCommit);
  };
  commitLatency.addCallback(observeCommit);
  // The latency is read from ctx.health() every 10 s, and (at most once a second) when a run ends.
  let readAt = 0;
  const readCommit = (): void => {
    readAt = Date.now();
    ctx.health().then((h) => (lastCommit = h.store.lastCommitMs ?? lastCommit), () => undefined);
  };
  const poll = setInterval(readCommit, 10_000);
  poll.unref();

  const runs = new Map<string, RunSpans>();
  /** The flow of each run seen here; the events of a resumed run held until its flow is known. */
  const flows = new Map<string, string>();
  const pending = new Map<string, WeirEvent[]>();
  /** The span context of each run's last span, for a later span of the same run to link to. */
  const previous = new Map<string, SpanContext>();
  const executors = new Map<string, Map<string, string>>();
  const executorOf = (flow: string, step: string): string => {
    let types = executors.get(flow);
    if (types === undefined) executors.set(flow, (types = executorsOf(ctx.getFlow(flow))));
    return types.get(step) ?? 'inline';
  };

  const openRun = (event: WeirEvent, flow: string, reason: string): RunSpans => {
    const before = previous.get(event.runId);
    const links: Link[] = before === undefined ? [] : [{ context: before, attributes: { 'weir.link': reason } }];
    const span = tracer.startSpan(`weir.run ${flow}`, { kind: SpanKind.INTERNAL, startTime: event.time, links, attributes: { 'weir.run_id': event.runId, 'weir.flow': flow } });
    const spans: RunSpans = { span, flow, attempts: new Map() };
    runs.set(event.runId, spans);
    remember(flows, event.runId, flow);
    started.add(1, { 'weir.flow': flow });
    return spans;
  };
  const endAttempt = (run: RunSpans, step: string, time: number, outcome: string, code?: string): void => {
    const span = run.attempts.get(step);
    if (span === undefined) return;
    run.attempts.delete(step);
    span.setAttribute('weir.outcome', outcome);
    if (code !== undefined) span.setAttribute('weir.error_code', code);
    span.setStatus(outcome === 'failed' ? { code: SpanStatusCode.ERROR, ...(code === undefined ? {} : { message: code }) } : { code: SpanStatusCode.OK });
    span.end(time);
  };
  const endRun = (event: WeirEvent, status: string, code?: string): void => {
    const run = runs.get(event.runId);
    if (run === undefined) return;
    for (const step of [...run.attempts.keys()]) endAttempt(run, step, event.time, status === 'waiting' ? 'waiting' : 'cancelled');
    run.span.setAttribute('weir.outcome', status);
    if (code !== undefined) run.span.setAttribute('weir.error_code', code);
    run.span.setStatus(status === 'failed' ? { code: SpanStatusCode.ERROR, ...(code === undefined ? {} : { message: code }) } : { code: SpanStatusCode.OK });
    run.span.end(event.time);
    runs.delete(event.runId);
    // A run that may go on later (a resume, an answer) keeps what its next span links to; a completed one does not.
    if (status === 'completed') {
      flows.delete(event.runId);
      previous.delete(event.runId);
    } else {
      remember(previous, event.runId, run.span.spanContext());
    }
    if (status !== 'waiting') ended.add(1, { 'weir.flow': run.flow, 'weir.status': status });
    if (Date.now() - readAt > 1000) readCommit();
  };

  const onEvent = (event: WeirEvent): void => {
    switch (event.type) {
      case 'run_start':
        openRun(event, event.flow, 'start');
        return;
      case 'run_resumed': {
        if (event.reason === 'recovered') takenOver.add(1);
        if (runs.has(event.runId) || pending.has(event.runId)) return;
        // The run goes on here: a new span, linked to its last one. A run this process never saw is
        // looked up first, its events held meanwhile.
        const flow = flows.get(event.runId);
        if (flow !== undefined) {
          openRun(event, flow, event.reason);
          return;
        }
        pending.set(event.runId, []);
        void ctx.getRun(event.runId).then(
          (info) => {
            openRun(event, info.flow, event.reason);
            const held = pending.get(event.runId) ?? [];
            pending.delete(event.runId);
            for (const later of held) onEvent(later);
          },
          () => pending.delete(event.runId),
        );
        return;
      }
      default:
    }
    const held = pending.get(event.runId);
    if (held !== undefined) {
      held.push(event);
      return;
    }
    const run = runs.get(event.runId);
    switch (event.type) {
      case 'step_start': {
        if (run === undefined) return;
        const attributes: Attributes = { 'weir.run_id': event.runId, 'weir.flow': run.flow, 'weir.step': event.step, 'weir.attempt': event.attempt, 'weir.executor': executorOf(run.flow, event.step) };
        const parent = trace.setSpan(otelContext.active(), run.span);
        run.attempts.set(event.step, tracer.startSpan(`weir.step ${event.step}`, { startTime: event.time, attributes }, parent));
        return;
      }
      case 'step_complete':
        durations.record(event.duration, { 'weir.step': event.step, 'weir.outcome': 'completed' });
        if (run !== undefined) endAttempt(run, event.step, event.time, 'completed');
        return;
      case 'step_retry':
        retries.add(1, { 'weir.step': event.step });
        if (run !== undefined) endAttempt(run, event.step, event.time, 'retrying', event.error.code);
        return;
      case 'step_failed':
        if (run !== undefined) endAttempt(run, event.step, event.time, 'failed', event.error.code);
        return;
      case 'step_cancelled':
        if (run !== undefined) endAttempt(run, event.step, event.time, 'cancelled', event.error.code);
        return;
      case 'input_required':
        if (event.rejected === undefined) waits.add(1, { 'weir.step': event.step });
        return;
      case 'input_received':
        waits.add(-1, { 'weir.step': event.step });
        return;
      case 'run_waiting':
        endRun(event, 'waiting');
        return;
      case 'run_complete':
        endRun(event, 'completed');
        return;
      case 'run_failed':
        endRun(event, 'failed', event.error.code);
        return;
      case 'run_cancelled':
        endRun(event, 'cancelled', event.error.code);
        return;
      default:
    }
  };
  ctx.on('event', onEvent);
  return () => {
    ctx.off('event', onEvent);
    clearInterval(poll);
    commitLatency.removeCallback(observeCommit);
  };
}
